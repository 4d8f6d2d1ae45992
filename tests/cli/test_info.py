"""``csrinfer info`` and the CLI's error contract: one line, non-zero exit, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from csrinfer.cli import main

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_info_reports_parts_and_flops(capsys):
    assert main(["info", "--config", str(MODELS / "csr_d2s_r18_small.yaml"), "--input-size", "320x480", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    from csrinfer.config import load_config
    from csrinfer.model import build_model

    model = build_model(load_config(MODELS / "csr_d2s_r18_small.yaml"))
    numel = {part: sum(t.numel() for t in getattr(model, part).parameters()) for part in ("backbone", "neck", "head")}
    p = summary["parameters"]
    assert {k: p[k] for k in numel} == numel and p["total"] == sum(numel.values())
    assert (summary["flops"]["height"], summary["flops"]["width"]) == (320, 480)
    assert main(["info", "--config", str(MODELS / "csr_d2s_r18_small.yaml"), "--input-size", "640x960", "--json"]) == 0
    double = json.loads(capsys.readouterr().out)["flops"]["network"]
    # Per-pixel work grows 4x; the kernel and category branches run on fixed S x S grids.
    assert 3.2 < double / summary["flops"]["network"] < 4


def test_info_on_a_checkpoint(tmp_path, capsys, small_cfg):
    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.model import build_model

    ckpt = save_checkpoint(tmp_path / "m.pth", build_model(small_cfg), small_cfg)
    assert main(["info", "--model", str(ckpt)]) == 0
    out = capsys.readouterr().out
    h, w = small_cfg.input.export_size
    assert "csr_d2s_r18_small" in out and "total" in out and f"GFLOPs at {h}x{w}" in out


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "csrinfer", *args], capture_output=True, text=True, timeout=120)


def test_user_mistakes_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    for args in (["info", "--config", str(tmp_path / "missing.yaml")], ["info", "--model", str(bad)]):
        r = run_cli(*args)
        assert r.returncode == 2
        assert "Traceback" not in r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("csrinfer info: error: ")


def test_bad_input_size_is_an_argument_error():
    r = run_cli("info", "--config", str(MODELS / "csr_d2s_r18_small.yaml"), "--input-size", "big")
    assert r.returncode == 2 and "not a size HxW" in r.stderr and "Traceback" not in r.stderr
