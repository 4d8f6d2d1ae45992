"""The wire format: instances survive encode -> decode exactly, masks travel as RLE."""

import numpy as np
import pytest

from csrinfer.errors import ImageError
from csrinfer.runtime.instances import Instances, masks_to_boxes
from csrinfer.serve import protocol


def random_instances(rng, n, h, w):
    masks = rng.random((n, h, w)) > rng.uniform(0.3, 0.9, (n, 1, 1))
    return Instances(masks=masks, labels=rng.integers(0, 4, n).astype(np.int64),
                     scores=rng.random(n).astype(np.float32), boxes=masks_to_boxes(masks),
                     class_names=("a", "b", "c", "d"))


def test_round_trip_of_a_batch_with_different_counts_and_sizes():
    rng = np.random.default_rng(0)
    batch = [random_instances(rng, 5, 40, 60), Instances.empty(30, 20, ("a", "b", "c", "d")),
             random_instances(rng, 2, 17, 33)]
    outputs = protocol.encode_instances(batch)
    assert outputs["masks_rle"].shape == (3, 5) and outputs["num_instances"].ravel().tolist() == [5, 0, 2]
    decoded = protocol.decode_instances(outputs, ("a", "b", "c", "d"), (3, 7, 12, 20))
    assert all(got.category_ids == (3, 7, 12, 20) for got in decoded)
    for want, got in zip(batch, decoded):
        assert got.image_size == want.image_size and len(got) == len(want)
        np.testing.assert_array_equal(got.masks, want.masks)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        assert got.class_names == want.class_names


def test_masks_travel_compressed():
    rng = np.random.default_rng(1)
    inst = random_instances(rng, 3, 480, 640)
    inst.masks[:] = False
    inst.masks[:, 100:300, 200:400] = True  # object-like masks: a few runs per column
    rle = protocol.encode_instances([inst])["masks_rle"]
    assert max(len(r) for r in rle.ravel()) < 480 * 640 // 100


def test_a_request_needs_exactly_one_image_input():
    with pytest.raises(ImageError, match="exactly one"):
        protocol.decode_request_images(None, None, 10**8)
    raw = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(ImageError, match="exactly one"):
        protocol.decode_request_images(np.array([[b"x"]], dtype=object), raw, 10**8)


def test_encoded_images_decode_like_opencv_and_bad_bytes_are_refused():
    import cv2

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (21, 34, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    raw = np.stack([image, image])
    decoded = protocol.decode_request_images(np.array([[png], [png]], dtype=object), None, 10**8)
    assert len(decoded) == 2 and all(np.array_equal(d, image) for d in decoded)
    assert np.array_equal(protocol.decode_request_images(None, raw, 10**8)[1], image)
    for data, words in ((b"", "empty"), (b"GIF89a but not really" * 3, "'image' item 0"),
                        (png[:60], "'image' item 0")):
        with pytest.raises(ImageError, match=words):
            protocol.decode_request_images(np.array([[data]], dtype=object), None, 10**8)
    with pytest.raises(ImageError, match="over the limit of 100 pixels"):
        protocol.decode_request_images(np.array([[png]], dtype=object), None, 100)
    with pytest.raises(ImageError, match="image_raw"):
        protocol.decode_request_images(None, raw.astype(np.float32), 10**8)
