"""Typed YAML configuration.

The YAML files beside this module are the defaults a user copies and edits. Every config is
loaded into a dataclass: unknown keys are errors (a typo must never be silently ignored) and
values are checked against the field's type where that is cheap.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
# the source checkout, or site-packages for `pip install .` (configs/ ships as package data either way)
REPO_ROOT = CONFIG_DIR.parent
DATA_ENV, CACHE_ENV = "MTMC_DATA", "MTMC_CACHE"

T = TypeVar("T")


class UserError(Exception):
    """An error caused by the user's input (a file, flag or config) whose message says what to fix: every CLI
    prints it as one line and exits non-zero, never with a traceback."""


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit its dataclass."""


def is_checkout() -> bool:
    """Running from a source checkout (also `pip install -e .`), not from an installed copy."""
    return (REPO_ROOT / "pyproject.toml").is_file()


def data_root() -> Path:
    """Where the shared test data lives: $MTMC_DATA, else ../shared/data beside the checkout (installed: beside
    the working directory)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return (REPO_ROOT if is_checkout() else Path.cwd()).parent / "shared" / "data"


def cache_root() -> Path:
    """Exports and trained models made on this machine: $MTMC_CACHE, else runs/cache in a checkout, else
    ~/.cache/mtmc. Never inside git (weights trained on the shared data sets are research-only)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return REPO_ROOT / "runs" / "cache" if is_checkout() else Path.home() / ".cache" / "mtmc"


def resolve_data_path(path: str, root: Path) -> Path:
    """A path as configs give it: relative paths are under ``root`` (the data root, or for files that ship with
    the configs, REPO_ROOT)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(content).__name__}")
    return content


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Command-line ``key=value`` items -> ``{key: YAML-parsed value}`` (dotted keys kept as they are)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected key=value, e.g. train.iterations=100")
        overrides[key] = yaml.safe_load(value)
    return overrides


def build_dataclass(cls: type[T], values: Mapping[str, Any], source: str = "config") -> T:
    """Build ``cls`` from ``values``, rejecting unknown keys and obviously wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(value, hints[key], f"{source}: {key}")
    return cls(**kwargs)


def load_dataclass(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Defaults of ``cls``, then the YAML at ``path`` (if any), then keyword overrides."""
    values: dict[str, Any] = dict(read_yaml(path)) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_dataclass(cls, values, source=str(path) if path is not None else "overrides")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        return origin(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return build_dataclass(hint, value, source=where)
    return value
