"""Backbone warm-up on object crops (csrinfer.train.pretrain): the stand-in for an ImageNet start."""

from __future__ import annotations

import torch

from csrinfer.model import build_model
from csrinfer.train import loop
from csrinfer.train.loop import _train_dataset, train
from csrinfer.train.pretrain import object_crops, pretrain_backbone
from tests.train.conftest import tiny_config


def test_every_object_of_the_training_set_becomes_one_labelled_crop(tiny_data):
    dataset = _train_dataset(tiny_config(), tiny_data)
    crops, labels = object_crops(dataset, size=32)
    assert crops.dtype == torch.uint8 and crops.shape == (dataset.stats["instances"], 3, 32, 32)
    assert labels.tolist() == [label for rec in dataset.records for _, label in rec["instances"]]
    assert object_crops(dataset, size=32, seed=0)[0].equal(crops)  # deterministic for a seed


def test_warm_up_teaches_the_backbone_the_crops_classes(tiny_data):
    cfg = tiny_config()
    cfg.model.frozen_stages, cfg.model.norm_eval = 0, False
    model = build_model(cfg)
    crops, labels = object_crops(_train_dataset(cfg, tiny_data), size=32)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    first = pretrain_backbone(model.backbone, crops, labels, 4, steps=1, mean=model.mean, std=model.std,
                              batch_size=16)
    stats = pretrain_backbone(model.backbone, crops, labels, 4, steps=40, mean=model.mean, std=model.std,
                              batch_size=16)
    assert stats["loss"] < 0.5 * first["loss"] and stats["accuracy"] > 0.8, (first, stats)
    assert any(not v.equal(before[k]) for k, v in model.backbone.state_dict().items())


def _trainable(**train):
    cfg = tiny_config(**train)
    cfg.model.frozen_stages = 3  # layer4 trains: a warm-up has something to teach
    return cfg


def test_training_warms_the_backbone_up_once_and_not_again_on_resume(tiny_data, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(loop, "pretrain_backbone",
                        lambda *a, **k: calls.append(a[4]) or {"steps": a[4], "accuracy": 1.0})
    train(_trainable(crop_pretrain_steps=7), tiny_data, tmp_path, max_iters=4, progress=False)
    train(_trainable(crop_pretrain_steps=7), tiny_data, tmp_path, max_iters=5, resume=True, progress=False)
    assert calls == [4]  # never more warm-up steps than training iterations; none on resume
    train(tiny_config(crop_pretrain_steps=7), tiny_data, tmp_path / "frozen", max_iters=1, progress=False)
    assert calls == [4]  # a frozen backbone has nothing to warm up
    cfg = _trainable(crop_pretrain_steps=7)
    cfg.model.pretrained = True  # ImageNet weights make the warm-up pointless
    monkeypatch.setattr(loop, "build_model", lambda c: build_model(_trainable()))  # no download in a test
    train(cfg, tiny_data, tmp_path / "imagenet", max_iters=1, progress=False)
    assert calls == [4]


def test_the_warm_up_stops_at_its_deadline(tiny_data):
    import time

    cfg = tiny_config()
    model = build_model(cfg)
    crops, labels = object_crops(_train_dataset(cfg, tiny_data), size=32)
    run = lambda **k: pretrain_backbone(model.backbone, crops, labels, 4, steps=3, mean=model.mean,  # noqa: E731
                                        std=model.std, batch_size=4, **k)
    assert run()["steps"] == 3 and run(deadline=time.monotonic() + 600)["steps"] == 3
    late = run(deadline=time.monotonic() - 1)
    assert late["steps"] == 0 and late["stopped"] == "deadline" and "loss" not in late


def _recording(monkeypatch, interrupt_at_check=None):
    """Wrap the real warm-up: record the backbone's weights after each call, and (optionally) send
    a SIGINT, as a Ctrl-C, at the n-th check between warm-up steps."""
    import signal

    real, calls, checks = pretrain_backbone, [], {"n": 0}  # the module's own, never an earlier wrapper

    def wrapped(backbone, *args, should_stop, **kwargs):
        def check():
            checks["n"] += 1
            if checks["n"] == interrupt_at_check:
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # as the interpreter runs a Ctrl-C
            return should_stop()

        stats = real(backbone, *args, should_stop=check, **kwargs)
        calls.append((stats["steps"], {k: v.clone() for k, v in backbone.state_dict().items()}))
        return stats

    monkeypatch.setattr(loop, "pretrain_backbone", wrapped)
    return calls


def test_ctrl_c_during_the_warm_up_saves_it_and_resume_continues_it(tiny_data, tmp_path, monkeypatch):
    import pytest

    from csrinfer.model.checkpoint import read_checkpoint

    straight = _recording(monkeypatch)
    train(_trainable(crop_pretrain_steps=5), tiny_data, tmp_path / "straight", max_iters=5, progress=False)
    interrupted = _recording(monkeypatch, interrupt_at_check=3)  # before warm-up step 3: 2 steps done
    with pytest.raises(KeyboardInterrupt):
        train(_trainable(crop_pretrain_steps=5), tiny_data, tmp_path / "run", max_iters=5, progress=False)
    state = read_checkpoint(tmp_path / "run" / "last.pth")["train_state"]
    assert state["iteration"] == 0 and state["warmup"]["steps"] == 2 and not state["warmup"]["finished"]
    train(_trainable(crop_pretrain_steps=5), tiny_data, tmp_path / "run", max_iters=5, resume=True, progress=False)
    assert [steps for steps, _ in straight] == [5] and [steps for steps, _ in interrupted] == [2, 5]
    # The warm-up continued where it stopped (its classifier, optimiser and sampling included):
    # the backbone ends the warm-up as the uninterrupted run's did.
    for key, value in straight[0][1].items():
        torch.testing.assert_close(interrupted[1][1][key], value, rtol=1e-5, atol=1e-6, msg=key)
    meta = read_checkpoint(tmp_path / "run" / "final.pth")["meta"]
    assert meta["iteration"] == 5 and meta["warmup"] == {"configured": 5, "planned": 5, "steps": 5, "cut": None,
                                                         "finished": True}


def test_a_warm_up_cut_by_the_time_budget_says_so_with_its_step_counts(tiny_data, tmp_path, monkeypatch, caplog):
    import logging
    import types

    from csrinfer.model.checkpoint import read_checkpoint
    from csrinfer.train import pretrain

    clock = {"t": 0.0}

    def tick():  # every reading of the clock is a second later
        clock["t"] += 1.0
        return clock["t"]

    fake = types.SimpleNamespace(monotonic=tick, time=lambda: 0.0)
    monkeypatch.setattr(loop, "time", fake)
    monkeypatch.setattr(pretrain, "time", fake)
    with caplog.at_level(logging.INFO, logger="csrinfer.train.loop"):
        final = train(_trainable(crop_pretrain_steps=50), tiny_data, tmp_path, max_minutes=0.4, fit_to_time=True,
                      progress=False)
    warmup = read_checkpoint(final)["meta"]["warmup"]
    assert 0 < warmup["steps"] < 50 and warmup["cut"] == "time budget" and warmup["configured"] == 50
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"cut to {warmup['steps']} of its 50 steps" in m for m in said), said
