"""Save and load STA models as safe checkpoints.

A checkpoint holds only tensors and plain values (the config as a dict, a meta dict), so it loads
with ``torch.load(weights_only=True)``: opening a checkpoint never executes code from the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from configs import ConfigError, UserError, build_dataclass
from reid.model import ReIDConfig, STAModel, build_model

FORMAT = "mtmc-sta-reid/1"
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read or does not fit its model."""


def save_checkpoint(path: str | Path, model: STAModel, cfg: ReIDConfig, meta: dict[str, Any] | None = None) -> Path:
    """Write model weights, config and ``meta`` (plain values only: str/int/float/bool/None/list/dict)."""
    meta = dict(meta or {})
    _check_plain(meta, "meta")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "config": cfg.to_dict(), "meta": meta, "state_dict": state}, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a truncated file under the real name
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[STAModel, ReIDConfig, dict]:
    """(model in eval mode, its config, meta). Raises CheckpointError naming the file."""
    path = Path(path)
    content = _read(path, map_location)
    cfg = _config_of(path, content)
    # The checkpoint carries all weights: building with random init avoids fetching ImageNet ones.
    model = build_model(dataclasses.replace(cfg, pretrained="random", backbone_weights=""))
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the architecture in its config "
                              f"(backbone={cfg.backbone}, temporal_pool={cfg.temporal_pool}, "
                              f"num_classes={cfg.num_classes}): {_first_lines(err)}") from None
    return model.to(map_location).eval(), cfg, content["meta"]


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, non-checkpoint files: many types
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupted, truncated or not a torch file): "
                              f"{_first_lines(err)}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an STA ReID checkpoint (expected format {FORMAT!r}; "
                              "save it with reid.checkpoint.save_checkpoint)")
    missing = {"config", "meta", "state_dict"} - set(content)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {sorted(missing)}")
    return content


def _config_of(path: Path, content: dict[str, Any]) -> ReIDConfig:
    try:
        return build_dataclass(ReIDConfig, content["config"], source=f"{path} (config)")
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid model config: {err}") from None


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN):
        raise ValueError(f"{where}: only str/int/float/bool/None/list/dict can be stored, got {type(value).__name__}")


def _first_lines(err: BaseException, count: int = 3) -> str:
    return " ".join(str(err).splitlines()[:count])
