"""OpenVINO IR (``.xml`` + ``.bin``) of an exported graph, its ModelInfo in the IR's ``rt_info``
(section ``csrinfer``, the same keys as the ONNX ``metadata_props``), so the OpenVINO backend
(csrinfer/runtime/backends/openvino.py) needs no other file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from csrinfer.contract.graph import RT_INFO_KEY
from csrinfer.contract.model_info import ModelInfo


def write_ir(onnx_path, xml_path, info: ModelInfo) -> Path:
    """Convert an exported ``.onnx`` to OpenVINO IR (``.xml`` + ``.bin``, weights kept FP32) with
    ``info`` in its ``rt_info``; each file replaced atomically."""
    import openvino as ov

    return save_ir(ov.convert_model(str(onnx_path)), xml_path, info)


def save_ir(model, xml_path, info: ModelInfo) -> Path:
    """Save an ``openvino.Model`` as IR with ``info`` in its rt_info; each file replaced atomically."""
    import openvino as ov

    from csrinfer.atomic import temp_beside

    for key, value in info.to_metadata().items():
        model.set_rt_info(value, [RT_INFO_KEY, key])
    xml_path = Path(xml_path)
    # OpenVINO names the .bin after the .xml it writes: both go to a temp folder beside the target,
    # then each is moved into place, the .bin first, so a new .xml never points at an old .bin.
    tmp = temp_beside(xml_path, folder=True)
    try:
        ov.save_model(model, str(tmp / xml_path.name), compress_to_fp16=False)
        os.replace(tmp / xml_path.with_suffix(".bin").name, xml_path.with_suffix(".bin"))
        os.replace(tmp / xml_path.name, xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml_path
