"""Evaluate multi-camera tracking (MTMC) with TrackEval: one global identity matching over all cameras.

    python tools/eval_mtmc.py --gt gt_mtmc.txt --pred runs/pred_mtmc.txt [--json metrics.json]

--gt and --pred are each an AI City / DukeMTMC file (camera_id id frame x y w h [xworld yworld], space or
comma separated) or a folder of per-camera MOT files <camera>.txt. MTMC IDF1 concatenates the cameras on
one timeline; per-camera IDF1 and HOTA are listed below it.
"""

from __future__ import annotations

import sys

from tools.evaluation import MTMC_METRICS, cli_parser, evaluate_mtmc, format_table, run_cli

FORMATS = "AI City file or folder of <camera>.txt"


def mtmc_table(results: dict) -> str:
    rows = {"MTMC (all cameras)": results["MTMC"]}
    rows.update({f"camera {name}": metrics for name, metrics in results["per_camera"].items()})
    return format_table(rows, MTMC_METRICS)


def main(argv: list[str] | None = None) -> int:
    args = cli_parser(__doc__, f"ground truth: {FORMATS}", f"prediction: {FORMATS}").parse_args(argv)
    return run_cli(lambda: evaluate_mtmc(args.gt, args.pred), mtmc_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
