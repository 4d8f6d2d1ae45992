"""benchmarks/gpu_kernel.py --dry-run: the GPU script's logic, on the CPU with tiny shapes.

The real run needs a GPU (its numbers go to benchmarks/results/); this keeps the script from
rotting between GPU runs: every stage runs, the JSON is complete, nothing failed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_kernel.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_kernel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_every_stage(tmp_path, capsys):
    out = tmp_path / "dry.json"
    assert load_script().main(["--dry-run", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dry_run"] and res["errors"] == {}
    assert res["correctness"]["failed"] == 0 and res["correctness"]["passed"] >= 10
    assert all(r["all_written"] for r in res["correctness"]["checks"] if "all_written" in r)
    assert res["kernel_speed"]["shapes"] and res["kernel_speed"]["variant_sweep"]
    variants = res["e2e"]["variants"]
    assert variants["eager_fp32"]["instances"] > 0
    assert variants["fast"]["vs_eager_fp32"]["matched_fraction"] == 1.0  # on a CPU the switches are off
    assert variants["fast"]["parity_same_input"]["max_abs_error"]["scores"] == 0.0
    assert "skipped" in variants["compile_fp32"]
    parts = res["breakdown"]["eager_parts_ms"]
    assert set(parts) == {"backbone", "neck", "head", "in_graph_postprocess", "whole_eager"}
    assert all(ms > 0 for ms in parts.values()) and res["breakdown"]["top_kernels"]
    assert res["breakdown"]["instances"] > 0
    out = capsys.readouterr().out
    assert "end to end" in out and "breakdown" in out  # the summary table is printed last
