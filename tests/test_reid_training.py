"""Loss pieces and a tiny real training run (random init, tiny input) whose loss falls."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import ConfigError, data_root
from reid.checkpoint import load_checkpoint
from reid.model import build_model
from reid.losses import STALoss, batch_hard_triplet
from reid.training import load_run_config, train
from tools import make_reid_data, train_reid


def test_batch_hard_triplet_matches_hand_computation():
    # 1-D embeddings: a0=0, a1=1 (pid 0), b0=3, b1=7 (pid 1). Hardest positive / nearest negative:
    # a0: 1 / 3 -> relu(1-3+4)=2 ; a1: 1 / 2 -> 3 ; b0: 4 / 2 -> 6 ; b1: 4 / 6 -> 2  => mean 13/4.
    emb = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    pids = torch.tensor([0, 0, 1, 1])
    assert batch_hard_triplet(emb, pids, margin=4.0).item() == pytest.approx(13 / 4, rel=1e-5)
    assert batch_hard_triplet(emb, torch.tensor([0, 1, 2, 3]), margin=0.3).item() == 0.0  # no positives


def test_sta_loss_adds_lambda_times_reg():
    torch.manual_seed(0)
    emb, logits = torch.randn(4, 8), torch.randn(4, 3)
    g = torch.rand(4, 3, 4, 2)
    g = g / g.sum(dim=(2, 3), keepdim=True)
    pids = torch.tensor([0, 0, 2, 2])
    torch.manual_seed(1)
    plain = STALoss(0.3, 0.0)(emb, logits, g, pids)
    torch.manual_seed(1)
    weighted = STALoss(0.3, 5.0)(emb, logits, g, pids)
    assert plain.regulariser > 0
    assert plain.total.item() == pytest.approx(plain.cross_entropy + plain.triplet)
    assert weighted.total.item() == pytest.approx(plain.total.item() + 5.0 * weighted.regulariser, rel=1e-5)


def test_run_config_overrides_and_unknown_keys():
    run = load_run_config(None, {"model.temporal_pool": "avg", "train.iterations": 7, "data": "x"})
    assert (run.model.temporal_pool, run.train.iterations, run.data) == ("avg", 7, "x")
    with pytest.raises(ConfigError, match="iteratons"):
        load_run_config(None, {"train.iteratons": 7})
    with pytest.raises(ConfigError, match="eval_mode"):
        load_run_config(None, {"train.eval_mode": "every"})
    assert train_reid.main(["--config", "configs/reid/train_cpu_mobilenetv2.yaml", "model.temporal_pool=mean"]) == 1


SEQ = data_root() / "mot15" / "TUD-Campus"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    if not (SEQ / "TUD-Campus.mp4").is_file():
        pytest.skip(f"real data absent: {SEQ} (set MTMC_DATA)")
    out = tmp_path_factory.mktemp("reid") / "tud"
    make_reid_data.main(["--video", str(SEQ / "TUD-Campus.mp4"), "--gt", str(SEQ / "gt" / "gt.txt"),
                         "--out", str(out), "--segments", "2", "--min-frames", "8"])
    return out


@pytest.mark.parametrize("frozen_blocks", [0, 14])
def test_tiny_training_run_lowers_the_loss_and_writes_a_checkpoint(tiny_dataset, tmp_path, frozen_blocks):
    run = load_run_config(None, {
        "data": str(tiny_dataset), "out": str(tmp_path / "ckpt"),
        "model.pretrained": "random", "model.input_size": [64, 32], "model.embed_dim": 64,
        "train.iterations": 25, "train.p": 3, "train.k": 2, "train.lr": 3e-3, "train.lr_step": 100,
        "train.frozen_blocks": frozen_blocks, "train.eval_mode": "sample", "train.num_threads": 1,
    })
    result = train(run)
    first = sum(r["total"] for r in result.losses[:5]) / 5
    last = sum(r["total"] for r in result.losses[-5:]) / 5
    model, cfg, meta = load_checkpoint(result.checkpoint)
    if frozen_blocks:  # a trained top on a fixed stem learns fast
        assert last < 0.8 * first, (first, last)
    else:  # end to end from random weights: 25 steps of 6 clips are noise, but every layer must be trained
        untrained = build_model(dataclasses.replace(cfg, num_classes=cfg.num_classes))
        first_conv = next(iter(model.backbone.state_dict()))
        assert not torch.equal(model.backbone.state_dict()[first_conv], untrained.backbone.state_dict()[first_conv])
        assert np.isfinite(last)
    assert cfg.num_classes == len(meta["train_pids"]) and meta["iterations"] == 25 and meta["epoch"] >= 1
    assert set(meta["metrics"]) == {"rank1", "rank5", "rank10", "rank20", "mAP"}
    assert meta["train"]["reg_lambda"] == run.train.reg_lambda
    assert model(torch.zeros(1, 4, 3, 64, 32)).shape == (1, 64)
