"""The wire format of csrinfer's Triton models: one image in, compact instances out.

Every repository csrinfer writes (the ``serve`` model around ``Segmenter`` and the ensemble in
front of an exported engine) speaks this, so :class:`csrinfer.serve.client.RemoteSegmenter`
talks to either. Each request holds ``b`` images (its batch dimension, usually 1; Triton's
dynamic batcher joins requests on the server):

inputs (one of the two):
    ``image``      BYTES [b, 1]        an encoded image file (JPEG, PNG, ... anything Pillow reads)
    ``image_raw``  UINT8 [b, H, W, 3]  BGR pixels (OpenCV's order)

outputs (N = the most instances of any image in the request; slots past ``num_instances``
are padding):
    ``scores``        FP32  [b, N]
    ``labels``        INT64 [b, N]
    ``boxes``         FP32  [b, N, 4]   x1, y1, x2, y2 in pixels of the original image
    ``masks_rle``     BYTES [b, N]      COCO RLE ``counts`` (pycocotools' compressed form)
    ``num_instances`` INT32 [b, 1]
    ``image_size``    INT32 [b, 2]      H, W of the image the masks cover

Masks never travel dense: a COCO RLE of a full-size mask is a few hundred bytes. The server
computes it from the masks where they are (no full-size mask is made on the way); the client
decodes a mask only when it is read (``Instances.masks``; ``rle()`` gives the strings back).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from csrinfer.errors import ImageError
from csrinfer.runtime.instances import Instances
from csrinfer.runtime.masks import RLEMasks

IMAGE = "image"
IMAGE_RAW = "image_raw"
OUTPUTS = ("scores", "labels", "boxes", "masks_rle", "num_instances", "image_size")

# name -> (Triton data type, dims without the batch dimension)
INPUT_SPECS = {IMAGE: ("TYPE_STRING", [1]), IMAGE_RAW: ("TYPE_UINT8", [-1, -1, 3])}
OUTPUT_SPECS = {
    "scores": ("TYPE_FP32", [-1]),
    "labels": ("TYPE_INT64", [-1]),
    "boxes": ("TYPE_FP32", [-1, 4]),
    "masks_rle": ("TYPE_STRING", [-1]),
    "num_instances": ("TYPE_INT32", [1]),
    "image_size": ("TYPE_INT32", [2]),
}


def encode_instances(batch: Sequence[Instances]) -> dict[str, np.ndarray]:
    """Instances of ``b`` images -> the output arrays above."""
    b = len(batch)
    n = max((len(x) for x in batch), default=0)
    out = {
        "scores": np.zeros((b, n), np.float32),
        "labels": np.full((b, n), -1, np.int64),
        "boxes": np.zeros((b, n, 4), np.float32),
        "masks_rle": np.full((b, n), b"", dtype=object),
        "num_instances": np.zeros((b, 1), np.int32),
        "image_size": np.zeros((b, 2), np.int32),
    }
    for i, inst in enumerate(batch):
        k = len(inst)
        out["num_instances"][i, 0] = k
        out["image_size"][i] = inst.image_size
        if k == 0:
            continue
        out["scores"][i, :k] = inst.scores
        out["labels"][i, :k] = inst.labels
        out["boxes"][i, :k] = inst.boxes
        out["masks_rle"][i, :k] = [r["counts"] for r in inst.rle()]
    return out


def decode_instances(outputs: dict[str, np.ndarray], class_names: Sequence[str] = (),
                     category_ids: Sequence[int] | None = None) -> list[Instances]:
    """The output arrays of one response -> one Instances per image (masks decoded when read)."""
    results = []
    for i in range(outputs["num_instances"].shape[0]):
        k = int(outputs["num_instances"][i, 0])
        h, w = (int(v) for v in outputs["image_size"][i])
        if k == 0:
            results.append(Instances.empty(h, w, class_names, category_ids))
            continue
        masks = RLEMasks([_as_bytes(c) for c in outputs["masks_rle"][i, :k]], (h, w))
        results.append(Instances(masks=masks,
                                 labels=outputs["labels"][i, :k].astype(np.int64),
                                 scores=outputs["scores"][i, :k].astype(np.float32),
                                 boxes=outputs["boxes"][i, :k].astype(np.float32),
                                 class_names=tuple(class_names), category_ids=category_ids))
    return results


def decode_request_images(image: np.ndarray | None, image_raw: np.ndarray | None,
                          max_pixels: int) -> list[np.ndarray]:
    """A request's ``image`` or ``image_raw`` tensor -> uint8 BGR [H, W, 3] images.

    Raises:
        ImageError: one sentence naming what is wrong with the request's images.
    """
    from csrinfer.image_io import as_bgr_uint8, decode_image

    if (image is None) == (image_raw is None):
        raise ImageError(f"a request must carry exactly one of the inputs '{IMAGE}' (encoded image "
                         f"bytes) and '{IMAGE_RAW}' (uint8 H x W x 3 BGR pixels)")
    if image_raw is not None:
        if image_raw.dtype != np.uint8 or image_raw.ndim != 4 or image_raw.shape[-1] != 3:
            raise ImageError(f"'{IMAGE_RAW}' must be uint8 [batch, H, W, 3] (BGR); got {image_raw.dtype} "
                             f"{list(image_raw.shape)}")
        return [as_bgr_uint8(im, f"'{IMAGE_RAW}' item {i}") for i, im in enumerate(image_raw)]
    flat = image.reshape(image.shape[0], -1)
    if flat.shape[1] != 1:
        raise ImageError(f"'{IMAGE}' must hold one encoded image per batch item, shape [batch, 1]; "
                         f"got {list(image.shape)}")
    return [decode_image(_as_bytes(item), max_pixels=max_pixels, name=f"'{IMAGE}' item {i}")
            for i, item in enumerate(flat[:, 0])]


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return bytes(value)

