"""A long-running Segmenter does not grow: 1000 predictions keep the process's RSS flat (5%)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.conftest import make_confident

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

TINY = {
    "name": "tiny", "classes": ["a", "b"],
    "model": {"backbone": "resnet18", "neck_channels": 32, "csr_channels": 32, "head_channels": 32, "head_convs": 1,
              "mask_channels": 16, "kernel_dim": 16, "norm_groups": 8, "num_classes": 2, "num_grids": [8, 4],
              "scale_ranges": [[1, 64], [32, 512]], "min_mask_input_area": [128, 512]},
    "input": {"short_side": 64, "max_size": 96, "export_size": [64, 64]},
    "inference": {"nms_pre": 80, "max_per_img": 20},
}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model (every cell a candidate, 20 instances per image) and its 64x64 ONNX export."""
    from csrinfer.config import config_from_dict
    from csrinfer.export.pipeline import ExportOptions, export_model
    from csrinfer.model import build_model

    cfg = config_from_dict(TINY)
    torch.manual_seed(0)
    model = make_confident(build_model(cfg), nms_pre=80).eval()
    out = tmp_path_factory.mktemp("tiny")
    return model, cfg, export_model(model, ExportOptions(out_dir=out, engine=False), cfg=cfg).onnx


def assert_flat(segmenter, image, n=1000, warmup=50):
    for _ in range(warmup):  # allocator pools, thread pools, lazy inits settle first
        segmenter.predict(image)
    before = rss_mb()
    found = sum(len(segmenter.predict(image)) for _ in range(n))
    after = rss_mb()
    assert found == n * 20, "every prediction returned its instances"
    assert after <= before * 1.05, f"RSS grew from {before:.0f} MB to {after:.0f} MB over {n} predictions"


def test_onnxruntime_rss_stays_flat_over_1000_predictions(tiny):
    from csrinfer import Segmenter

    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert_flat(Segmenter(tiny[2]), image)


@pytest.mark.slow
def test_pytorch_rss_stays_flat_over_1000_predictions(tiny):
    from csrinfer import Segmenter

    model, cfg, _ = tiny
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert_flat(Segmenter(model, cfg=cfg), image)
