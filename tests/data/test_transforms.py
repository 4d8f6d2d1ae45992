"""Training transforms: the masks follow the image exactly through flip, resize and padding."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer.data.transforms import TrainTransform, resize_masks
from csrinfer.letterbox import PAD_VALUE_RGB


def _painted(rng, h=90, w=130):
    """A random image with three random blobs painted pure red/green/blue, and their masks."""
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((3, h, w), np.uint8)
    for i in range(3):
        y, x = rng.integers(0, h - 30), rng.integers(0, w - 40)
        masks[i, y:y + rng.integers(12, 30), x:x + rng.integers(15, 40)] = 1
    masks[1] &= 1 - masks[0]
    masks[2] &= 1 - masks[0] - masks[1]
    for i in range(3):
        image[masks[i].astype(bool)] = 0
        image[masks[i].astype(bool), 2 - i] = 255  # BGR: mask 0 red, 1 green, 2 blue
    return image, masks


@pytest.mark.parametrize("flip,size", [(0.0, 64), (1.0, 64), (0.0, 200), (1.0, 150)])
def test_masks_follow_the_image(flip, size):
    rng = np.random.default_rng(1)
    image, masks = _painted(rng)
    x, out_masks, _, box = TrainTransform((size, size), 1000, flip)(image, masks, None, rng)
    rh, rw = box.resized
    assert min(rh, rw) == size and x.shape[1] % 32 == 0 and x.shape[2] % 32 == 0
    for i in range(3):  # RGB now: mask i is bright in channel i
        from_image = (x[i, :rh, :rw] > 160) & (x[(i + 1) % 3, :rh, :rw] < 100)
        m = out_masks[i].astype(bool)
        iou = (from_image & m).sum() / (from_image | m).sum()
        assert iou > 0.9, (i, iou)


def test_padding_is_the_mean_colour_and_masks_stay_unpadded():
    rng = np.random.default_rng(2)
    image, masks = _painted(rng, 50, 70)
    ignore = masks[0].astype(bool)
    x, m, ig, box = TrainTransform((64, 64), 1000, 0.0)(image, masks, ignore, rng)
    assert box.resized == (64, 90) and x.shape == (3, 64, 96)
    assert m.shape == (3, 64, 90) and ig.shape == (64, 90) and ig.dtype == bool
    np.testing.assert_allclose(x[:, :, 90:], np.broadcast_to(np.float32(PAD_VALUE_RGB)[:, None, None], (3, 64, 6)))


def test_flip_mirrors_the_mask():
    masks = np.zeros((1, 20, 30), np.uint8)
    masks[0, 5:10, 2:8] = 1
    rng = np.random.default_rng(0)
    _, out, _, _ = TrainTransform((20, 20), 1000, 1.0)(np.zeros((20, 30, 3), np.uint8), masks, None, rng)
    np.testing.assert_array_equal(out[0], masks[0, :, ::-1])


def test_multi_scale_draws_sizes_in_range():
    rng = np.random.default_rng(0)
    t = TrainTransform((40, 56), 1000, 0.0)
    sizes = {t(np.zeros((30, 45, 3), np.uint8), np.zeros((0, 30, 45), np.uint8), None, rng)[3].resized[0]
             for _ in range(40)}
    assert min(sizes) >= 40 and max(sizes) <= 56 and len(sizes) > 5


def test_resize_masks_handles_many_masks_at_odd_scales():
    rng = np.random.default_rng(0)
    masks = (rng.random((9, 37, 41)) < 0.5).astype(np.uint8)
    masks[:, 10:30, 10:30] = 1
    out = resize_masks(masks, (23, 29))
    assert out.shape == (9, 23, 29) and set(np.unique(out)) <= {0, 1}
    assert out[:, 9:18, 9:18].all()  # the solid square survives the shrink


def test_flip_mirrors_the_crowd_ignore_map_with_the_image():
    # No resize (short side 90 -> 90): the ignore map out is exactly the input map mirrored.
    rng = np.random.default_rng(3)
    image, masks = _painted(rng)
    ignore = rng.random((90, 130)) < 0.3
    ignore[:, :40] = True  # a solid band on the left: the map is far from its own mirror image
    assert (ignore != ignore[:, ::-1]).mean() > 0.3
    _, _, ig, box = TrainTransform((90, 90), 1000, 1.0)(image, masks, ignore, rng)
    assert box.resized == (90, 130)
    np.testing.assert_array_equal(ig, ignore[:, ::-1])


@pytest.mark.parametrize("size", [64, 150])
def test_a_resized_flipped_ignore_map_lines_up_with_the_flipped_mask_and_image(size):
    # The crowd region is blob 1 (painted green): after a flip and a resize the ignore map is the
    # flipped map resized, the same pixels as the flipped mask 1 and the green blob of the image.
    rng = np.random.default_rng(4)
    image, masks = _painted(rng)
    ignore = masks[1].astype(bool)
    assert (ignore != ignore[:, ::-1]).any()
    x, out_masks, ig, box = TrainTransform((size, size), 1000, 1.0)(image, masks, ignore, rng)
    rh, rw = box.resized
    assert ig.dtype == bool and ig.shape == (rh, rw)
    np.testing.assert_array_equal(ig, resize_masks(np.ascontiguousarray(ignore[None, :, ::-1]), (rh, rw))[0] > 0)
    np.testing.assert_array_equal(ig, out_masks[1].astype(bool))
    green = (x[1, :rh, :rw] > 160) & (x[2, :rh, :rw] < 100)
    assert (green & ig).sum() / (green | ig).sum() > 0.9
    unflipped = resize_masks(ignore[None], (rh, rw))[0].astype(bool)
    assert (green & unflipped).sum() / (green | unflipped).sum() < 0.5  # the check can tell a missing flip
