"""GPU fast-path building blocks: switches, the FP16/channels_last/fused network, CUDA graphs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from csrinfer.runtime.fastpath import FastNet, FastPathOptions, build_fast_net

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
        again = fast(images * 0.5)  # a replay with other data follows its input
    assert got[0].dtype == torch.float32 and got[2].dtype == torch.float32
    live = want[0][0] > 0.1
    assert live.any()
    # FP16 moves scores a little and may reorder near-ties: compare the score distributions.
    torch.testing.assert_close(got[0][0][live].sort().values, want[0][0][live].sort().values, rtol=0, atol=0.05)
    assert not torch.equal(again[0], got[0])
