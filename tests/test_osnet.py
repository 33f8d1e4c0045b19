"""OSNet: Torchreid-compatible module names and shapes, weights from the shared BN-folded ONNX export
(checked against onnxruntime on real CUHK03 crops), STA head started as OSNet's own embedding, bad weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import REPO_ROOT, data_root
from reid.backbones import WeightsUnavailableError, build_backbone
from reid.model import build_model, load_config
from reid.osnet import OSNET_CHANNELS, osnet
from reid.osnet_onnx import module_path, osnet_state_from_onnx
from reid.preprocess import normalize, resize_crop
from reid.transforms import read_frames

torch.set_num_threads(1)
ONNX = data_root() / "models" / "osnet_x0_25_msmt17.onnx"
CUHK03_VAL = data_root() / "reid" / "cuhk03" / "val"
STA_OSNET = REPO_ROOT / "configs" / "reid" / "sta_osnet_x0_25.yaml"
needs_onnx = pytest.mark.skipif(not ONNX.is_file(), reason=f"real data not found: {ONNX} (set MTMC_DATA)")


def torchreid_osnet_module():
    """Torchreid's own osnet.py, loaded by file path (importing torchreid itself pulls in gdown, tensorboard...)."""
    spec = importlib.util.find_spec("torchreid")
    if spec is None or spec.origin is None:
        pytest.skip("torchreid is not installed (pip install -e .[test])")
    root = Path(spec.origin).parent
    source = next((p for p in (root / "models" / "osnet.py", root / "reid" / "models" / "osnet.py") if p.is_file()), None)
    if source is None:
        pytest.skip(f"no models/osnet.py under {root}")
    module_spec = importlib.util.spec_from_file_location("torchreid_osnet_reference", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(OSNET_CHANNELS))
def test_state_dict_keys_and_shapes_match_torchreid(name):
    reference = getattr(torchreid_osnet_module(), name)(num_classes=751, pretrained=False).state_dict()
    ours = osnet(name, num_classes=751).state_dict()
    assert list(ours) == list(reference)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}


def test_torchreid_checkpoint_loads_and_gives_its_outputs(tmp_path):
    reference = getattr(torchreid_osnet_module(), "osnet_x0_25")(num_classes=10, pretrained=False).eval()
    path = tmp_path / "osnet_x0_25_market.pth.tar"
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}  # as Torchreid saves DataParallel models
    torch.save({"state_dict": state, "epoch": 60}, path)
    trunk = build_backbone("osnet_x0_25", pretrained="random", weights_path=str(path)).eval()
    images = torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(trunk(images), reference.featuremaps(images), atol=1e-5)


def test_onnx_node_names_map_to_module_paths():
    assert module_path("/conv2/conv2.0/conv2b/conv2b.0/conv2/Conv") == "conv2.0.conv2b.0.conv2"
    assert module_path("/conv2/conv2.0/gate/fc1_3/Conv") == "conv2.0.gate.fc1"
    assert module_path("/conv1/conv/Conv") == "conv1.conv"


def cuhk03_images(count: int = 6) -> np.ndarray:
    if not CUHK03_VAL.is_dir():
        pytest.skip(f"real data not found: {CUHK03_VAL} (set MTMC_DATA)")
    paths = sorted(CUHK03_VAL.glob("*.jpg"))[:count]
    return np.stack([resize_crop(image, (256, 128)) for image in read_frames(paths)])  # RGB uint8


@needs_onnx
def test_onnx_weights_reproduce_onnxruntime_on_real_crops():
    import onnxruntime

    model = osnet("osnet_x0_25")
    model.load_state_dict(osnet_state_from_onnx(model, ONNX))
    images = normalize(torch.from_numpy(cuhk03_images())).contiguous()
    expected = onnxruntime.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"]).run(
        None, {"images": images.numpy()})[0]
    with torch.no_grad():
        actual = model.eval()(images).numpy()
        conv5 = model.featuremaps(images)
    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() > 0.999, cosine
    assert conv5.shape == (len(images), 128, 16, 8)  # x0.25's conv5 map at 256x128, what STA pools


@needs_onnx
def test_untrained_sta_head_starts_as_the_pretrained_osnet_embedding():
    import onnxruntime

    model = build_model(load_config(STA_OSNET)).eval()
    images = normalize(torch.from_numpy(cuhk03_images(4))).contiguous()
    expected = onnxruntime.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"]).run(
        None, {"images": images.numpy()})[0]
    with torch.no_grad():
        one_frame = model.frame_embeddings(model.frame_features(images[:, None]))[:, 0].numpy()
        same_frame_clip = model(images[:1].expand(4, -1, -1, -1)[None]).numpy()  # 4 copies: F1 = F2 = f
    np.testing.assert_allclose(one_frame, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(same_frame_clip[0], expected[0], rtol=1e-3, atol=1e-4)


def test_weights_of_another_width_are_named(tmp_path):
    path = tmp_path / "osnet_x1_0_msmt17.pth"
    torch.save(osnet("osnet_x1_0").state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match=rf"{path}: not osnet_x0_25 weights: conv1.conv.weight has shape "
                                                      r"\(64, 3, 7, 7\), osnet_x0_25 expects \(16, 3, 7, 7\)"):
        build_backbone("osnet_x0_25", pretrained="random", weights_path=str(path))


def test_truncated_weights_file_is_named(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(osnet("osnet_x0_25").state_dict(), whole)
    truncated = tmp_path / "osnet_x0_25_truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsUnavailableError, match=rf"{truncated}: cannot read backbone weights"):
        build_backbone("osnet_x0_25", pretrained="random", weights_path=str(truncated))
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_backbone("osnet_x0_25", pretrained="random", weights_path=str(tmp_path / "missing.pth"))


@needs_onnx
def test_onnx_without_conv5_is_named(tmp_path):
    import onnx

    graph = onnx.load(str(ONNX))
    conv5 = [n for n in graph.graph.node if n.name.startswith("/conv5/")]
    for node in conv5:
        graph.graph.node.remove(node)
    path = tmp_path / "osnet_no_conv5.onnx"
    onnx.save(graph, str(path))
    with pytest.raises(WeightsUnavailableError, match=rf"{path}: holds no weights for .*conv5"):
        build_backbone("osnet_x0_25", pretrained="random", weights_path=str(path))
    garbage = tmp_path / "clip.onnx"
    garbage.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(WeightsUnavailableError, match=rf"{garbage}: not a readable ONNX model"):
        build_backbone("osnet_x0_25", pretrained="random", weights_path=str(garbage))


def test_missing_pretrained_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("MTMC_DATA", str(tmp_path / "no_data"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError, match=r"osnet_x0_25_msmt17\.pth .* at .*hub/checkpoints"):
        build_backbone("osnet_x0_25", pretrained="msmt17")
