"""The paper's schedule: linear lr scaling, linear warm-up, x0.1 at epochs 8 and 11; AdamW groups."""

from __future__ import annotations

import pytest
import torch

from csrinfer.train.schedule import build_optimizer, lr_factor, milestone_iters, scaled_lr


def test_linear_scaling_rule():
    assert scaled_lr(1e-4, 16, 4) == pytest.approx(4e-4)
    assert scaled_lr(1e-4, 2, 4) == pytest.approx(5e-5)


def test_warm_up_then_steps_at_the_milestone_epochs():
    kw = dict(milestones=milestone_iters((8, 11), 12, 1200), gamma=0.1, warmup_iters=50, warmup_ratio=0.001)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(25, **kw) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(50, **kw) == 1.0 and lr_factor(799, **kw) == 1.0
    assert lr_factor(800, **kw) == pytest.approx(0.1) and lr_factor(1099, **kw) == pytest.approx(0.1)
    assert lr_factor(1100, **kw) == pytest.approx(0.01) and lr_factor(1199, **kw) == pytest.approx(0.01)


def test_a_schedule_fitted_to_another_length_keeps_its_milestone_fractions():
    assert milestone_iters((8, 11), 12, 1200) == [800, 1100]
    assert milestone_iters((8, 11), 12, 600) == [400, 550]
    assert milestone_iters((4,), 5, 1000) == [800]


def test_adamw_without_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Conv2d(4, 2, 1))
    model[2].weight.requires_grad_(False)  # frozen parameters are left out
    opt = build_optimizer(model, 1e-3, 0.05)
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [model[0].weight.shape]
    assert len(no_decay["params"]) == 4  # conv bias, GN weight and bias, second conv bias
