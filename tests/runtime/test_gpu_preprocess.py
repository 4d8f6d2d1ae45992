"""GPU letterbox: the same geometry as preprocess.letterbox and OpenCV's resize values (±1 grey level)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrinfer.runtime.gpu_preprocess import letterbox_tensor, resize_taps
from csrinfer.letterbox import letterbox

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


@pytest.mark.parametrize("src, dst, area", [(960, 800, True), (1600, 1333, True), (7, 3, True), (300, 800, False),
                                            (5, 13, False), (10, 10, False)])
def test_taps_are_normalised_and_in_range(src, dst, area):
    index, weight = resize_taps(src, dst, area)
    assert index.shape == weight.shape and index.shape[0] == dst
    assert index.min() >= 0 and index.max() < src
    # OpenCV drops slivers under 1e-3 of a pixel at cell edges, so a cell's weights can miss that much.
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, atol=1e-3 / (src / dst))


@pytest.mark.parametrize("hw, fit", [((96, 160), None), ((200, 120), None), ((1000, 1600), None),
                                     ((64, 100), (320, 320)), ((331, 217), (320, 448)), ((800, 1333), None)])
def test_matches_opencv_letterbox(hw, fit):
    rng = np.random.default_rng(sum(hw))
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    want, want_box = letterbox(image, fit=fit)
    got, got_box = letterbox_tensor(image, "cpu", fit=fit)
    assert got_box == want_box and got.shape == want.shape and got.dtype == torch.float32
    diff = np.abs(got.numpy() - want)
    assert diff.max() <= 1.0
    assert (diff > 0).mean() < 0.2  # OpenCV's bilinear uses 11-bit weights: a few values round the other way


def test_padding_is_the_given_colour():
    image = np.full((40, 50, 3), 7, np.uint8)
    out, box = letterbox_tensor(image, "cpu", fit=(64, 96), pad_value=(1.0, 2.0, 3.0))
    rh, rw = box.resized
    assert torch.equal(out[:, rh:, :], torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 64 - rh, 96))
    assert (out[:, :rh, :rw] == 7).all()


def test_refuses_non_uint8_bgr():
    with pytest.raises(ValueError, match="uint8 BGR"):
        letterbox_tensor(np.zeros((4, 4, 3), np.float32), "cpu")


@needs_cuda
def test_on_the_gpu_equals_the_cpu_result():
    image = np.random.default_rng(1).integers(0, 256, (480, 800, 3), dtype=np.uint8)
    cpu, box = letterbox_tensor(image, "cpu")
    gpu, gbox = letterbox_tensor(image, "cuda")
    assert gbox == box and gpu.is_cuda
    assert (gpu.cpu() - cpu).abs().max() <= 1.0
