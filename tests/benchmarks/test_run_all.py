"""benchmarks/run_all.py --dry-run: the whole script on the CPU with the small config at tiny sizes.

The real runs (benchmarks/results/<machine>.json) take minutes; this keeps the script working
between them: every stage runs, every speed row is a valid bench result, the tables and the
floor are computed from the models themselves, and the Markdown and PNG are written.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    """A script under benchmarks/ as a module (registered: its dataclasses need that)."""
    if f"benchmarks_{name}" in sys.modules:
        return sys.modules[f"benchmarks_{name}"]
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# the variants a dry run on this CPU times (INT8 calibration is left out of it)
RAN = ("pytorch_eager_fp32", "onnxruntime_cpu") + (
    ("openvino_f32", "openvino_default") if importlib.util.find_spec("openvino") is not None else ())


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run_all")
    # a budget no loaded machine exhausts: the budget's own behaviour is test_budget_skips_and_says_so
    rc = load("run_all").main(["--dry-run", "--out", str(out), "--machine", "dry", "--budget-s", "3600"])
    return rc, json.loads((out / "dry.json").read_text()), out


def test_every_cell_and_stage_ran(dry_run):
    rc, report, out = dry_run
    assert rc == 0 and report["errors"] == {}
    cells = {(r["variant"], r["input_name"], r["batch"]) for r in report["speed"]}
    assert cells == {(v, size, b) for v in RAN for size in ("128x96", "64x64") for b in (1, 2)}
    skipped = {s["what"]: s["reason"] for s in report["skipped"]}
    assert "dry run" in skipped["onnxruntime_int8_cpu"] and "dry run" in skipped["openvino_int8"]
    assert "CUDA" in skipped["pytorch_fast_fp16"] and "TensorRT" in skipped["tensorrt_fp16"]
    assert (out / "dry.md").read_text().startswith("# csrinfer benchmarks")
    assert (out / "dry.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speed_rows_are_bench_results(dry_run):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((BENCHMARKS / "bench.schema.json").read_text())
    _, report, _ = dry_run
    for row in report["speed"]:
        assert list(jsonschema.Draft202012Validator(schema).iter_errors(row)) == []
        assert row["input_shape"] == [row["batch"], 3, *{"128x96": [96, 128], "64x64": [64, 64]}[row["input_name"]]]
        assert row["iters"] == 2  # two interleaved rounds of one iteration


def _small_model(config="csr_d2s_r18_small", **model):
    """The dry run's model, built here from a small config with the given switches."""
    from csrinfer.config import load_config
    from csrinfer.model import build_model

    cfg = load_config(BENCHMARKS.parent / "models" / f"{config}.yaml")
    for key, value in model.items():
        setattr(cfg.model, key, value)
    return build_model(cfg)


def test_tables_against_the_models(dry_run):
    _, report, _ = dry_run
    # The paper's rows, written out here: (config, small config of the dry run, CSR, D2S, CSR
    # width). The baseline twice: mmdetection's SOLOv2 (the tiny SOLOv2 of the mmdet fixture in a
    # dry run) and design.md's FPN fusion; the others are the small config with the row's switches.
    rows_ii = [("solov2_r50_fpn_coco", "solov2_tiny_test", False, False, None),
               ("fpn_r50_coco", "csr_d2s_r18_small", False, False, 256),
               ("csr_r50_coco", "csr_d2s_r18_small", True, False, 256),
               ("d2s_r50_coco", "csr_d2s_r18_small", False, True, 256),
               ("csr_d2s_r50_coco", "csr_d2s_r18_small", True, True, 256)]
    rows_iii = [(f"csr{w}_d2s_r50_coco" if w != 256 else "csr_d2s_r50_coco", "csr_d2s_r18_small", True, True, w)
                for w in (128, 256, 512, 1024)]
    for key, want in (("table_ii", rows_ii), ("table_iii", rows_iii)):
        table = report[key]
        assert table["input"] == "128x96" and [r["config"] for r in table["rows"]] == [w[0] for w in want]
        for row, (_, small, csr, d2s, width) in zip(table["rows"], want):
            switches = {} if width is None else dict(csr=csr, d2s=d2s, csr_channels=width)
            model = _small_model(small, **switches)
            assert row["params_M"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
            assert row["gflops"] * 1e9 == _conv_flops(model, 96, 128)
            assert row["fps"] > 0 and row["iters"] == 2
        base = next(r for r in table["rows"] if r["config"] == table["ratio_to"])
        assert base["fps_ratio"] == pytest.approx(1.0)
    assert report["table_ii"]["ratio_to"] == "solov2_r50_fpn_coco"  # the true SOLOv2 baseline (issue 22)
    assert [r["arch"] for r in report["table_ii"]["rows"]] == ["solov2"] + ["csr_d2s"] * 4
    widths = [r["params_M"] for r in report["table_iii"]["rows"]]
    assert widths == sorted(widths)  # a wider CSR has more parameters
    assert [r["paper_fps"] for r in report["table_iii"]["rows"]] == [20.4, 19.5, 17.6, 16.1]


def _conv_flops(model, height, width):
    """2 x multiply-adds of every convolution the network runs on one image (hooks, by hand)."""
    import torch

    from csrinfer.model.d2s import DepthToSpace

    total = []

    def hook(conv, _inputs, out):
        k = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
        total.append(2 * k * out.numel())  # out: [1, Cout, H', W']

    def d2s_hook(d2s, _inputs, out):  # its depthwise conv runs inside the fused op, not as a module
        conv = d2s.depthwise
        total.append(2 * conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels * out.shape[-2] * out.shape[-1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    handles += [m.register_forward_hook(d2s_hook) for m in model.modules() if isinstance(m, DepthToSpace)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, height, width))
    for h in handles:
        h.remove()
    return sum(total)


def test_floor_and_efficiency(dry_run):
    import torch

    from csrinfer.config import load_config
    from csrinfer.model import build_model

    _, report, _ = dry_run
    floor = report["floor"]
    cfg = load_config(BENCHMARKS.parent / "models" / "csr_d2s_r18_small.yaml")
    # Independently: the network's convolutions counted by hooks on a real forward pass; the
    # post-processing's two matrix products by hand: P = nms_pre = 200 candidates (of 1040
    # cells x 4 classes), E = 64, 12 x 16 mask pixels: the dynamic kernels (P x E by E x HW)
    # and Matrix NMS's mask overlaps (P x HW by HW x P).
    m = cfg.model
    assert (cfg.inference.nms_pre, m.kernel_dim, sum(s * s for s in m.num_grids) * m.num_classes) == (200, 64, 4160)
    post = 2 * 200 * 64 * 192 + 2 * 200 * 200 * 192
    assert floor["flops_per_image"] == {"network": _conv_flops(build_model(cfg), 96, 128), "postprocess": post}
    for row in floor["rows"]:
        assert row["floor_ms"] == max(row["compute_floor_ms"], row["memory_floor_ms"]) > 0
        b = row["bytes"]
        assert b["total"] == b["weights"] + b["input"] + b["outputs"] + b["activations"]
        assert row["compute_floor_ms"] == pytest.approx(
            row["flops"] / floor["peaks"]["matmul_fp32_flops"] * 1e3)
    assert {(e["variant"], e["batch"]) for e in floor["efficiency"]} == {
        (v, b) for v in RAN for b in (1, 2)}
    for e in floor["efficiency"]:
        row = next(r for r in report["speed"] if r["variant"] == e["variant"] and r["batch"] == e["batch"]
                   and r["input_name"] == floor["input"])
        assert e["efficiency"] == pytest.approx(e["floor_ms"] / row["latency_ms"]["network"]["p50"])
    del torch


def test_budget_skips_and_says_so(tmp_path):
    run_all = load("run_all")
    rc = run_all.main(["--dry-run", "--out", str(tmp_path), "--machine", "tiny", "--budget-s", "0.001",
                       "--skip", "onnxruntime_cpu", "openvino_f32", "openvino_default", "tables", "floor"])
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert rc == 0 and report["errors"] == {}
    # nothing left: every cell is skipped, each with its reason
    assert report["speed"] == []
    assert [s["what"] for s in report["skipped"] if "time budget" in s["reason"]] == [
        "pytorch_eager_fp32 128x96 batch 1", "pytorch_eager_fp32 64x64 batch 1",
        "pytorch_eager_fp32 128x96 batch 2", "pytorch_eager_fp32 64x64 batch 2"]
    assert any(s["what"] == "onnxruntime_cpu" and "--skip" in s["reason"] for s in report["skipped"])


def test_a_dry_run_never_writes_over_the_published_results(capsys):
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    assert load("run_all").main(["--dry-run"]) == 2
    assert "a dry run needs --out" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before
