"""A tiny config and a tiny synthetic dataset, so training tests take seconds on 2 CPU cores."""

from __future__ import annotations

import pytest

from tests.conftest import MODELS


def tiny_config(**train):
    """The small config shrunk: 64-px inputs, frozen backbone, a narrow head, two grids, no data
    workers."""
    from csrinfer.config import load_config

    cfg = load_config(MODELS / "csr_d2s_r18_small.yaml")
    m = cfg.model
    m.frozen_stages, m.norm_eval = 4, True
    m.neck_channels = m.csr_channels = 32
    m.head_channels, m.head_convs, m.mask_channels, m.kernel_dim, m.norm_groups = 32, 1, 16, 16, 8
    m.num_grids, m.scale_ranges, m.min_mask_input_area = [8, 4], [[1, 24], [12, 512]], [128, 256]
    cfg.input.short_side, cfg.input.max_size = 64, 96
    t = cfg.train
    t.short_side_range, t.batch_size, t.base_batch_size, t.num_workers = [64, 64], 2, 2, 0
    t.lr, t.warmup_iters, t.log_every, t.checkpoint_every, t.epochs = 1e-3, 2, 1, 1000, 50
    t.crop_pretrain_steps = 0  # the backbone is frozen here; tests/train/test_pretrain.py covers the warm-up
    for key, value in train.items():
        setattr(t, key, value)
    return cfg


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """8 train and 2 val images of the synthetic shapes (4 iterations per epoch at batch 2)."""
    from csrinfer.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("shapes") / "shapes", n_train=8, n_val=2, seed=0)
