"""Segmenter on a CUDA GPU (PyTorch backend): parity with the CPU and end-to-end timing.

Checks what CI cannot: ``Segmenter(model, device="cuda")`` gives the CPU's instances (the
small confident model of the tests, same images), with post-processing running on the GPU;
then times the paper model (random weights made to fire, 640x640, FP32 eager) split into
pre-processing, backend and post-processing. Writes JSON (default
``benchmarks/results/runtime_cuda_check.json``).

    PYTHONPATH=$PWD python benchmarks/runtime_cuda_check.py [--out FILE] [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parity(report_images: int = 6) -> dict:
    from csrinfer import Segmenter
    from csrinfer.config import load_config
    from csrinfer.model import build_model
    from csrinfer.apps.compare import compare
    from csrinfer.apps.samples import synthetic_image
    from tests.conftest import CELLS, make_confident

    cfg = copy.deepcopy(load_config(REPO / "models" / "csr_d2s_r18_small.yaml"))
    cfg.inference.nms_pre = CELLS
    torch.manual_seed(0)
    model = make_confident(build_model(cfg), alive_classes=1, nms_pre=CELLS).eval()
    cpu = Segmenter(copy.deepcopy(model), device="cpu", cfg=cfg)
    gpu = Segmenter(model, device="cuda", cfg=cfg)
    images = [synthetic_image(i, 120 + 40 * i, 300 - 20 * i) for i in range(report_images)]
    report = compare(cpu, gpu, images)
    return {**report.to_dict(), "passed": report.passed(), "gpu_device": gpu.device}


def timing(repeats: int, size: int = 640) -> dict:
    from benchmarks.runtime_cpu import make_firing, summarize, time_once
    from csrinfer import Segmenter
    from csrinfer.config import load_config
    from csrinfer.model import build_model
    from csrinfer.apps.samples import sample_images

    cfg = load_config(REPO / "models" / "csr_d2s_r50_coco.yaml")
    torch.manual_seed(0)
    seg = Segmenter(make_firing(build_model(cfg, pretrained=False)).eval(), device="cuda", cfg=cfg,
                    input_size=(size, size))
    images = [image for _, image in sample_images(4)]
    for _ in range(3):
        time_once(seg, images[0])
    runs = []
    for i in range(repeats):
        torch.cuda.synchronize()
        runs.append(time_once(seg, images[i % len(images)]))  # .cpu() in post-processing synchronises
    return summarize(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "runtime_cuda_check.json"))
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check", file=sys.stderr)
        return 3
    result = {
        "benchmark": "runtime_cuda_check",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "PYTHONPATH=$PWD " + " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"gpu": torch.cuda.get_device_name(0), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda},
        "parity_cpu_vs_cuda_small_model": parity(),
        "paper_model_640_fp32_eager_cuda": timing(args.repeats),
    }
    out = Path(args.out)
    from csrinfer import atomic

    atomic.write_json(out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
