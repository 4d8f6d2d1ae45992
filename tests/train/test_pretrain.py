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
