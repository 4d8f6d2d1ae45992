"""csrinfer's FP16 graph (csrinfer/export/fp16.py) against NVIDIA ModelOpt's AutoCast, on the paper model (issue 18).

Both make the mixed-precision ONNX a strongly typed TensorRT network is built from. This script
exports the paper config (random weights, made confident so instances exist) to FP32 ONNX,
makes the FP16 graph both ways (ours from PyTorch; AutoCast's
``modelopt.onnx.autocast.convert_to_mixed_precision`` from the FP32 ONNX, float32 I/O kept), and
compares, in ONNX Runtime on the CPU:

- parity with FP32: max |difference| of the sorted top scores, and the fraction of FP32
  instances (score > 0.1) that come back with the same label and a mask IoU >= 0.9;
- which ops stay in float32 (output 0's element type after ONNX shape inference, by op type);
- file sizes.

ModelOpt is not a csrinfer dependency: run with it on PYTHONPATH, e.g. installed with
``pip install --no-deps --target DIR nvidia-modelopt`` plus the imports it asks for::

    PYTHONPATH=$PWD:DIR python benchmarks/fp16_autocast_compare.py --out benchmarks/results/fp16_autocast_compare.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

REPO = Path(__file__).resolve().parents[1]
COMPUTE_OPS = ("Conv", "MatMul", "Gemm", "InstanceNormalization", "Sigmoid", "TopK", "ReduceMean", "ReduceSum",
               "Resize", "DepthToSpace", "Relu", "Mul", "Add", "Div", "MaxPool", "GlobalAveragePool", "Exp")


def paper_model():
    from csrinfer.config import load_config
    from csrinfer.model import build_model

    cfg = load_config(REPO / "models" / "csr_d2s_r50_coco.yaml")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # as tests/conftest.py's make_confident: scores around 0.5, no TopK ties
        model.head.cate_out.bias.fill_(0.0)
        model.head.cate_out.weight.normal_(0.0, 0.3)
        model.head.kernel_out.weight.normal_(0.0, 0.05)
    return model


def run(path: Path, images: np.ndarray) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": images})))


def parity(got: dict, want: dict) -> dict:
    top_diff = float(np.abs(np.sort(got["scores"][0])[::-1] - np.sort(want["scores"][0])[::-1]).max())
    live = np.flatnonzero(want["scores"][0] > 0.1)
    matched = 0
    for i in live:
        mask = want["masks"][0, i] > 0.5
        for j in np.flatnonzero(got["labels"][0] == want["labels"][0, i]):
            other = got["masks"][0, j] > 0.5
            union = np.logical_or(mask, other).sum()
            if union and np.logical_and(mask, other).sum() / union >= 0.9:
                matched += 1
                break
    return {"max_abs_score_diff_sorted": top_diff, "fp32_instances": int(len(live)),
            "matched_label_and_mask_iou_0.9": matched / max(len(live), 1)}


def precision_by_op(path: Path) -> dict:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    names = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16"}
    counts: dict[str, Counter] = {}
    for node in model.graph.node:
        if node.op_type in COMPUTE_OPS and node.output and types.get(node.output[0]) in names:
            counts.setdefault(node.op_type, Counter())[names[types[node.output[0]]]] += 1
    casts = sum(n.op_type == "Cast" for n in model.graph.node)
    return {"by_op": {k: dict(v) for k, v in sorted(counts.items())}, "cast_nodes": casts,
            "nodes": len(model.graph.node)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 480), metavar=("H", "W"))
    args = parser.parse_args()

    from modelopt.onnx.autocast import convert_to_mixed_precision

    from csrinfer.export.fp16 import export_fp16_onnx
    from csrinfer.export.onnx import export_onnx

    model = paper_model()
    size = tuple(args.size)
    images = (torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)) * 255).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = export_onnx(model, tmp / "fp32.onnx", input_size=size)
        ours = export_fp16_onnx(model, tmp / "ours.onnx", input_size=size)
        # AutoCast's defaults: nodes whose outputs exceed 512 on (random) calibration data, or whose
        # initializers exceed FP16's range, stay FP32; keep_io_types keeps csrinfer's float32 I/O
        cast = convert_to_mixed_precision(str(fp32), low_precision_type="fp16", keep_io_types=True)
        autocast = tmp / "autocast.onnx"
        onnx.save(cast, str(autocast))
        want = run(fp32, images)
        result = {}
        for name, path in (("csrinfer_fp16", ours), ("modelopt_autocast", autocast)):
            result[name] = {"parity_with_fp32": parity(run(path, images), want), "precision": precision_by_op(path),
                            "file_mb": round(path.stat().st_size / 2**20, 1)}
        result["fp32"] = {"precision": precision_by_op(fp32), "file_mb": round(fp32.stat().st_size / 2**20, 1)}

    import modelopt

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    report = {
        "what": "FP16 ONNX for strongly typed TensorRT: csrinfer/export/fp16.py vs ModelOpt AutoCast, ONNX Runtime CPU",
        "model": "models/csr_d2s_r50_coco.yaml, random weights made confident", "input_hw": list(size),
        "modelopt_version": modelopt.__version__, "onnxruntime": ort.__version__, "torch": torch.__version__,
        "results": result,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.node(), "cpu": next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                                                  if line.startswith("Model name")), platform.processor()),
        "loadavg": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
