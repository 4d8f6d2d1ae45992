"""Segmenter (design.md §2): backend from the suffix, the same results from every backend."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from csrinfer import Segmenter
from csrinfer.errors import ConfigError, ImageError, ModelFileError
from csrinfer.apps.compare import compare, match_instances, parity_segmenters
from csrinfer.runtime.instances import Instances, masks_to_boxes
from tests.conftest import EXPORT_SIZE, delicate_instances, photo_like

SIZES = [(120, 180), (160, 160), (57, 250), (300, 100)]


def assert_same(got: Instances, want: Instances, score_tol=1e-3, min_iou=0.99, delicate=frozenset()):
    """Same count, every instance matched one to one (same class, mask IoU >= min_iou), scores
    within score_tol (``delicate`` instances of ``want``: within 5 * score_tol, see conftest)."""
    assert len(got) == len(want) and len(want) > 0
    assert got.masks.shape[1:] == want.masks.shape[1:]
    assert len(delicate) <= len(want) // 5, "too many delicate instances for a meaningful comparison"
    pairs = match_instances(got, want, min_iou=0.5)
    assert len(pairs) == len(want), f"only {len(pairs)} of {len(want)} instances matched"
    for i, j, iou in pairs:
        assert iou >= min_iou
        assert abs(got.scores[i] - want.scores[j]) <= score_tol * (5 if j in delicate else 1)


def test_backend_is_chosen_from_the_suffix(small_ckpt, small_onnx):
    assert type(Segmenter(small_ckpt).backend).__name__ == "TorchBackend"
    onnx_seg = Segmenter(small_onnx)
    assert type(onnx_seg.backend).__name__ == "OnnxRuntimeBackend"
    assert onnx_seg.info.input_size == EXPORT_SIZE and onnx_seg.info.batch == 1
    assert onnx_seg.class_names == ("circle", "rectangle", "triangle", "star")
    assert onnx_seg.info.short_side == 160 and onnx_seg.info.inference["nms_pre"] == 1040
    assert onnx_seg.score_thr == 0.0 and onnx_seg.device == "cpu"


def test_onnxruntime_matches_pytorch_on_the_same_checkpoint(small_ckpt, small_onnx):
    torch_seg, onnx_seg = parity_segmenters(small_ckpt, small_onnx)
    assert torch_seg.input_size == EXPORT_SIZE  # letterboxed into the static size like the ONNX model
    for seed, (h, w) in enumerate(SIZES):
        image = photo_like(seed, h, w)
        want, got = torch_seg.predict(image), onnx_seg.predict(image)
        assert want.masks.shape == (len(want), h, w)
        assert_same(got, want, delicate=delicate_instances(torch_seg, image))


def test_dynamic_export_matches_pytorch_at_the_resize_rule(small_ckpt, small_onnx_dynamic):
    torch_seg, onnx_seg = Segmenter(small_ckpt), Segmenter(small_onnx_dynamic)
    assert onnx_seg.info.input_size is None and onnx_seg.info.batch is None
    images = [photo_like(10 + i, h, w) for i, (h, w) in enumerate(SIZES + [(120, 180)])]
    batched = onnx_seg.predict_batch(images, batch_size=4)  # the two 120x180 images share a batch
    for image, got in zip(images, batched):
        assert_same(got, torch_seg.predict(image), delicate=delicate_instances(torch_seg, image))


def test_predict_batch_equals_predict_one_by_one(small_ckpt):
    seg = Segmenter(small_ckpt)
    sizes = [(120, 180), (160, 160), (120, 180), (57, 250), (120, 180), (121, 179)]
    images = [photo_like(20 + i, h, w) for i, (h, w) in enumerate(sizes)]
    assert len({seg.input_shape(h, w) for h, w in sizes}) == 3  # 121x179 pads like 120x180
    for got, image in zip(seg.predict_batch(images, batch_size=2), images):
        assert_same(got, seg.predict(image), score_tol=1e-4)


def test_parity_report_of_two_backends(small_ckpt, small_onnx):
    report = compare(*parity_segmenters(small_ckpt, small_onnx), [photo_like(30, 100, 150), photo_like(31, 200, 60)])
    assert report.images == 2 and report.matched == report.instances_a > 0
    assert report.passed() and report.max_abs_error["scores"] < 1e-3 and report.mask_iou_min >= 0.99


def test_an_in_memory_model_gives_the_checkpoints_results(small_ckpt):
    from csrinfer.model.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(small_ckpt)
    from_module, from_file = Segmenter(model, cfg=cfg), Segmenter(small_ckpt)
    assert from_module.class_names == from_file.class_names
    image = photo_like(40, 100, 150)
    a, b = from_module.predict(image), from_file.predict(image)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert Segmenter(model).class_names == ("0", "1", "2", "3")  # no names given: indices


def test_instances_carry_boxes_names_and_a_score_threshold(small_onnx):
    seg = Segmenter(small_onnx, score_thr=0.5)
    inst = seg.predict(photo_like(50, 120, 160))
    assert (inst.scores > 0.5).all() and np.all(np.diff(inst.scores) <= 0)
    np.testing.assert_array_equal(inst.boxes, masks_to_boxes(inst.masks))
    assert inst.masks.dtype == bool and set(inst.names) <= set(seg.class_names)


def test_one_segmenter_shared_by_four_threads_gives_serial_results(small_onnx, small_ckpt):
    for model in (small_onnx, small_ckpt):
        seg = Segmenter(model)
        images = [photo_like(60 + i, 64 + 16 * i, 96) for i in range(4)]
        serial = [seg.predict(im) for im in images]
        results = [[None] * len(images) for _ in range(4)]

        def work(t):
            for k in range(len(images)):
                k = (k + 2 * t) % len(images)  # threads visit the images in different orders
                results[t][k] = seg.predict(images[k])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for per_thread in results:
            for got, want in zip(per_thread, serial):
                np.testing.assert_array_equal(got.masks, want.masks)
                np.testing.assert_array_equal(got.scores, want.scores)


def test_a_static_size_cannot_be_overridden(small_onnx):
    with pytest.raises(ConfigError, match="static input of 160x224"):
        Segmenter(small_onnx, input_size=(320, 320))


@pytest.mark.parametrize("option", [{"score_thr": 5}, {"mask_thr": -0.5}])
def test_thresholds_outside_0_1_are_refused(small_onnx, option):
    with pytest.raises(ConfigError, match=f"{next(iter(option))} is a probability in \\[0, 1\\]"):
        Segmenter(small_onnx, **option)


@pytest.mark.parametrize("name,error,match", [
    ("model.tflite", ModelFileError, "unknown suffix"),
    ("missing.onnx", ModelFileError, "does not exist"),
])
def test_bad_model_paths_say_what_is_wrong(tmp_path, name, error, match):
    with pytest.raises(error, match=match):
        Segmenter(tmp_path / name)


def test_an_onnx_file_without_csrinfer_metadata_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["scores"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ModelFileError, match="not exported by csrinfer"):
        Segmenter(path)
    (tmp_path / "garbage.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelFileError, match="cannot load"):
        Segmenter(tmp_path / "garbage.onnx")


# -- what a caller can get wrong: one sentence each, before any work ------------------------------

def test_predict_batch_takes_any_iterable_but_not_a_path(small_ckpt):
    seg = Segmenter(small_ckpt)
    images = [photo_like(i, 60, 80) for i in range(2)]
    assert len(seg.predict_batch(im for im in images)) == 2
    with pytest.raises(ImageError, match="predict_batch takes a list of images, got the path a.jpg; use predict"):
        seg.predict_batch("a.jpg")
    with pytest.raises(ConfigError, match="batch_size must be a whole number of at least 1, got -1"):
        seg.predict_batch(images, batch_size=-1)


@pytest.mark.parametrize("size", [256, "256x256", (256, 256, 3), (0, 64), (-32, -32), (64.5, 64)])
def test_an_input_size_that_is_not_two_positive_integers_is_refused(small_ckpt, size):
    with pytest.raises(ConfigError, match="input_size must be \\(height, width\\) in pixels"):
        Segmenter(small_ckpt, input_size=size)


def test_what_is_not_a_model_is_refused(small_cfg):
    import torch

    from csrinfer.model import build_model

    for thing, says in ((None, "model must be a model file path"), (123, "model must be a model file path"),
                        (torch.nn.Linear(2, 2), "must be a CSRD2SNet .*not a Linear")):
        with pytest.raises(ModelFileError, match=says):
            Segmenter(thing)
    net = build_model(small_cfg)
    with pytest.raises(ConfigError, match="cfg must be a csrinfer Config"):
        Segmenter(net, cfg={"classes": ["a"]})
    with pytest.raises(ConfigError, match="class_names must be a list of names, not the string 'abcd'"):
        Segmenter(net, class_names="abcd")
    with pytest.raises(ConfigError, match="this model has 4 classes but class_names names 1"):
        Segmenter(net, class_names=["a"])


def test_an_option_of_another_backend_is_one_sentence(small_onnx):
    with pytest.raises(ConfigError, match="option\\(s\\) fast do not apply to ONNX Runtime models; they take spin, threads"):
        Segmenter(small_onnx, fp16=True)


def test_by_default_every_instance_the_graph_returns_is_kept(small_onnx):
    """The graph applied the model's thresholds (tests/runtime/test_postprocess.py): Segmenter adds none."""
    seg = Segmenter(small_onnx)
    image = photo_like(50, 120, 160)
    batch, _ = seg.preprocess([image])
    scores = np.asarray(seg.backend.infer({"images": batch})["scores"][0])
    inst = seg.predict(image)
    assert seg.score_thr == 0.0 and len(inst) == np.count_nonzero(scores) > 0


def test_model_info_read_without_loading_is_the_loaded_backends(small_ckpt, small_onnx, small_onnx_dynamic):
    from csrinfer.runtime.backends import read_model_info

    for model in (small_ckpt, small_onnx, small_onnx_dynamic):
        assert read_model_info(model) == Segmenter(model).info
    assert read_model_info(small_onnx).input_size == EXPORT_SIZE and read_model_info(small_onnx_dynamic).dynamic


def test_a_checkpoints_own_class_names_win_when_read_without_loading(small_ckpt, tmp_path):
    import torch

    from csrinfer.runtime.backends import read_model_info

    payload = torch.load(small_ckpt, weights_only=True)
    payload["class_names"] = ["ring", "box", "wedge", "spark"]
    torch.save(payload, tmp_path / "renamed.pth")
    assert read_model_info(tmp_path / "renamed.pth").class_names == ("ring", "box", "wedge", "spark")
    assert Segmenter(tmp_path / "renamed.pth").class_names == ("ring", "box", "wedge", "spark")


def test_the_tensorrt_plugin_graph_runs_in_onnx_runtime_like_the_standard_one(tmp_path, small_ckpt):
    """model.plugin.onnx (D2SFused nodes) loads as .onnx: the nodes run on their reference."""
    from csrinfer.export.pipeline import ExportOptions, export_model

    result = export_model(small_ckpt, ExportOptions(out_dir=tmp_path, input_size=EXPORT_SIZE, engine=False,
                                                    write_plugin=True))
    plugin_graph = next(g for g in result.graphs if g.name == "model.plugin.onnx")
    image = photo_like(70, 150, 200)
    want, got = Segmenter(result.onnx).predict(image), Segmenter(plugin_graph).predict(image)
    assert len(want) > 0 and len(got) == len(want)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_predict_batch_can_return_the_good_results_beside_an_unreadable_image(small_onnx, tmp_path):
    from PIL import Image

    from csrinfer.errors import ImageError

    seg = Segmenter(small_onnx)
    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        seg.predict_batch([good, broken])
    results = seg.predict_batch([good, broken, good], errors="return")
    assert isinstance(results[1], ImageError) and "broken.jpg" in str(results[1])
    want = seg.predict(good)
    for got in (results[0], results[2]):
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.boxes, want.boxes)
    from_pil = seg.predict(Image.fromarray(good[:, :, ::-1]))  # PIL holds RGB
    np.testing.assert_array_equal(from_pil.boxes, want.boxes)
