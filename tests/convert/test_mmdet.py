"""Converting mmdetection SOLOv2 checkpoints: against outputs mmdetection 3.3.0 itself computed.

The fixture (tests/fixtures/mmdet_solov2, made by tools/mmdet_solov2_fixture.py in a venv with
mmdetection) holds a tiny SOLOv2's mmdetection checkpoint, its head outputs and its final
instances on three photos, and the key/shape lists of the full R50 and light-R18 models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from csrinfer.model.checkpoint import load_checkpoint
from csrinfer.cli import main
from csrinfer.config import IMAGENET_MEAN, IMAGENET_STD, load_config
from csrinfer.convert.mmdet import class_names, convert_mmdet, converted_state_dict
from csrinfer.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from csrinfer.errors import CheckpointError, ConfigError
from csrinfer.model import build_model

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "mmdet_solov2"
TINY = ROOT / "models" / "solov2_tiny_test.yaml"
IMAGES = range(3)


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURE / "outputs.npz")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_mmdet(FIXTURE / "solov2_tiny.pth", TINY, tmp_path_factory.mktemp("conv") / "solov2_tiny.pth")


def reference_instances(reference, i):
    width = reference[f"image{i}"].shape[1]
    masks = np.unpackbits(reference[f"masks{i}"], axis=-1, count=width).astype(bool)
    return reference[f"labels{i}"], reference[f"scores{i}"], masks


def assert_same_instances(inst, reference, i):
    labels, scores, masks = reference_instances(reference, i)
    assert len(labels) > 10  # the fixture has instances to compare
    assert len(inst) == len(labels)
    np.testing.assert_array_equal(inst.labels, labels)
    np.testing.assert_allclose(inst.scores, scores, atol=1e-4, rtol=0)
    inter = (inst.masks & masks).sum(axis=(1, 2))
    union = (inst.masks | masks).sum(axis=(1, 2))
    assert (inter / np.maximum(union, 1)).min() >= 0.99


def test_fixture_lies_where_the_fixed_size_graph_is_exact(reference):
    # the graph takes the nms_pre best cells before the score cut; the reference cuts first
    nms_pre = load_config(TINY).inference.nms_pre
    for i in IMAGES:
        assert 0 < int(reference[f"num_cut{i}"]) <= nms_pre


def test_head_outputs_match_mmdetection(converted, reference):
    model, _, _ = load_checkpoint(converted)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for i in IMAGES:
        images = torch.from_numpy(reference[f"input{i}"]) * std + mean  # mmdetection's input was normalised
        with torch.no_grad():
            out = model(images)
        for level in range(5):
            torch.testing.assert_close(out.cate_preds[level], torch.from_numpy(reference[f"cls{i}_{level}"]),
                                       atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.kernel_preds[level], torch.from_numpy(reference[f"kernel{i}_{level}"]),
                                       atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out.mask_feats, torch.from_numpy(reference[f"mask_feats{i}"]), atol=1e-4, rtol=1e-4)


def test_final_instances_match_mmdetection_through_segmenter(converted, reference):
    from csrinfer.runtime import Segmenter

    segmenter = Segmenter(converted)
    for i in IMAGES:
        assert_same_instances(segmenter.predict(reference[f"image{i}"]), reference, i)


def test_exported_onnx_on_onnx_runtime_matches_mmdetection(converted, reference, tmp_path):
    from csrinfer.export.pipeline import ExportOptions, export_model
    from csrinfer.runtime import Segmenter

    result = export_model(converted, ExportOptions(out_dir=tmp_path, input_size=(128, 192), engine=False))
    assert result.info.stride == 4
    segmenter = Segmenter(result.onnx)
    for i in (1, 2):  # the images whose padded input is the static 128x192
        assert_same_instances(segmenter.predict(reference[f"image{i}"]), reference, i)


def test_exported_onnx_on_openvino_matches_mmdetection(converted, reference, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'csrinfer[openvino]')")
    from csrinfer.export.pipeline import ExportOptions, export_model
    from csrinfer.runtime import Segmenter

    result = export_model(converted, ExportOptions(out_dir=tmp_path, input_size=(128, 192), engine=False))
    segmenter = Segmenter(result.onnx, runtime="openvino", precision="f32")
    for i in (1, 2):
        assert_same_instances(segmenter.predict(reference[f"image{i}"]), reference, i)


def test_fp16_onnx_keeps_mmdetections_instances(converted, reference, tmp_path):
    """The FP16 graph TensorRT builds from: float16 network, float32 post-processing.

    FP16 rounding moves a mask by a few pixels, and with it Matrix NMS's decay of the instances it
    overlaps (a random model's masks overlap a lot: scores moved up to 0.018 here), so this asks
    what the FP16 tests of the CSR-D2S graph ask: nine in ten of the 20 best reference instances
    found again with the same label, a score within 0.02 and a mask IoU of at least 0.9.
    """
    import onnx

    from csrinfer.export.fp16 import graph_precision
    from csrinfer.export.pipeline import ExportOptions, export_model
    from csrinfer.runtime import Segmenter

    result = export_model(converted, ExportOptions(out_dir=tmp_path, input_size=(128, 192), engine=False,
                                                   fp16_onnx=True))
    fp16 = next(g for g in result.graphs if g.name == "model.fp16.onnx")
    assert graph_precision(onnx.load(str(fp16))) == "fp16"
    segmenter = Segmenter(fp16)
    for i in (1, 2):
        got = segmenter.predict(reference[f"image{i}"])
        labels, scores, masks = reference_instances(reference, i)
        confident = np.argsort(-scores, kind="stable")[:20]  # random weights: scores of 0.08-0.15 after Matrix NMS
        found = 0
        for k in confident:
            same = np.flatnonzero((got.labels == labels[k]) & (np.abs(got.scores - scores[k]) <= 0.02))
            ious = [(got.mask(j) & masks[k]).sum() / max((got.mask(j) | masks[k]).sum(), 1) for j in same]
            found += max(ious, default=0.0) >= 0.9
        assert found >= 0.9 * len(confident)


def test_class_names_and_ids_are_carried(converted):
    cfg = load_checkpoint(converted)[1]
    assert cfg.classes == ["person", "bicycle", "car", "cat", "dog"]  # from the checkpoint's dataset_meta
    assert cfg.category_ids == [1, 2, 3, 17, 18]
    coco = load_config(ROOT / "models" / "solov2_r50_fpn_coco.yaml")
    names, ids = class_names({"meta": {"dataset_meta": {"classes": COCO_CLASSES}}}, coco, "x.pth")
    assert names == list(COCO_CLASSES) and ids == list(COCO_CATEGORY_IDS)
    assert ids[-1] == 90  # COCO's ids have gaps
    names, ids = class_names({"meta": {"dataset_meta": {"classes": [f"c{i}" for i in range(80)]}}}, coco, "x.pth")
    assert ids == list(range(1, 81))
    with pytest.raises(ConfigError, match="names 3 classes"):
        class_names({"meta": {"dataset_meta": {"classes": ["a", "b", "c"]}}}, coco, "x.pth")


def meta_state(name: str) -> dict:
    shapes = json.loads((FIXTURE / name).read_text())
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


@pytest.mark.parametrize("keys, config, backbone", [
    ("r50_keys.json", "solov2_r50_fpn_coco.yaml", None),
    ("light_r18_keys.json", "solov2_light_r50_fpn_coco.yaml", "resnet18"),
])
def test_full_size_layouts_convert_key_for_key(keys, config, backbone):
    cfg = load_config(ROOT / "models" / config)
    if backbone:
        cfg.model.backbone = backbone
    model = build_model(cfg)
    state = meta_state(keys)
    mapped = converted_state_dict(state, model, keys)
    assert set(mapped) == set(model.state_dict())
    assert len(mapped) == len(state)


def test_unknown_and_missing_keys_are_refused_by_name():
    model = build_model(load_config(ROOT / "models" / "solov2_r50_fpn_coco.yaml"))
    state = meta_state("r50_keys.json")
    dcn = dict(state, **{"mask_head.kernel_convs.0.conv.conv_offset.weight": torch.empty(27, 258, 3, 3, device="meta")})
    with pytest.raises(CheckpointError, match=r"'mask_head\.kernel_convs\.0\.conv\.conv_offset\.weight'"):
        converted_state_dict(dcn, model, "dcn.pth")
    del state["mask_head.conv_cls.bias"]
    with pytest.raises(CheckpointError, match=r"lacks 'head\.cate_out\.bias'"):
        converted_state_dict(state, model, "cut.pth")


def test_cli_converts_and_refuses_in_one_line(tmp_path, capsys):
    out = tmp_path / "solov2"
    assert main(["convert", "--from", "mmdet", str(FIXTURE / "solov2_tiny.pth"), "--config", str(TINY),
                 "--out", str(out)]) == 0
    assert load_checkpoint(out / "model.pth")[1].model.arch == "solov2"
    wrong = tmp_path / "wrong"
    code = main(["convert", "--from", "mmdet", str(FIXTURE / "solov2_tiny.pth"), "--config",
                 str(ROOT / "models" / "solov2_r50_fpn_coco.yaml"), "--out", str(wrong)])
    err = capsys.readouterr().err
    assert code == 2 and not (wrong / "model.pth").exists()
    assert err.count("\n") == 1 and "backbone.conv1.weight" in err and "(8, 3, 7, 7)" in err
    code = main(["convert", "--from", "mmdet", str(FIXTURE / "solov2_tiny.pth"), "--config",
                 str(ROOT / "models" / "csr_d2s_r18_small.yaml"), "--out", str(wrong)])
    assert code == 2 and "needs a solov2 config" in capsys.readouterr().err
