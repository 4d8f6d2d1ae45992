"""Fixtures for the serving tests: a tiny checkpoint and its ONNX export, made once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import MODELS, make_confident


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The small config at 96x128 inputs, randomly initialised to return many instances."""
    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.config import load_config
    from csrinfer.model import build_model

    cfg = load_config(MODELS / "csr_d2s_r18_small.yaml")
    cfg.input.short_side, cfg.input.max_size, cfg.input.export_size = 96, 128, [96, 128]
    torch.manual_seed(0)
    model = make_confident(build_model(cfg)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.pth", model, cfg)


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint):
    """``csrinfer export --dynamic --onnx-only --triton-repo``: (model.onnx, the Triton repository)."""
    from csrinfer.cli import main

    out = tiny_checkpoint.parent / "export"
    assert main(["export", "--model", str(tiny_checkpoint), "--dynamic", "--onnx-only", "--out", str(out),
                 "--triton-repo", str(out / "triton_repo")]) == 0
    return out / "model.onnx", out / "triton_repo"


@pytest.fixture(scope="session")
def solov2_export(tmp_path_factory):
    """mmdetection's tiny SOLOv2 of tests/fixtures/mmdet_solov2, converted, and its static ONNX:
    (model.pth, model.onnx)."""
    from csrinfer.convert.mmdet import convert_mmdet
    from csrinfer.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("solov2")
    fixture = MODELS.parent / "tests" / "fixtures" / "mmdet_solov2" / "solov2_tiny.pth"
    checkpoint = convert_mmdet(fixture, MODELS / "solov2_tiny_test.yaml", out / "model.pth")
    return checkpoint, export_model(checkpoint, ExportOptions(out_dir=out, engine=False)).onnx


@pytest.fixture(scope="session")
def tiny_onnx(tiny_export):
    """``tiny_checkpoint`` exported with a dynamic batch, height and width."""
    return tiny_export[0]


def random_images(seed: int = 0, sizes=((70, 90), (100, 64), (48, 48))) -> list[np.ndarray]:
    """uint8 BGR images of several sizes: smooth blobs plus noise, never constant."""
    rng = np.random.default_rng(seed)
    images = []
    for h, w in sizes:
        y, x = np.mgrid[0:h, 0:w]
        base = 127 + 100 * np.sin(x[..., None] / rng.uniform(3, 9, 3) + y[..., None] / rng.uniform(3, 9, 3))
        images.append(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))
    return images
