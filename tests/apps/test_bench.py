"""``csrinfer bench`` (csrinfer/apps/bench.py): every field, sane values, the documented JSON schema.

Nothing here is a speed target (those live in benchmarks/): the checks are that the numbers
hang together — percentiles ordered, FPS = batch / mean latency, steps adding up to the
total — and that mask AP is the evaluation module's own number for the same model.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from pathlib import Path

import pytest

from csrinfer.apps.bench import BenchRun, StepClock, benchmark, latency_stats
from csrinfer.cli import main

SCHEMA = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.schema.json"


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from csrinfer.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("bench") / "shapes", n_train=1, n_val=3, seed=3)


def check_consistent(result: dict, batch: int) -> None:
    """What must hold of any bench result, whatever the machine."""
    lat = result["latency_ms"]
    steps = ("preprocess", "network", "postprocess", "result")
    for key in ("total", *steps):
        s = lat[key]
        assert 0 <= s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], (key, s)
        assert s["min"] <= s["mean"] <= s["max"]
    # each iteration's total is the sum of its steps, so the means add up exactly
    assert math.isclose(lat["total"]["mean"], sum(lat[k]["mean"] for k in steps), rel_tol=1e-9)
    assert math.isclose(result["fps"], batch * 1000.0 / lat["total"]["mean"], rel_tol=1e-9)
    assert result["batch"] == batch and result["input_shape"][0] == batch and result["input_shape"][1] == 3
    assert result["paper"]["fps"] == 19.5 and result["paper"]["device"] == "Tesla V100"


def test_latency_stats_match_an_independent_percentile():
    values = [random.Random(5).lognormvariate(3, 0.5) for _ in range(200)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # same linear interpolation as numpy
    s = latency_stats(values)
    assert s["p50"] == pytest.approx(cuts[49]) and s["p90"] == pytest.approx(cuts[89])
    assert s["p99"] == pytest.approx(cuts[98]) and s["mean"] == pytest.approx(statistics.fmean(values))
    assert s["min"] == min(values) and s["max"] == max(values)


def test_step_clock_times_each_step_on_the_cpu():
    clock = StepClock("cpu")
    clock.start()
    time.sleep(0.02)
    clock.mark("a")
    time.sleep(0.04)
    clock.mark("b")
    times = clock.read()
    assert list(times) == ["a", "b"] and times["a"] >= 20.0 and times["b"] >= 40.0
    assert clock.kind == "perf_counter"


@pytest.mark.parametrize("which", ["pth", "onnx"])
def test_bench_returns_every_field(which, small_ckpt, small_onnx, validator):
    import onnxruntime
    import torch

    model = {"pth": small_ckpt, "onnx": small_onnx}[which]
    result = benchmark(model, warmup=1, iters=4, progress=False, argv=["csrinfer", "bench", "--model", str(model)])
    assert list(validator.iter_errors(result)) == []
    check_consistent(result, 1)
    assert result["backend"] == {"pth": "PyTorch", "onnx": "ONNX Runtime"}[which]
    assert result["device"] == "cpu" and result["precision"] == "fp32" and result["timer"] == "perf_counter"
    assert result["iters"] == 4 and result["warmup"] == 1 and result["accuracy"] is None
    assert result["versions"]["torch"] == torch.__version__
    if which == "onnx":
        assert result["versions"]["onnxruntime"] == onnxruntime.__version__
        assert result["input_shape"][2:] == [160, 224]  # the file's static size
    assert result["instances_per_image"] > 0  # the confident model finds instances: post-processing did work
    assert result["command"] == f"csrinfer bench --model {model}"


def test_batch_and_input_size(small_ckpt, validator):
    result = benchmark(small_ckpt, batch=3, input_size=(96, 128), warmup=0, iters=3, progress=False)
    assert list(validator.iter_errors(result)) == []
    check_consistent(result, 3)
    assert result["input_shape"] == [3, 3, 96, 128]


def test_bench_run_keeps_every_sample(small_ckpt):
    from csrinfer.runtime.segmenter import Segmenter
    from tests.conftest import photo_like

    run = BenchRun(Segmenter(small_ckpt), [photo_like(1, 90, 120)], batch=2)
    run.run(3)
    assert len(run.samples) == 3
    for sample in run.samples:
        assert sample["total"] == pytest.approx(sample["preprocess"] + sample["network"] + sample["postprocess"]
                                                + sample["result"])
    assert run.summary()["latency_ms"]["network"]["max"] == max(s["network"] for s in run.samples)


@pytest.mark.parametrize("read", ["none", "rle", "masks"])
def test_the_result_step_reads_what_it_is_told_and_nothing_before_it(small_ckpt, monkeypatch, read):
    from csrinfer.runtime import masks as lazy
    from csrinfer.runtime.instances import Instances
    from csrinfer.runtime.segmenter import Segmenter
    from tests.conftest import photo_like

    reads = []  # (form, step it happened in)
    run = BenchRun(Segmenter(small_ckpt), [photo_like(1, 90, 120)], batch=2, read=read)
    original_mark, original_rle, original_full = run.clock.mark, Instances.rle, lazy.LazyMasks.full
    step = ["preprocess"]

    def mark(name):
        original_mark(name)
        step[0] = {"preprocess": "network", "network": "postprocess", "postprocess": "result"}.get(name, "after")

    monkeypatch.setattr(run.clock, "mark", mark)
    monkeypatch.setattr(Instances, "rle", lambda self: reads.append(("rle", step[0])) or original_rle(self))
    monkeypatch.setattr(lazy.LazyMasks, "full", lambda self: reads.append(("masks", step[0])) or original_full(self))
    run.run(2)
    assert run.instances > 0
    assert reads == ([] if read == "none" else [(read, "result")] * 4)  # 2 images x 2 iterations
    assert run.summary()["read"] == read


def test_an_unknown_read_is_one_sentence(small_ckpt):
    from csrinfer.errors import ConfigError
    from csrinfer.runtime.segmenter import Segmenter

    with pytest.raises(ConfigError, match="read must be one of none, rle, masks, got 'polygons'"):
        BenchRun(Segmenter(small_ckpt), [], read="polygons")


def test_mask_ap_in_the_same_run_is_the_evaluation_modules(small_ckpt, shapes, validator, tmp_path):
    from csrinfer.apps.evaluation import METRICS, evaluate_checkpoint

    result = benchmark(small_ckpt, warmup=0, iters=2, data=shapes, coco_results=tmp_path / "r.json", progress=False)
    assert list(validator.iter_errors(result)) == []
    acc = result["accuracy"]
    reference = evaluate_checkpoint(small_ckpt, shapes, "val", out=tmp_path / "ref.json", progress=False)
    assert acc["images"] == reference["images"] == 3
    for k in METRICS:
        assert acc[k] == (None if reference[k] is None else pytest.approx(100 * reference[k]))
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads((tmp_path / "ref.json").read_text())
    assert result["input_shape"][0] == 1  # timed on the dataset's own first image


def test_schema_rejects_a_broken_result(small_ckpt, validator):
    result = benchmark(small_ckpt, warmup=0, iters=1, progress=False)
    broken = json.loads(json.dumps(result))
    del broken["latency_ms"]["network"]["p90"]
    broken["fps"] = -1.0
    assert len(list(validator.iter_errors(broken))) == 2


def test_cli_prints_a_table_and_writes_json_into_the_out_folder(small_onnx, tmp_path, capsys, validator):
    assert main(["bench", "--model", str(small_onnx), "--iters", "2", "--warmup", "0", "--quiet",
                 "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "throughput" in printed and "p99" in printed and "19.5 FPS" in printed
    result = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert list(validator.iter_errors(result)) == [] and result["iters"] == 2


def test_cli_json_prints_the_result_as_json(small_onnx, capsys, validator):
    assert main(["bench", "--model", str(small_onnx), "--iters", "2", "--warmup", "0", "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(validator.iter_errors(result)) == [] and result["iters"] == 2


def test_max_pixels_refuses_larger_dataset_images_in_one_line(small_onnx, shapes, capsys):
    from csrinfer.apps.bench import bench_images

    assert len(bench_images(2, shapes)) == 2  # the synthetic images are far below the default limit
    assert main(["bench", "--model", str(small_onnx), "--data", str(shapes), "--max-pixels", "100", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "100" in err[0] and "pixels" in err[0], err


@pytest.mark.parametrize("argv,message", [
    (["--model", "{tmp}/missing.onnx"], "does not exist"),
    (["--model", "{onnx}", "--fast"], "--fast is a switch of PyTorch models (.pth/.pt)"),
    (["--model", "{onnx}", "--fp16", "--compile"], "--fp16 and --compile are switches of PyTorch models"),
    (["--model", "{onnx}", "--batch", "2"], "static batch of 1"),
])
def test_mistakes_are_one_line(argv, message, small_onnx, tmp_path, capsys):
    argv = ["bench"] + [a.format(tmp=tmp_path, onnx=small_onnx) for a in argv] + ["--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csrinfer bench: error:") and message in err[0], err


def test_a_scoring_failure_without_json_keeps_the_predictions_it_points_to(small_ckpt, shapes, monkeypatch):
    import re

    import pycocotools.cocoeval

    from csrinfer.errors import DatasetError

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no scoring today")

    monkeypatch.setattr(pycocotools.cocoeval, "COCOeval", Broken)
    with pytest.raises(DatasetError, match="they are kept in ") as info:
        benchmark(small_ckpt, warmup=0, iters=1, data=shapes, progress=False)
    kept = Path(re.search(r"kept in (\S+)$", str(info.value)).group(1))
    try:
        assert json.loads(kept.read_text())  # the folder it names was not cleaned up under it
    finally:
        import shutil

        shutil.rmtree(kept.parent)


def test_cli_reports_the_openvino_runtime_and_precision(small_onnx, tmp_path, capsys, validator):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'csrinfer[openvino]')")
    assert main(["bench", "--model", str(small_onnx), "--runtime", "openvino", "--precision", "f32",
                 "--iters", "2", "--warmup", "0", "--quiet", "--out", str(tmp_path)]) == 0
    assert "OpenVINO on cpu" in capsys.readouterr().out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert list(validator.iter_errors(result)) == []
    assert result["backend"] == "OpenVINO" and result["precision"] == "fp32" and result["versions"]["openvino"]
