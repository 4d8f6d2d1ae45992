"""GPU fast-path building blocks: switches, the FP16/channels_last/fused network, CUDA graphs."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from csrinfer.runtime.fastpath import FastNet, FastPathOptions, build_fast_net, fold_batch_norms

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


def test_switches_off_by_default_and_all_on():
    assert FastPathOptions().enabled == []
    assert FastPathOptions.all_on().enabled == ["fp16", "channels_last", "fused", "cuda_graph", "gpu_preprocess"]


def test_on_cpu_the_switches_say_they_do_nothing():
    with pytest.warns(UserWarning, match="fp16, cuda_graph do nothing on cpu"):
        resolved = FastPathOptions(fp16=True, cuda_graph=True).for_device("cpu")
    assert resolved == FastPathOptions()
    opts = FastPathOptions.all_on()
    assert opts.for_device("cuda:0") is opts


def test_fastnet_without_switches_is_predict(small_model):
    images = torch.rand(1, 3, 64, 96) * 255
    with torch.inference_mode():
        want = small_model.predict(images)
        got = FastNet(copy.deepcopy(small_model))(images)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_batch_norms_fold_into_the_convolutions_before_them(small_model):
    """ResNet-18: the stem, 8 blocks of two and 3 downsamples; the network computes the same."""
    images = torch.rand(1, 3, 64, 96) * 255
    model = copy.deepcopy(small_model).eval()
    g = torch.Generator().manual_seed(0)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # not the identity
        for t, lo, hi in ((bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2), (bn.running_mean, -0.2, 0.2),
                          (bn.running_var, 0.5, 2.0)):
            t.data.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    net = copy.deepcopy(model)
    assert fold_batch_norms(net) == 20
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert fold_batch_norms(net) == 0
    with torch.inference_mode():
        want, got = model(images), net(images)
    torch.testing.assert_close(got.mask_feats, want.mask_feats, rtol=1e-4, atol=1e-4)
    for g, w in zip(got.kernel_preds, want.kernel_preds):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_fp16_fastnet_runs_without_batch_norms(small_model):
    net = FastNet(copy.deepcopy(small_model), fp16=True)
    assert net.dtype == torch.float16 and next(net.net.parameters()).dtype == torch.float16
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.net.modules())


def test_fastnet_fused_and_channels_last_on_cpu_match_predict(small_model):
    images = torch.rand(1, 3, 64, 96) * 255
    net = FastNet(copy.deepcopy(small_model), channels_last=True, fused=True)
    assert all(m.fused_op is torch.ops.csrinfer.d2s_fused for m in net.net.neck.d2s)
    with torch.inference_mode():
        want, got = small_model.predict(images), net(images)
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-4)


@needs_cuda
def test_fast_path_on_gpu_agrees_with_fp32_eager(small_model):
    images = (torch.rand(1, 3, 96, 128) * 255).cuda()
    eager = build_fast_net(copy.deepcopy(small_model), FastPathOptions(), "cuda")
    fast = build_fast_net(copy.deepcopy(small_model), dataclasses.replace(FastPathOptions.all_on(), gpu_preprocess=False),
                          "cuda")
    with torch.inference_mode():
        want = [t.clone() for t in eager(images)]
        got = [t.clone() for t in fast(images)]
        again = [t.clone() for t in fast(images * 0.5)]  # a replay with other data follows its input
        want_again = eager(images * 0.5)
    assert got[0].dtype == torch.float32 and got[2].dtype == torch.float32
    live = want[0][0] > 0.1
    assert live.any()
    # FP16 moves scores a little and may reorder near-ties: compare the score distributions.
    torch.testing.assert_close(got[0][0][live].sort().values, want[0][0][live].sort().values, rtol=0, atol=0.05)
    live_again = want_again[0][0] > 0.1
    torch.testing.assert_close(again[0][0][live_again].sort().values, want_again[0][0][live_again].sort().values,
                               rtol=0, atol=0.05)


# --- through Segmenter (the PyTorch backend's options) ---------------------------------------

def test_segmenter_on_cpu_warns_and_runs_plain_fp32(small_ckpt):
    from csrinfer import Segmenter

    image = np.random.default_rng(0).integers(0, 256, (120, 180, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="fp16, channels_last, fused, cuda_graph, gpu_preprocess do nothing on cpu"):
        fast = Segmenter(small_ckpt, device="cpu", fast=True)
    assert fast.backend.options == FastPathOptions() and fast.backend.preprocess_device is None
    assert fast.info.precision == "fp32"
    want, got = Segmenter(small_ckpt, device="cpu").predict(image), fast.predict(image)
    assert len(got) == len(want) > 0 and np.array_equal(got.masks, want.masks)


def test_fast_takes_true_false_or_options_and_nothing_else():
    from csrinfer.errors import ConfigError

    picked = FastPathOptions(fp16=True, cuda_graph=True)
    assert FastPathOptions.of(True) == FastPathOptions.all_on() and FastPathOptions.of(picked) is picked
    assert FastPathOptions.of(False) == FastPathOptions.of(None) == FastPathOptions()
    assert not FastPathOptions() and picked  # truthy when a switch is on
    with pytest.raises(ConfigError, match="fast= takes True, False or a FastPathOptions"):
        FastPathOptions.of("fp16")


def test_the_old_switch_keywords_still_work_with_a_deprecation_warning(small_ckpt):
    from csrinfer import Segmenter

    with pytest.warns(DeprecationWarning, match=r"give fast=FastPathOptions\(compile=True\)"):
        old = Segmenter(small_ckpt, device="cpu", compile=True)
    assert old.backend.options == FastPathOptions(compile=True)


def test_fast_for_a_model_that_is_not_pytorch_is_one_sentence(small_onnx):
    from csrinfer import Segmenter
    from csrinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="fast do not apply to ONNX Runtime models"):
        Segmenter(small_onnx, fast=True)
    assert Segmenter(small_onnx, fast=False).backend.name == "ONNX Runtime"


def test_letterboxing_on_the_backend_device(small_ckpt):
    """The gpu_preprocess wiring, exercised on the CPU: tensors instead of numpy, same instances."""
    from csrinfer import Segmenter
    from csrinfer.apps.compare import match_instances

    rng = np.random.default_rng(1)
    unresized = rng.integers(0, 256, (160, 224, 3), dtype=np.uint8)  # already at the resize rule's size
    resized = rng.integers(0, 256, (150, 100, 3), dtype=np.uint8)
    seg = Segmenter(small_ckpt, device="cpu")
    want = [seg.predict(unresized), seg.predict(resized)]
    seg.backend.preprocess_device = "cpu"
    batch, boxes = seg.preprocess([resized])
    assert isinstance(batch, torch.Tensor) and batch.shape[0] == 1
    got = [seg.predict(unresized), seg.predict(resized)]
    assert np.array_equal(got[0].masks, want[0].masks) and np.array_equal(got[0].scores, want[0].scores)
    # Resized values differ from OpenCV's by at most 1 grey level: the same instances, nearly the same masks.
    pairs = match_instances(want[1], got[1], min_iou=0.5)
    assert len(pairs) >= 0.9 * len(want[1]) > 0
    assert np.mean([iou for _, _, iou in pairs]) > 0.95


def test_compile_with_cuda_graph_is_refused():
    from csrinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="not both"):
        FastPathOptions(cuda_graph=True, compile=True)


def test_without_switches_the_backend_runs_predict_itself(small_model):
    run = build_fast_net(small_model, FastPathOptions(), "cpu")
    assert run == small_model.predict


@needs_cuda
def test_segmenter_fast_path_on_gpu_matches_eager(small_ckpt):
    from csrinfer import Segmenter
    from csrinfer.apps.compare import match_instances

    image = np.random.default_rng(2).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    eager = Segmenter(small_ckpt, device="cuda")
    fast = Segmenter(small_ckpt, device="cuda", fast=True)
    assert fast.info.precision == "fp16" and fast.backend.preprocess_device == "cuda"
    want = eager.predict(image)
    for _ in range(2):  # capture, then replay
        got = fast.predict(image)
    pairs = match_instances(want, got, min_iou=0.5)
    assert len(pairs) >= 0.8 * len(want) > 0
    assert np.mean([iou for _, _, iou in pairs]) > 0.9
