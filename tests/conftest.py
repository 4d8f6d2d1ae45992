"""Shared fixtures: configs and small models built once per session."""

from __future__ import annotations

from pathlib import Path

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
