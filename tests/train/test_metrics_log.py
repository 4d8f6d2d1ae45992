"""The metrics log: JSON lines, appended on resume, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import json
import sys
import types

from csrinfer.train.metrics_log import MetricsLog


def test_json_lines_are_appended(tmp_path):
    for it in (1, 2):
        log = MetricsLog(tmp_path, tensorboard=False)
        log.write({"iter": it, "loss": 1.0 / it})
        log.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"iter": 1, "loss": 1.0}, {"iter": 2, "loss": 0.5}]


def test_scalars_go_to_tensorboard_when_installed(tmp_path, monkeypatch):
    written = []

    class FakeWriter:
        def __init__(self, logdir):
            written.append(("dir", logdir))

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def close(self):
            written.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    log = MetricsLog(tmp_path)
    log.write({"iter": 7, "loss": 0.25, "lr": 1e-4, "note": "text is not a scalar"})
    log.close()
    assert written == [("dir", str(tmp_path / "tensorboard")), ("train/loss", 0.25, 7), ("train/lr", 1e-4, 7), "closed"]


def test_other_ranks_write_nothing(tmp_path):
    log = MetricsLog(tmp_path / "rank1", enabled=False)
    log.write({"iter": 1, "loss": 1.0})
    log.close()
    assert not (tmp_path / "rank1").exists()
