"""Shared fixtures: configs and small models built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def paper_cfg():
    from csrinfer.config import load_config

    return load_config(MODELS / "csr_d2s_r50_coco.yaml")


@pytest.fixture(scope="session")
def small_cfg():
    from csrinfer.config import load_config

    return load_config(MODELS / "csr_d2s_r18_small.yaml")


def make_confident(model: torch.nn.Module, alive_classes: int | None = None, nms_pre: int = 10**6) -> torch.nn.Module:
    """Make a randomly initialised model yield many instances, with no ties at TopK cut-offs.

    A fresh model's focal-loss prior scores every cell at 0.01, under the 0.1 threshold, so
    post-processing would return nothing to compare. Here the first ``alive_classes`` classes
    (all by default) score around 0.5 and the rest near 0, and ``nms_pre`` is raised so every
    live (cell, class) pair is a candidate: no live candidate sits at a TopK cut-off where float
    rounding between backends could swap it for its neighbour.
    """
    with torch.no_grad():
        model.head.cate_out.bias.fill_(0.0)
        if alive_classes is not None:
            model.head.cate_out.bias[alive_classes:] = -30.0
        model.head.cate_out.weight.normal_(0.0, 0.3)
        model.head.kernel_out.weight.normal_(0.0, 0.05)
    model.inference["nms_pre"] = nms_pre
    return model


@pytest.fixture()
def small_model(small_cfg):
    from csrinfer.model import build_model

    torch.manual_seed(0)
    return make_confident(build_model(small_cfg)).eval()


# -- Runtime and export: one small confident checkpoint and its ONNX exports, made once per
# session. The small config with smaller inputs (short side 160) and one live class whose every
# grid cell is a candidate (nms_pre = the 1040 cells, written into the checkpoint's config so the
# PyTorch backend rebuilt from it runs the same post-processing as the exported graphs): many
# instances, no TopK ties, and a Matrix NMS small enough for 2 CPU cores.

EXPORT_SIZE = (160, 224)
CELLS = 24 * 24 + 16 * 16 + 12 * 12 + 8 * 8  # grids of csr_d2s_r18_small


@pytest.fixture(scope="session")
def confident_cfg(small_cfg):
    import copy

    cfg = copy.deepcopy(small_cfg)
    cfg.inference.nms_pre = CELLS
    cfg.input.short_side, cfg.input.max_size = 160, 256
    return cfg


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory, confident_cfg):
    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.model import build_model

    torch.manual_seed(0)
    model = make_confident(build_model(confident_cfg), alive_classes=1, nms_pre=CELLS).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth", model, confident_cfg)


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory, small_ckpt):
    """Static 256x256, batch 1."""
    from csrinfer.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("onnx_static")
    return export_model(small_ckpt, ExportOptions(out_dir=out, input_size=EXPORT_SIZE, engine=False)).onnx


@pytest.fixture(scope="session")
def small_onnx_dynamic(tmp_path_factory, small_ckpt):
    from csrinfer.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("onnx_dynamic")
    return export_model(small_ckpt, ExportOptions(out_dir=out, input_size=EXPORT_SIZE, dynamic=True, engine=False)).onnx


def photo_like(seed: int, h: int, w: int) -> np.ndarray:
    """A uint8 BGR image with smooth colours and shapes (not white noise), deterministic per seed."""
    from csrinfer.apps.samples import synthetic_image

    return synthetic_image(seed, h, w)


def delicate_instances(segmenter, image, margin: float = 1e-4) -> set[int]:
    """Indices of the instances whose stride-8 mask has a probability within ``margin`` of the
    mask threshold.

    Such a pixel can binarise differently on another backend (their outputs differ by ~1e-5),
    which moves the instance's maskness, hence its score, by about 1/area — up to ~1e-3 on
    random weights, whose masks are soft. Like tests/export/test_onnx.py's near-tied scores,
    these instances get a looser score tolerance; their masks must still match.
    """
    batch, boxes = segmenter.preprocess([image])
    out = segmenter.backend.infer({"images": batch})
    scores, masks = np.asarray(out["scores"][0]), np.asarray(out["masks"][0])
    kept = np.nonzero(scores > segmenter.score_thr)[0]  # instances are these slots, in order
    near = np.abs(masks[kept] - segmenter.mask_thr).reshape(len(kept), -1).min(axis=1) < margin
    return {i for i, flag in enumerate(near) if flag}


@pytest.fixture(scope="session", params=["10.13.3.9", "11.4.0.106"])
def real_tensorrt(request):
    """The real TensorRT Python bindings of one version, importable in subprocesses only (tests/tensorrt_bindings.py).

    Downloaded and built once into ~/.cache/csrinfer-test; skipped, with the reason, where the
    wheel cannot be downloaded or no C compiler/binutils exist.
    """
    from tests.tensorrt_bindings import Unavailable, prepare

    try:
        return prepare(request.param)
    except Unavailable as e:
        pytest.skip(str(e))
