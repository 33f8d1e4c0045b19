"""The ``mtmc`` command: one entry point for every tool, named like its peers' verbs (``yolo track``, ``boxmot track``).

    mtmc run --sources cam1.mp4 cam2.mp4          # = python run_pipeline.py ... (same flags)
    mtmc eval-mtmc --gt gt.txt --pred runs/x/mtmc.txt
    mtmc <command> --help

Each command is the ``main(argv)`` of one module, imported only when it runs (``mtmc --help`` stays fast).
Exit codes are the same for every command: 0 done, 1 failed (bad input or config, nothing usable ran; the
message says which file or flag), 2 partly failed (``run``: some source failed, the others' outputs are
complete), 64 usage error (unknown flag or command).
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Callable, Sequence

from configs import UserError
from pipeline.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

# command -> (module whose main(argv) runs it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pipeline.cli", "run the multi-camera pipeline on files, folders, webcams or streams"),
    "demo": ("tools.demo", "the main job on real data: PETS09 pseudo-cameras with YOLOX-Nano, scored"),
    "track-mot": ("tools.track_mot", "per-camera tracking of MOTChallenge sequences from their detections"),
    "eval-mot": ("tools.eval_mot", "HOTA / MOTA / IDF1 per sequence (TrackEval)"),
    "eval-mtmc": ("tools.eval_mtmc", "cross-camera MTMC IDF1 and per-camera HOTA / IDF1 (TrackEval)"),
    "make-multicam": ("tools.make_multicam", "cut pseudo-cameras with shared ground truth from one video"),
    "make-reid-data": ("tools.make_reid_data", "cut labelled ReID tracklets from video + MOT ground truth"),
    "train-reid": ("tools.train_reid", "train or fine-tune the STA ReID model"),
    "eval-reid": ("tools.eval_reid", "rank-1 / mAP of a ReID model on a video ReID split"),
    "export-reid": ("tools.export_reid", "export a ReID checkpoint to ONNX and check it against torch"),
    "reid-model": ("tools.reid_model", "train, evaluate and publish the best ReID model (Embedder()'s default)"),
    "reid-table": ("tools.reid_table", "rank-1 / mAP of several ReID models and poolings in one table"),
    "lab": ("tools.association_lab", "replay the association stage on cached tracklets to compare settings"),
    "identities": ("tools.identities", "query an identity store: list, show ID, search --image CROP, export"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return ("usage: mtmc <command> [options]   (mtmc <command> --help for its options)\n\ncommands:\n"
            + "\n".join(lines) + "\n\n" + __doc__.split("\n\n")[2] + "\n")


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Run a command's main with the shared exit codes: argparse's usage error (2) becomes EXIT_USAGE, and a
    project error (a bad file, flag or config) is printed as one line instead of a traceback."""
    try:
        return int(main(list(argv)) or 0)
    except SystemExit as exit_:
        if exit_.code == 2:  # argparse: unknown or malformed flag
            return EXIT_USAGE
        return exit_.code if isinstance(exit_.code, int) else EXIT_FAILED
    except (UserError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return EXIT_OK if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"mtmc: unknown command {command!r}\n\n{usage()}", file=sys.stderr, end="")
        return EXIT_USAGE
    sys.argv[0] = f"mtmc {command}"  # argparse names the command in its usage line
    return run_main(import_module(COMMANDS[command][0]).main, rest)


if __name__ == "__main__":
    sys.exit(main())
