"""benchmarks/train_ab.py: a fixed-length training run of the small config with overrides, its
AP, class-agnostic AP and category accuracy appended to one JSON list."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.test_run_all import load

TINY = ["input.short_side=64", "input.max_size=96", "train.short_side_range=[64,64]", "train.batch_size=2",
        "train.num_workers=0", "train.warmup_iters=1", "train.crop_pretrain_steps=1"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from csrinfer.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("ab") / "shapes", n_train=8, n_val=2, seed=0)


def test_two_runs_append_comparable_records(shapes, tmp_path):
    train_ab = load("train_ab")
    results = tmp_path / "ab.json"
    for name, extra in (("base", []), ("cls4", ["train.loss_cls=4.0"])):
        args = ["--name", name, "--data", str(shapes), "--iters", "2", "--threads", "1", "--work", str(tmp_path),
                "--results", str(results)]
        assert train_ab.main(args + [a for s in TINY + extra for a in ("--set", s)]) == 0
    runs = json.loads(results.read_text())
    assert [r["name"] for r in runs] == ["base", "cls4"]
    assert runs[1]["overrides"][-1] == "train.loss_cls=4.0" and "--name cls4" in runs[1]["command"]
    for r in runs:
        assert r["iterations"] == 2 and r["chance_accuracy"] == 0.25
        assert 0.0 <= r["category_accuracy_on_positives"] <= 1.0
        assert 0.0 <= r["mask_ap"]["AP"] <= 1.0 and 0.0 <= r["class_agnostic_ap"]["AP"] <= 1.0
        assert r["machine"]["cores"] >= 1 and r["date"]
        metrics = [json.loads(line) for line in (tmp_path / r["name"] / "metrics.jsonl").read_text().splitlines()]
        assert metrics[-1]["iter"] == 2  # stopped at the fixed length


def test_an_unknown_setting_is_one_sentence(shapes, tmp_path):
    with pytest.raises(SystemExit, match=r"unknown key\(s\) \['nope'\]"):
        load("train_ab").main(["--name", "x", "--data", str(shapes), "--set", "train.nope=1",
                               "--results", str(tmp_path / "ab.json")])
