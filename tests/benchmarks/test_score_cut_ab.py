"""benchmarks/score_cut_ab.py: one checkpoint scored with and without the old second score cut."""

from __future__ import annotations

import json

from tests.benchmarks.test_run_all import load


def test_without_the_cut_nothing_is_lost(tmp_path, small_ckpt):
    from csrinfer.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "shapes", n_train=1, n_val=3, seed=5)
    out = tmp_path / "ab.json"
    assert load("score_cut_ab").main(["--ckpt", str(small_ckpt), "--data", str(data), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    before, now = result["runs"]["second_cut_at_0.1_before"], result["runs"]["graph_thresholds_only_now"]
    assert now["detections"] >= before["detections"] > 0 and result["images"] == 3
    assert result["command"] and result["date"] and "evaluated on the CPU" in result["machine"]
