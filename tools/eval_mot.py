"""Evaluate MOTChallenge tracking results with TrackEval (HOTA, CLEAR, Identity), per sequence and combined.

    python tools/eval_mot.py --gt ../shared/data/mot15 --pred runs/sort [--json runs/sort/metrics.json]

Every sequence under --gt with gt/gt.txt needs --pred/<seq>.txt unless --seqs names the ones to evaluate.
"""

from __future__ import annotations

import sys

from tools.evaluation import MOT_METRICS, cli_parser, evaluate_mot, format_table, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser(__doc__, "folder of sequences <seq>/gt/gt.txt (+ seqinfo.ini)", "folder of result files <seq>.txt")
    parser.add_argument("--seqs", nargs="+", metavar="NAME", help="evaluate only these sequences")
    args = parser.parse_args(argv)
    return run_cli(
        lambda: evaluate_mot(args.gt, args.pred, args.seqs),
        lambda results: format_table(results, MOT_METRICS, name_header="sequence"),
        args.json,
    )


if __name__ == "__main__":
    sys.exit(main())
