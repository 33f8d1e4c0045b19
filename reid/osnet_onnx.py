"""Torchreid OSNet weights from an ONNX export whose BatchNorms were folded into the convolutions.

Such an export (e.g. the shared ``osnet_x0_25_msmt17.onnx``) keeps Torchreid's names for the tensors
it did not touch (``conv2.0.conv2a.conv1.weight``, the gates, ``fc.*``) and stores each folded
conv + BatchNorm as one Conv with a bias under an anonymous name (``onnx::Conv_1047``); its node name
(``/conv2/conv2.0/conv2b/conv2b.0/conv2/Conv``) still gives the module path. The folded pair is
mapped back as conv weight = folded weight, and the BatchNorm made an identity plus the folded
bias (weight 1, running mean 0, running var 1 - eps, so (x - 0) / sqrt(var + eps) = x exactly).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

_COPY_SUFFIX = re.compile(r"_\d+$")  # the exporter names repeated calls of one module fc1, fc1_1, ...
_BN_EPS = 1e-5  # torch's BatchNorm2d default, which Torchreid's OSNet uses everywhere


class OnnxWeightsError(ValueError):
    """The ONNX file does not hold this OSNet's weights; the message names the file."""


def read_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise OnnxWeightsError(f"{path}: ONNX file not found")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf raises DecodeError, truncated files others
        raise OnnxWeightsError(f"{path}: not a readable ONNX model: {err}") from None


def module_path(node_name: str) -> str:
    """``/conv2/conv2.0/conv2b/conv2b.0/conv2/Conv`` -> ``conv2.0.conv2b.0.conv2``."""
    parts: list[str] = []
    for segment in node_name.strip("/").split("/")[:-1]:
        segment = _COPY_SUFFIX.sub("", segment)
        if parts and segment.startswith(parts[-1] + "."):
            parts[-1] = segment  # a child of a Sequential is named with its parent's full path
        else:
            parts.append(segment)
    return ".".join(parts)


def osnet_state_from_onnx(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """A complete state dict for ``model`` (an OSNet) made from the ONNX file's tensors."""
    from onnx import numpy_helper

    graph = read_onnx(path).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {name: value.clone() for name, value in model.state_dict().items()}
    filled: set[str] = set()
    for node in graph.node:
        if node.op_type == "Conv":
            _map_conv(node, tensors, state, filled, path)
    for name, value in tensors.items():
        if name in state:
            _put(state, filled, name, value, path)
    _check_complete(state, filled, path)
    return state


def _map_conv(node, tensors: dict[str, np.ndarray], state: dict[str, torch.Tensor], filled: set[str], path: Path) -> None:
    weight_name = node.input[1]
    if weight_name in state:  # stored under its Torchreid name: copied with the named tensors
        return
    module = module_path(node.name)
    if f"{module}.weight" not in state:
        raise OnnxWeightsError(f"{path}: node {node.name} maps to {module}, which this OSNet does not have "
                               "(another architecture or width?)")
    _put(state, filled, f"{module}.weight", tensors[weight_name], path)
    if len(node.input) < 3:
        return
    bn = module.rsplit(".", 1)[0] + ".bn"
    if f"{bn}.running_var" not in state:
        raise OnnxWeightsError(f"{path}: node {node.name} has a folded bias but {module} is followed by no BatchNorm")
    bias = tensors[node.input[2]]
    eps = _BN_EPS
    for suffix, value in (("weight", np.ones_like(bias)), ("bias", bias), ("running_mean", np.zeros_like(bias)),
                          ("running_var", np.full_like(bias, 1.0 - eps))):
        _put(state, filled, f"{bn}.{suffix}", value, path)


def _put(state: dict[str, torch.Tensor], filled: set[str], name: str, value: np.ndarray, path: Path) -> None:
    expected = tuple(state[name].shape)
    if tuple(value.shape) != expected:
        raise OnnxWeightsError(f"{path}: tensor for {name} has shape {tuple(value.shape)}, this OSNet expects "
                               f"{expected} (an export of another OSNet width?)")
    state[name] = torch.from_numpy(np.array(value, copy=True)).to(state[name].dtype)
    filled.add(name)


def _check_complete(state: dict[str, torch.Tensor], filled: set[str], path: Path) -> None:
    missing = [name for name in state if name not in filled and not name.endswith("num_batches_tracked")
               and not name.startswith("classifier.")]
    if missing:
        raise OnnxWeightsError(f"{path}: holds no weights for {len(missing)} tensors of this OSNet, e.g. {missing[:3]}")
