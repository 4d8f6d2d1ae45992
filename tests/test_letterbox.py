"""Letterbox pre-processing: aspect kept, padding at bottom/right with the mean colour."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer.letterbox import PAD_VALUE_RGB, letterbox, resized_size, stack_batch


@pytest.mark.parametrize("h,w,want", [(480, 640, (800, 1067)), (1000, 500, (1333, 667)), (800, 1333, (800, 1333)),
                                      (100, 3000, (44, 1333))])
def test_coco_resize_rule(h, w, want):
    assert resized_size(h, w, 800, 1333) == want


def test_letterbox_into_a_fixed_size_keeps_aspect_and_pads():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    x, box = letterbox(image, fit=(320, 320))
    assert x.shape == (3, 320, 320) and x.dtype == np.float32
    assert box.resized == (320, 213) and box.original == (300, 200) and box.padded == (320, 320)
    np.testing.assert_allclose(x[:, :, 213:], np.broadcast_to(np.float32(PAD_VALUE_RGB)[:, None, None], (3, 320, 107)))


def test_letterbox_is_rgb_and_pads_to_multiples_of_32():
    image = np.zeros((50, 70, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    x, box = letterbox(image, short_side=64, max_size=1000)
    assert box.resized == (64, 90) and x.shape == (3, 64, 96)
    assert (x[2, :64, :90] == 255).all() and (x[0, :64, :90] == 0).all()  # RGB order: blue is channel 2


def test_stack_batch_pads_to_the_largest():
    a, b = np.ones((3, 64, 96), np.float32), np.ones((3, 100, 40), np.float32)
    batch = stack_batch([a, b])
    assert batch.shape == (2, 3, 128, 96)
    assert (batch[1, :, :100, :40] == 1).all() and batch[1, 0, 120, 90] == np.float32(PAD_VALUE_RGB[0])


def test_a_batch_of_different_sizes_tells_each_box_the_batchs_padded_size():
    """Masks come back at the stride of the batch's input, so every box must know that size."""
    from csrinfer.contract.model_info import ModelInfo
    from csrinfer.runtime.preprocess import letterbox_batch

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 90, 3), np.uint8), rng.integers(0, 256, (70, 50, 3), np.uint8)]
    info = ModelInfo(class_names=("a",), short_side=64, max_size=96, size_divisor=32)
    batch, boxes = letterbox_batch(images, info)
    assert batch.shape[0] == 2 and batch.shape[2] % 32 == 0 and batch.shape[3] % 32 == 0
    assert [b.padded for b in boxes] == [tuple(batch.shape[2:])] * 2
    assert [b.original for b in boxes] == [(40, 90), (70, 50)]
    for (h, w), box, x in zip(((40, 90), (70, 50)), boxes, batch):
        rh, rw = box.resized
        assert resized_size(h, w, 64, 96) == (rh, rw)
        np.testing.assert_array_equal(x[:, rh:, :], np.asarray(PAD_VALUE_RGB, np.float32)[:, None, None]
                                      * np.ones((1, x.shape[1] - rh, x.shape[2]), np.float32))
