"""Train the STA ReID model (or its avg/max pooling baselines) on a MARS / DukeMTMC-VideoReID folder.

    python tools/train_reid.py --config configs/reid/train_cpu_mobilenetv2.yaml \\
        --data runs/reid_data/mot15 --out runs/reid/sta model.temporal_pool=sta train.iterations=200

Overrides are ``key=value`` pairs with the config's own names: ``data``, ``out``, ``model.<key>``,
``train.<key>`` (values parsed as YAML, so ``model.input_size=[128,64]`` works).
Writes ``<out>/last.pt`` (weights + model config + metadata: iterations, epoch, data, metrics,
training settings, loss at start and end) and prints the metrics of the final evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys

from configs import ConfigError, parse_overrides
from reid.backbones import WeightsUnavailableError
from reid.datasets import DatasetError
from reid.training import load_run_config, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML under configs/reid/ (sections: data, out, model, train)")
    parser.add_argument("--data", help="dataset root; overrides the config's data")
    parser.add_argument("--out", help="checkpoint folder; overrides the config's out")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. model.temporal_pool=avg train.reg_lambda=0")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        overrides.update({k: v for k, v in (("data", args.data), ("out", args.out)) if v})
        run = load_run_config(args.config, overrides)
        if not run.data:
            raise ConfigError("no dataset: set data in the config or pass --data")
        print(f"model: {json.dumps(run.model.to_dict())}\ntrain: {json.dumps(vars(run.train))}")
        result = train(run)
    except (ConfigError, DatasetError, FileNotFoundError, WeightsUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    first, last = result.losses[0], result.losses[-1]
    print(f"loss first {first['total']:.3f} -> last {last['total']:.3f}; {result.seconds:.0f} s")
    print("metrics:", json.dumps({k: round(v, 4) for k, v in result.metrics.items()}))
    print(f"checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
