"""Safe image loading: a path or an array in, uint8 BGR [H, W, 3] out, or one ``ImageError``.

Every way an input can be unusable gets one sentence naming the file (or array) and the
problem, raised as :class:`csrinfer.errors.ImageError`:

- a missing path, a directory, an empty file;
- a file that is not an image (a text file named ``.jpg``), a truncated or corrupt file;
- a file whose header claims more than ``max_pixels`` pixels (decompression-bomb guard: the
  size is read from the header before anything is decoded, so nothing huge is allocated);
- an array of the wrong type, shape or dtype, or holding NaN/inf or values outside 0-255.

Accepted and converted rather than rejected: grayscale (2-D or one channel), RGBA/BGRA (alpha
dropped), 16-bit (divided by 256 as ``cv2.imread`` does, so 10/12-bit data held in uint16 comes
out dark), palette and CMYK files, EXIF-rotated JPEGs (turned upright, as ``cv2.imread`` does),
images of any size from 1x1 and any aspect ratio.
Files are decoded with Pillow, which reports truncation (libjpeg through OpenCV only warns).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from csrinfer.errors import ImageError, first_line

MAX_PIXELS = 100_000_000  # ~10000 x 10000; pass max_pixels= to read larger images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm")


def load_image(source, max_pixels: int = MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """A path, an array or a PIL image -> uint8 BGR [H, W, 3] (C-contiguous).

    Args:
        source: a file path, an array [H, W], [H, W, 1|3|4] in BGR(A) order, uint8, uint16
            or float holding 0-255 values, or a PIL image (any mode; its colours as PIL holds them).
        max_pixels: files whose header claims more pixels than this are refused undecoded.
        name: how an array is called in error messages (default "image array").

    Raises:
        ImageError: one sentence naming the file or array and the problem.
    """
    if isinstance(source, np.ndarray):
        return as_bgr_uint8(source, name or "image array")
    if isinstance(source, (str, os.PathLike)):
        return read_image(source, max_pixels)
    if type(source).__module__.startswith("PIL."):  # checked by name: Pillow is imported only when used
        return _pil_to_bgr(source)
    raise ImageError(f"{name or 'image'} is a {type(source).__name__}; pass a file path, an "
                     f"H x W x 3 uint8 BGR numpy array or a PIL image")


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to uint8 BGR [H, W, 3]; see the module docstring for what is refused."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image {path} does not exist")
    if path.is_dir():
        raise ImageError(f"image {path} is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"image {path} is an empty file (0 bytes)")
    return _decode(path, f"image {path}", max_pixels)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, name: str = "image bytes") -> np.ndarray:
    """Decode an encoded image held in memory (a file's bytes, e.g. from a request) like ``read_image``.

    ``name`` is how the bytes are called in error messages.
    """
    import io

    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, label: str, max_pixels: int) -> np.ndarray:
    """A path or file object -> uint8 BGR; ``label`` ("image x.jpg") starts every error sentence."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
        try:
            image = Image.open(source)  # reads the header only
        except Image.DecompressionBombError as e:
            raise ImageError(_too_large(label, _pixels_in(str(e)), max_pixels)) from None
        except UnidentifiedImageError:
            raise ImageError(f"{label} is not an image file (its contents are not a known image "
                             f"format such as JPEG or PNG)") from None
        except OSError as e:
            raise ImageError(f"{label} cannot be read ({first_line(e, 160)})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(_too_large(label, (width, height), max_pixels))
        if width == 0 or height == 0:
            raise ImageError(f"{label} has zero size ({width}x{height})")
        try:
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _pil_to_bgr(image)
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # Pillow's decoders raise these
            raise ImageError(f"{label} is truncated or corrupt ({first_line(e, 160)})") from None


def as_bgr_uint8(array: np.ndarray, name: str = "image array") -> np.ndarray:
    """Check and convert an array to uint8 BGR [H, W, 3]; BGR(A) channel order is assumed."""
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{name} is a {type(array).__name__}, not a numpy array")
    shape = tuple(array.shape)
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        raise ImageError(f"{name} has shape {shape}, which looks channels-first; pass H x W x 3 "
                         f"(e.g. array.transpose(1, 2, 0))")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise ImageError(f"{name} has shape {shape}; an image is H x W x 3 (BGR), H x W x 4 or H x W")
    if array.size == 0:
        raise ImageError(f"{name} has shape {shape}, which holds no pixels")
    array = _to_uint8(array, name)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[-1] == 4:
        array = array[:, :, :3]  # alpha dropped, as cv2.imread does
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(f"{name} contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ImageError(f"{name} is {array.dtype} with values from {low:g} to {high:g}; "
                             f"float images must hold 0-255 values")
        if high <= 1 and array.size > 1:  # 0-1 floats would round to a black image, detecting nothing
            raise ImageError(f"{name} is {array.dtype} with values from {low:g} to {high:g}, which looks "
                             f"like a 0-1 image; pass image * 255 (float images hold 0-255 values)")
        return np.rint(array).astype(np.uint8)
    raise ImageError(f"{name} has dtype {array.dtype}; pass uint8 (0-255), uint16 or float 0-255 values")


def _pil_to_bgr(image) -> np.ndarray:
    """A loaded PIL image of any mode -> uint8 BGR [H, W, 3]."""
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit (or 32-bit int) grayscale
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        return as_bgr_uint8(values, "image")
    if image.mode == "F":
        return as_bgr_uint8(np.asarray(image, np.float32), "image")
    if image.mode == "L":
        return as_bgr_uint8(np.asarray(image), "image")
    if image.mode != "RGB":
        image = image.convert("RGB")  # palette, CMYK, RGBA, LA, 1-bit, YCbCr...
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def _too_large(label: str, size, max_pixels: int) -> str:
    claim = f"{size[0]}x{size[1]} pixels" if isinstance(size, tuple) else f"{size} pixels" if size else "a huge size"
    return (f"{label} claims {claim}, over the limit of {max_pixels} pixels (a guard against "
            f"decompression bombs); Segmenter(..., max_pixels=N) reads it anyway")


def _pixels_in(message: str) -> int | None:
    m = re.search(r"\((\d+) pixels\)", message)
    return int(m.group(1)) if m else None
