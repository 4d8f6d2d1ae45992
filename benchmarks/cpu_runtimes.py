"""CPU runtimes and precisions side by side: mask AP and latency of one trained model (issue 21).

One checkpoint (the synthetic-shapes model of ``benchmarks/train_synthetic.py``) is exported at a
static size to ``model.onnx`` and, calibrated on its dataset's train split, to the QDQ INT8
``model.int8.onnx`` (``csrinfer export --int8``). Five variants then run the same val images:

- ``ort_fp32``: ONNX Runtime, model.onnx (today's CPU path)
- ``ort_int8``: ONNX Runtime, model.int8.onnx
- ``ov_f32``: OpenVINO, model.onnx, precision forced to f32
- ``ov_default``: OpenVINO, model.onnx, OpenVINO's default precision for this CPU (bf16 where
  the CPU has AVX512_BF16/AMX, else f32: ``precision_ran`` says which)
- ``ov_int8``: OpenVINO, model.int8.onnx (OpenVINO runs the Q/DQ pairs as INT8)
- ``ov_nncf_int8``: OpenVINO, model.nncf.xml quantized by NNCF on the same calibration images
  (only where ``nncf`` is importable; it is not a csrinfer dependency)

For each: mask AP, AP50, APs... on the val split (pycocotools, csrinfer.apps.bench.evaluate) and the
latency of the backend's ``infer`` (network + in-graph post-processing, batch 1) over
interleaved rounds (every variant once per round, the order reversed every other round, so
load from other processes hits all alike); medians and ratios to ``ort_fp32``. The JSON records
the CPU model and flags (lscpu), which of bf16/AMX/VNNI it has, the date, the command, the
thread count and the load average before and after.

    PYTHONPATH=$PWD python benchmarks/cpu_runtimes.py --ckpt RUN/final.pth --data RUN/shapes \\
        [--threads 2] [--rounds 20] [--max-images N] [--out benchmarks/results/cpu_runtimes.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (shared cores)

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cpu_runtimes.json"
# x86 flags that decide what OpenVINO's CPU plugin can use
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")

VARIANTS = {  # name -> (file, Segmenter options)
    "ort_fp32": ("model.onnx", {}),
    "ort_int8": ("model.int8.onnx", {}),
    "ov_f32": ("model.onnx", {"runtime": "openvino", "precision": "f32"}),
    "ov_default": ("model.onnx", {"runtime": "openvino"}),
    "ov_int8": ("model.int8.onnx", {"runtime": "openvino"}),
    "ov_nncf_int8": ("model.nncf.xml", {}),
}


def lscpu() -> dict:
    """CPU model, flags and which of the features above it has."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name"), "vendor": fields.get("Vendor ID"), "cpus": fields.get("CPU(s)"),
            "hypervisor": fields.get("Hypervisor vendor"),
            "features": {f: f in flags for f in CPU_FEATURES}, "flags": " ".join(flags)}


def export(ckpt: Path, data: Path, size, work: Path, nncf: bool) -> Path:
    from csrinfer.export.pipeline import ExportOptions, export_model

    if (work / "model.onnx").is_file() and (work / "model.int8.onnx").is_file():
        print(f"reusing model.onnx and model.int8.onnx in {work}")
    else:
        t0 = time.perf_counter()
        export_model(ckpt, ExportOptions(out_dir=work, input_size=size, engine=False, int8_calib=data))
        print(f"exported model.onnx and model.int8.onnx in {time.perf_counter() - t0:.0f} s")
    if nncf and not (work / "model.nncf.xml").is_file():
        from csrinfer.export.int8 import quantize_openvino

        t0 = time.perf_counter()
        quantize_openvino(work / "model.onnx", work / "model.nncf.xml", data)
        print(f"quantized model.nncf.xml with NNCF in {time.perf_counter() - t0:.0f} s")
    return work


def random_paper_checkpoint(work: Path) -> Path:
    """The paper model (csr_d2s_r50_coco) with random weights that score many cells, so the
    in-graph post-processing has its full load (as benchmarks/run_all.py times it)."""
    import torch

    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.config import load_config
    from csrinfer.model import build_model

    sys.path.insert(0, str(REPO))
    from tests.conftest import make_confident

    path = work / "paper_random.pth"
    if not path.is_file():
        cfg = load_config(REPO / "models" / "csr_d2s_r50_coco.yaml")
        torch.manual_seed(0)
        save_checkpoint(path, make_confident(build_model(cfg), nms_pre=cfg.inference.nms_pre).eval(), cfg)
    return path


def _version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True,
                   help="trained checkpoint (.pth), its exported model.onnx (e.g. exported by another csrinfer "
                        "version), or 'paper-random': the paper model, random weights made to fire (with --no-ap)")
    p.add_argument("--data", required=True, help="its COCO-format dataset folder (train: calibration, val: AP)")
    p.add_argument("--size", default=None, help="static export size HxW (default: the config's export size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20, help="interleaved latency rounds")
    p.add_argument("--max-images", type=int, default=None, help="AP on the first N val images only")
    p.add_argument("--no-ap", action="store_true", help="latency only (e.g. the paper model with random weights)")
    p.add_argument("--work", default="/tmp/csrinfer_cpu_runtimes", help="folder for the exported models")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--note", default=None, help="a sentence stored in the JSON (e.g. which model this is)")
    args = p.parse_args(argv)

    import numpy as np

    from csrinfer import Segmenter, atomic
    from csrinfer.apps.bench import evaluate, loadavg, precision_of, versions
    from csrinfer.model.checkpoint import load_checkpoint
    from csrinfer.cli.common import parse_hw
    from csrinfer.apps.evaluation import METRICS

    load_start = loadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if args.ckpt == "paper-random":
        args.ckpt = str(random_paper_checkpoint(Path(args.work)))
    import importlib.util

    if "ov_nncf_int8" in args.only and importlib.util.find_spec("nncf") is None:
        print("nncf is not installed: no ov_nncf_int8 row")
        args.only.remove("ov_nncf_int8")
    work = Path(args.work)
    if args.ckpt.endswith(".onnx"):  # exported already: copied, and only the INT8 forms are made here
        from csrinfer.runtime.backends import read_model_info

        work.mkdir(parents=True, exist_ok=True)
        if not (work / "model.onnx").exists():
            shutil.copyfile(args.ckpt, work / "model.onnx")
        info = read_model_info(work / "model.onnx")
        config_name, size = info.name, info.input_size
        if not (work / "model.int8.onnx").exists():
            from csrinfer.export.int8 import quantize_int8

            quantize_int8(work / "model.onnx", work / "model.int8.onnx", args.data)
    else:
        _, cfg, _ = load_checkpoint(args.ckpt)
        config_name = cfg.name
        size = parse_hw(args.size) if args.size else tuple(cfg.input.export_size)
    work = export(Path(args.ckpt), Path(args.data), size, work, "ov_nncf_int8" in args.only)

    segmenters, rows = {}, {}
    for name in args.only:
        file, options = VARIANTS[name]
        seg = Segmenter(work / file, "cpu", threads=args.threads, **options)
        segmenters[name] = seg
        rows[name] = {"file": file, "backend": seg.backend.name, "options": options,
                      "precision": precision_of(seg),  # as csrinfer bench reports it
                      "openvino_precision_hint": getattr(seg.backend, "precision", None)}
        if args.no_ap:
            rows[name]["accuracy"] = None
            continue
        t0 = time.perf_counter()
        acc = evaluate(seg, args.data, "val", args.max_images, progress=False)
        rows[name]["accuracy"] = {k: None if acc[k] is None else round(acc[k], 2) for k in METRICS}
        rows[name]["accuracy"]["images"] = acc["images"]
        print(f"{name:13s} AP {acc['AP']:.2f} APs {acc['APs'] if acc['APs'] is None else round(acc['APs'], 2)} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    from csrinfer.apps.samples import synthetic_image

    image = synthetic_image(11, *size)
    batch, _ = segmenters[args.only[0]].preprocess([image])
    times = {name: [] for name in segmenters}
    for seg in segmenters.values():  # warm-up: first runs allocate and pick kernels
        for _ in range(3):
            seg.backend.infer({"images": batch})
    for r in range(args.rounds):
        order = list(segmenters) if r % 2 == 0 else list(reversed(segmenters))
        for name in order:
            t0 = time.perf_counter()
            segmenters[name].backend.infer({"images": batch})
            times[name].append((time.perf_counter() - t0) * 1e3)
    base = statistics.median(times[args.only[0]])
    for name, ms in times.items():
        med = statistics.median(ms)
        rows[name]["latency_ms"] = {"median": round(med, 2), "min": round(min(ms), 2), "max": round(max(ms), 2),
                                    "rounds": len(ms)}
        rows[name]["speedup_vs_" + args.only[0]] = round(base / med, 2)
        ap = None
        if not args.no_ap:
            ap = rows[name]["accuracy"]["AP"]
            rows[name]["AP_minus_" + args.only[0]] = round(ap - rows[args.only[0]]["accuracy"]["AP"], 2)
        print(f"{name:13s} {med:8.1f} ms  x{base / med:.2f}  AP {ap}  ({rows[name]['precision']})")

    result = {
        "what": "mask AP (val) and backend latency (network + in-graph post-processing, batch 1) of one "
                "trained model on CPU runtimes and precisions, measured in one run",
        "note": args.note,
        "model": {"checkpoint": str(args.ckpt), "config": config_name, "input": list(size),
                  "files_mb": {f: round((work / f).stat().st_size / 1e6, 1) for f in
                               ("model.onnx", "model.int8.onnx", "model.nncf.bin") if (work / f).is_file()}},
        "data": {"folder": str(args.data), "split": "val", "calibration_split": "train"},
        "threads": args.threads,
        "variants": rows,
        "cpu": lscpu(),
        "versions": {**versions(), "numpy": np.__version__, "nncf": _version("nncf")},
        "host": {"cores": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": loadavg()},
        "date": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(f"wrote {atomic.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
