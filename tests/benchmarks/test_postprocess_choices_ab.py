"""benchmarks/postprocess_choices_ab.py: csrinfer's post-processing against mmdetection's choices."""

from __future__ import annotations

import json

import torch

from tests.benchmarks.test_run_all import load


def test_the_probability_filter_ties_saturated_neighbours_that_the_logit_filter_separates():
    ab = load("postprocess_choices_ab")
    logits = torch.tensor([[[[31.0, 30.0]]]])  # both sigmoid to 1.0 in float32
    assert ab.points_nms_on_probabilities(logits).flatten().tolist() == [1.0, 1.0]  # mmdetection: both kept


def test_identical_and_differing_outputs_are_told_apart():
    ab = load("postprocess_choices_ab")
    scores, labels, masks = torch.tensor([[0.9, 0.5, 0.0]]), torch.tensor([[1, 2, 0]]), torch.rand(1, 3, 4, 4)
    other_padding = masks.clone()
    other_padding[0, 2] = 0.0  # an empty slot's mask is arbitrary
    assert ab.differ((scores, labels, masks), (scores, labels, other_padding))["identical"]
    fewer = torch.tensor([[0.9, 0.0, 0.0]])
    d = ab.differ((scores, labels, masks), (fewer, labels, masks))
    assert not d["identical"] and d["instances"] == [2, 1] and abs(d["max_score_diff"] - 0.5) < 1e-6


def test_the_script_writes_its_counts(tmp_path, small_ckpt):
    from csrinfer.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "shapes", n_train=1, n_val=2, seed=5)
    out = tmp_path / "ab.json"
    assert load("postprocess_choices_ab").main(["--ckpt", str(small_ckpt), "--data", str(data), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 2 and result["logits_vs_probabilities"]["images"] == 2
    assert len(result["loadavg"]) == 3 and result["command"] and result["date"]
