"""ONNX export (design.md §2): standard ops, and ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from csrinfer.export.onnx import export_onnx, read_metadata

STANDARD_DOMAINS = {"", "ai.onnx"}


def run_ort(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": images})))


def assert_same_instances(got, want, atol=1e-3):
    """Scores agree slot by slot; for clearly separated scores, labels and masks agree too."""
    np.testing.assert_allclose(got["scores"], want["scores"], atol=atol)
    s = want["scores"]
    for b in range(s.shape[0]):
        for k in range(s.shape[1]):
            gaps = np.abs(s[b] - s[b, k])
            gaps[k] = np.inf
            if s[b, k] > 0 and gaps.min() > 10 * atol:
                assert got["labels"][b, k] == want["labels"][b, k]
                np.testing.assert_allclose(got["masks"][b, k], want["masks"][b, k], atol=atol)


def test_small_model_exports_to_standard_ops_and_matches(tmp_path, small_model):
    path = export_onnx(small_model, tmp_path / "m.onnx", input_size=(256, 320), metadata={"stride": 8, "classes": ["a"]})
    proto = onnx.load(str(path))
    assert {n.domain for n in proto.graph.node} <= STANDARD_DOMAINS
    ops = {n.op_type for n in proto.graph.node}
    assert "DepthToSpace" in ops and "TopK" in ops and "MatMul" in ops
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["scores", "labels", "masks"]
    meta = read_metadata(proto)
    assert meta["stride"] == 8 and meta["classes"] == ["a"]

    images = (torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(5)) * 255)
    with torch.no_grad():
        want = dict(zip(["scores", "labels", "masks"], (t.numpy() for t in small_model.predict(images))))
    got = run_ort(path, images.numpy())
    assert (want["scores"] > 0).sum() > 0
    assert_same_instances(got, want)


def test_dynamic_export_runs_at_other_sizes(tmp_path, small_model):
    path = export_onnx(small_model, tmp_path / "d.onnx", input_size=(256, 256), dynamic=True)
    for shape in [(2, 3, 320, 416), (1, 3, 192, 256)]:
        images = torch.rand(shape, generator=torch.Generator().manual_seed(6)) * 255
        with torch.no_grad():
            want = dict(zip(["scores", "labels", "masks"], (t.numpy() for t in small_model.predict(images))))
        assert_same_instances(run_ort(path, images.numpy()), want)


@pytest.mark.slow
def test_paper_model_exports_and_matches(tmp_path, paper_cfg):
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    torch.manual_seed(0)
    model = make_confident(build_model(paper_cfg), alive_classes=1, nms_pre=3840).eval()
    path = export_onnx(model, tmp_path / "paper.onnx", input_size=(320, 480))
    images = torch.rand(1, 3, 320, 480, generator=torch.Generator().manual_seed(7)) * 255
    with torch.no_grad():
        want = dict(zip(["scores", "labels", "masks"], (t.numpy() for t in model.predict(images))))
    assert_same_instances(run_ort(path, images.numpy()), want)
