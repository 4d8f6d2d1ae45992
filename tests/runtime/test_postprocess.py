"""Shared post-processing: crop padding, upsample kept masks only, threshold, boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrinfer.runtime import postprocess
from csrinfer.runtime.instances import masks_to_boxes
from csrinfer.runtime.postprocess import to_instances
from csrinfer.letterbox import Letterbox


def test_masks_return_to_the_original_image_and_padding_is_cropped():
    # Input 64x96 padded, image resized to 64x80 from an original 32x40; one square object.
    box = Letterbox(original=(32, 40), resized=(64, 80), padded=(64, 96))
    probs = np.zeros((3, 8, 12), np.float32)
    probs[0, 2:6, 2:6] = 1.0  # stride-8 cells -> pixels 16..48 of the input -> 8..24 of the original
    probs[1, :, 10:] = 1.0  # only in the padding
    scores = np.array([0.9, 0.8, 0.05], np.float32)
    inst = to_instances(scores, np.array([2, 1, 0]), probs, box, ["a", "b", "c"], score_thr=0.1)
    assert len(inst) == 2 and inst.masks.shape == (2, 32, 40)
    assert inst.names == ["c", "b"]
    ys, xs = np.nonzero(inst.masks[0])
    assert 7 <= ys.min() <= 9 and 23 <= ys.max() <= 25 and 7 <= xs.min() <= 9 and 23 <= xs.max() <= 25
    assert not inst.masks[1].any()  # what was only in the padding is gone


def test_nothing_above_threshold_gives_empty_instances():
    box = Letterbox((10, 20), (32, 64), (32, 64))
    inst = to_instances(np.zeros(5), np.zeros(5), np.ones((5, 4, 8)), box, ["x"])
    assert len(inst) == 0 and inst.masks.shape == (0, 10, 20) and inst.boxes.shape == (0, 4)


def test_by_default_only_the_graphs_empty_slots_are_dropped():
    """The graph's own thresholds already ran (decayed scores under 0.05 became 0): an instance
    scoring 0.07 is the model's answer, as in mmdetection's SOLOv2 results."""
    box = Letterbox((16, 16), (16, 16), (16, 16))
    inst = to_instances(np.array([0.9, 0.07, 0.0]), np.zeros(3), np.ones((3, 2, 2)), box, ["x"])
    np.testing.assert_allclose(inst.scores, [0.9, 0.07])


def test_pasting_equals_two_bilinear_resizes_and_a_crop():
    """The per-axis matrices reproduce mmdetection's upsample -> crop -> resize -> threshold."""
    import torch
    import torch.nn.functional as F

    from csrinfer.runtime.postprocess import paste_masks

    probs = torch.rand(5, 12, 20, generator=torch.Generator().manual_seed(0))
    for box in [Letterbox((70, 150), (45, 150), (96, 160)), Letterbox((300, 500), (58, 96), (96, 160)),
                Letterbox((96, 160), (96, 160), (96, 160))]:
        (ph, pw), (rh, rw) = box.padded, box.resized
        want = F.interpolate(probs[None], size=(ph, pw), mode="bilinear", align_corners=False)[:, :, :rh, :rw]
        want = F.interpolate(want, size=box.original, mode="bilinear", align_corners=False)[0]
        got = paste_masks(probs, box, 0.5).numpy()
        assert got.shape == (5, *box.original)
        close = (want - 0.5).abs() < 1e-5  # float rounding may only flip pixels sitting on the threshold
        np.testing.assert_array_equal(got[~close.numpy()], (want > 0.5).numpy()[~close.numpy()])


def random_outputs(k: int = 7, seed: int = 0):
    """K slots of blobby mask probabilities at stride 8 of a 96x160 input, some masks empty."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.nn.functional.avg_pool2d(torch.rand(k, 12, 20, generator=g), 3, 1, 1) * 1.2
    probs[2] = 0  # an empty mask: a zero box
    scores = torch.rand(k, generator=g) + 0.1
    return scores, torch.randint(0, 3, (k,), generator=g), probs


def test_boxes_are_the_tight_boxes_of_the_masks_in_every_chunk(monkeypatch):
    """Boxes come from row/column extents gathered chunk by chunk: the same as from the masks."""
    monkeypatch.setattr(postprocess, "CHUNK_PIXELS", 2 * 70 * 150)  # 2 masks a chunk: 4 chunks
    scores, labels, probs = random_outputs()
    inst = to_instances(scores, labels, probs, Letterbox((70, 150), (45, 150), (96, 160)), ["a", "b", "c"])
    assert len(inst) == 7 and inst.masks.any(axis=(1, 2)).sum() >= 5
    np.testing.assert_array_equal(inst.boxes, masks_to_boxes(inst.masks))
    np.testing.assert_array_equal(inst.scores, np.sort(scores.numpy())[::-1])


def test_bits_are_packed_in_numpys_order():
    masks = torch.rand(3, 5, 21, generator=torch.Generator().manual_seed(2)) > 0.5
    packed = postprocess.pack_bits(masks)
    np.testing.assert_array_equal(packed.numpy(), np.packbits(masks.numpy(), axis=-1))
    np.testing.assert_array_equal(np.unpackbits(packed.numpy(), axis=-1, count=21).view(bool), masks.numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_outputs_on_a_gpu_give_the_instances_of_the_cpu():
    scores, labels, probs = random_outputs(seed=1)
    box = Letterbox((300, 500), (58, 96), (96, 160))
    want = to_instances(scores, labels, probs, box, ["a", "b", "c"])
    got = to_instances(scores.cuda(), labels.cuda(), probs.cuda(), box, ["a", "b", "c"])
    flipped = (got.masks != want.masks).mean()
    assert flipped < 1e-4  # matrix products may round differently on the GPU, at the threshold only
    np.testing.assert_array_equal(got.boxes, masks_to_boxes(got.masks))
    np.testing.assert_array_equal(got.labels, want.labels)
