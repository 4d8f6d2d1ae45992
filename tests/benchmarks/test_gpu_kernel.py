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
    assert set(res["breakdown"]["read_ms"]) == {"rle", "to_coco", "masks", "crops"}  # the lazy results read
    assert all(ms > 0 for ms in res["breakdown"]["read_ms"].values())
    out = capsys.readouterr().out
    assert "end to end" in out and "breakdown" in out  # the summary table is printed last


def test_the_comparison_with_eager_counts_instances_it_cannot_match():
    # On a CPU the dry run's fast path is eager itself, so its matched fraction is 1.0 whatever
    # the matching does; here the result compared is made to differ by hand.
    import numpy as np

    from csrinfer.runtime.segmenter import Segmenter

    script = load_script()
    args = script.parse_args(["--dry-run"])
    cfg, model = script.paper_model(args)
    seg = Segmenter(model, "cpu", cfg=cfg)
    image = np.random.default_rng(0).integers(0, 256, (72, 120, 3), dtype=np.uint8)
    want = seg.predict(image)
    n = len(want)
    assert n >= 4
    same = script.compare_to_reference((seg, want), seg, want, image)["vs_eager_fp32"]
    assert (same["matched_iou50"], same["matched_fraction"]) == (n, 1.0)
    # The three lowest-scored instances missing (instances come sorted by score, and the
    # matching takes the best-scored first): n - 3 of the n are matched.
    other = script.compare_to_reference((seg, want), seg, want[list(range(n - 3))], image)["vs_eager_fp32"]
    assert other["instances"] == n - 3 and other["matched_iou50"] == n - 3
    assert other["matched_fraction"] == (n - 3) / n
