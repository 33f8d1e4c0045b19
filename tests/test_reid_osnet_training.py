"""The CPU fine-tune recipe of STA-OSNet on real CUHK03 images, tiny: frozen cached stem (flip / erase on
the cached maps), backbone BatchNorm statistics kept, loss falls, checkpoint loads."""

from __future__ import annotations

import pytest
import torch

from configs import REPO_ROOT, data_root
from reid.checkpoint import load_checkpoint
from reid.model import build_model
from reid.training import load_run_config, train

torch.set_num_threads(1)
CUHK03_VAL = data_root() / "reid" / "cuhk03" / "val"


def first_identities(split, count: int, folder):
    """A CUHK03 split folder of the first ``count`` identities: links to the real images."""
    folder.mkdir()
    for image in sorted(split.glob("*.jpg")):
        if int(image.name[:4]) < count:
            (folder / image.name).symlink_to(image)
    return folder


def test_frozen_stem_fine_tune_keeps_backbone_statistics(tmp_path):
    if not CUHK03_VAL.is_dir():
        pytest.skip(f"real data not found: {CUHK03_VAL} (set MTMC_DATA)")
    data = first_identities(CUHK03_VAL, 30, tmp_path / "cuhk03_30")
    frames = len(list(data.iterdir()))
    run = load_run_config(REPO_ROOT / "configs" / "reid" / "train_cpu_osnet_cuhk03.yaml", {
        "data": str(data), "out": str(tmp_path / "ckpt"),
        "model.pretrained": "random", "model.head_init": "random", "model.input_size": [64, 32],
        "train.iterations": 20, "train.p": 6, "train.lr": 3e-3, "train.eval_mode": "sample",
        "train.stem_cache": str(tmp_path / "stem.pt"),
    })
    result = train(run)
    first = sum(r["total"] for r in result.losses[:5]) / 5
    last = sum(r["total"] for r in result.losses[-5:]) / 5
    assert last < 0.9 * first, (first, last)
    cached = torch.load(tmp_path / "stem.pt", weights_only=True)["views"]
    assert cached.shape[:3] == (frames, 1, 1)  # one view per frame: flip and erase act on the cached maps
    model, cfg, _ = load_checkpoint(result.checkpoint)
    running_vars = [m.running_var for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert running_vars and all(torch.equal(v, torch.ones_like(v)) for v in running_vars)  # fresh-init statistics kept
    start = build_model(cfg).backbone  # the same seeded init the run started from
    assert torch.equal(model.backbone[3].state_dict()["0.conv1.conv.weight"], start[3].state_dict()["0.conv1.conv.weight"])
    assert not torch.equal(model.backbone[4].state_dict()["0.conv1.conv.weight"], start[4].state_dict()["0.conv1.conv.weight"])
