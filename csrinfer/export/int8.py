"""INT8 ONNX: the exported FP32 graph, calibrated on a dataset's images, as a QDQ graph.

ONNX Runtime's static quantizer (``onnxruntime.quantization.quantize_static``) writes it:
QuantizeLinear/DequantizeLinear pairs before every convolution and matmul of the network,
weights per output channel, activations per tensor from MinMax calibration. The same file runs
INT8 on ONNX Runtime's CPU kernels and on OpenVINO (which reads the Q/DQ pairs as its own
FakeQuantize and picks INT8 kernels); TensorRT builds explicit-quantization engines from QDQ
graphs too. It was chosen over NVIDIA ModelOpt's ONNX quantizer because it is already a
dependency (onnxruntime) and runs on any CPU, where ModelOpt is a large NVIDIA-only package
whose Q/DQ placement is tuned for TensorRT's fusions, not for CPU runtimes.

What is quantized is decided on the graph, not by names: the *network* is every layer with
learned weights (Conv, MatMul, Gemm whose weight is a constant) and everything upstream of
them; the rest is the in-graph post-processing (mask logits from dynamic kernels, Matrix NMS,
top-k), which stays FP32 because its thresholds and comparisons are where rounding changes
results, and its matmuls multiply two activations. The layers whose outputs it reads (the head's
last convolutions) stay FP32 too, so that no INT8-rounded tensor reaches it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from csrinfer.errors import DatasetError, ExportError, first_line

log = logging.getLogger(__name__)

MIN_CALIB_IMAGES = 16  # fewer gives activation ranges of a handful of pictures
CALIB_IMAGES = 64  # images used by default (more adds calibration time, rarely accuracy)
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def network_nodes(graph) -> set[str]:
    """Names of the nodes that make up the network: layers with constant weights and every node
    upstream of them. The rest of the graph is post-processing."""
    constants = {t.name for t in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    producer = {out: node for node in graph.node for out in node.output}
    layers = [node for node in graph.node
              if node.op_type in QUANTIZED_OPS and len(node.input) > 1 and node.input[1] in constants]
    seen: set[str] = set()
    stack = list(layers)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack += [producer[name] for name in node.input if name in producer]
    return seen


def post_processing_nodes(graph) -> list[str]:
    """Names of the nodes after the network, in graph order."""
    network = network_nodes(graph)
    return [node.name for node in graph.node if node.name not in network]


def head_output_layers(graph, post: set[str]) -> list[str]:
    """The weighted layers whose outputs the post-processing reads (category and kernel
    predictions, the mask branch's last convolution): left FP32 so that their outputs are not
    rounded to INT8 on their way into post-processing (TensorRT users keep the last layers in
    higher precision for the same reason)."""
    read_by_post = {name for node in graph.node if node.name in post for name in node.input}
    return [node.name for node in graph.node
            if node.name not in post and node.op_type in QUANTIZED_OPS and set(node.output) & read_by_post]


def calibration_files(data, split: str = "train") -> list[Path]:
    """The image files of a COCO-format folder's split, refused when fewer than calibration needs."""
    from csrinfer.data.coco import find_split, load_coco

    ann_file, image_dir = find_split(data, split)
    coco = load_coco(ann_file)
    files = sorted(image_dir / coco.imgs[i]["file_name"] for i in coco.getImgIds())
    files = [f for f in files if f.is_file()]
    if len(files) < MIN_CALIB_IMAGES:
        raise DatasetError(f"the '{split}' split of {data} has {len(files)} images; INT8 calibration needs "
                           f"at least {MIN_CALIB_IMAGES} ({CALIB_IMAGES} by default)")
    return files


def calibration_images(data, split: str = "train", count: int = CALIB_IMAGES) -> list[np.ndarray]:
    """``count`` uint8 BGR images of a COCO-format folder's split, spread evenly over it."""
    from csrinfer.image_io import read_image

    files = calibration_files(data, split)
    picks = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    return [read_image(files[i]) for i in sorted(set(picks))]


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol: ``get_next()`` -> feeds or None."""

    def __init__(self, images, info):
        from csrinfer.letterbox import letterbox, stack_batch

        step = info.batch or 1
        fit = info.input_size
        boxed = [letterbox(im, info.short_side, info.max_size, info.size_divisor, fit, info.pad_value)[0] for im in images]
        boxed += [boxed[-1]] * (-len(boxed) % step)  # a static batch gets full batches
        self._feeds = iter([{"images": stack_batch(boxed[i:i + step], info.size_divisor, info.pad_value)}
                            for i in range(0, len(boxed), step)])

    def get_next(self):
        return next(self._feeds, None)


def quantize_int8(onnx_path, out_path, data, split: str = "train", count: int = CALIB_IMAGES) -> Path:
    """Write the calibrated QDQ INT8 form of the exported ``onnx_path`` to ``out_path``.

    Its metadata is the FP32 graph's with ``precision`` "int8". Returns ``out_path``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from csrinfer.atomic import atomic_write, temp_beside
    from csrinfer.export.onnx import set_metadata
    from csrinfer.export.onnx import read_model_info

    info = read_model_info(onnx_path)
    images = calibration_images(data, split, count)
    proto = onnx.load(str(onnx_path))
    for i, node in enumerate(proto.graph.node):  # the quantizer's exclusion list goes by node name
        node.name = node.name or f"node_{node.op_type}_{i}"
    post = post_processing_nodes(proto.graph)
    keep_fp32 = post + head_output_layers(proto.graph, set(post))
    out_path = Path(out_path)
    named, raw = temp_beside(out_path), temp_beside(out_path)
    try:
        onnx.save(proto, str(named))
        log.info("calibrating INT8 on %d images of %s (%s)", len(images), data, split)
        with _quiet_root_logger():  # the quantizer's advice to pre-process goes to the root logger
            quantize_static(str(named), str(raw), _Batches(images, info), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=keep_fp32, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        quantized = onnx.load(str(raw))
    except (RuntimeError, ValueError, TypeError) as e:  # onnxruntime's Fail/InvalidGraph, onnx errors
        raise ExportError(f"INT8 quantization of {onnx_path} failed ({first_line(e)})") from None
    finally:
        for tmp in (named, raw):
            Path(tmp).unlink(missing_ok=True)
    metadata = {**{p.key: p.value for p in proto.metadata_props}, "precision": "int8"}
    del quantized.metadata_props[:]
    set_metadata(quantized, metadata)
    atomic_write(out_path, lambda tmp: onnx.save(quantized, os.fspath(tmp)))
    return out_path


class _quiet_root_logger:
    def __enter__(self):
        self.level = logging.root.level
        logging.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.root.setLevel(self.level)


def quantize_openvino(onnx_path, xml_path, data, split: str = "train", count: int = CALIB_IMAGES) -> Path:
    """OpenVINO IR INT8 by NNCF (``nncf.quantize``, OpenVINO's own quantizer), calibrated on the
    same images as :func:`quantize_int8`, the same nodes left FP32; ``precision`` "int8" in its
    rt_info. Needs ``nncf`` (not a csrinfer dependency: docs/cpu.md)."""
    import onnx

    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        from csrinfer.errors import BackendUnavailableError

        raise BackendUnavailableError(f"OpenVINO INT8 by NNCF needs nncf and openvino ({first_line(e)})") from None
    from csrinfer.export.onnx import read_model_info
    from csrinfer.export.openvino import save_ir

    info = read_model_info(onnx_path)
    images = calibration_images(data, split, count)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    post = post_processing_nodes(graph)
    keep_fp32 = post + head_output_layers(graph, set(post))  # OpenVINO keeps the ONNX node names
    reader = _Batches(images, info)
    feeds = list(iter(lambda: reader.get_next(), None))
    nncf.set_log_level(logging.WARNING)  # not a line per node it leaves alone
    with _quiet_root_logger():
        model = nncf.quantize(ov.convert_model(str(onnx_path)), nncf.Dataset([f["images"] for f in feeds]),
                              subset_size=len(feeds), ignored_scope=nncf.IgnoredScope(names=keep_fp32, validate=False))
    return save_ir(model, xml_path, info.replace(precision="int8"))
