"""Safe image loading: every bad input is one ImageError sentence; odd but valid images are converted."""

from __future__ import annotations

import resource
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from csrinfer.errors import ImageError
from csrinfer.image_io import load_image


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, followed by almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def rng_image(h=40, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- bad files ------------------------------------------------------------------------------

def bad_files(tmp_path):
    """name -> (path, what the sentence must say)."""
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("these are my holiday notes, not a photo\n" * 20)
    ok, jpeg = cv2.imencode(".jpg", rng_image(200, 300))
    (tmp_path / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    ok, png = cv2.imencode(".png", rng_image(200, 300))
    (tmp_path / "truncated.png").write_bytes(png.tobytes()[: len(png) // 2])
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # 10^10 pixels: Pillow's own guard
    (tmp_path / "big.png").write_bytes(png_claiming(12_000, 12_000))  # 1.4e8: over ours, under Pillow's
    return {
        "missing": (tmp_path / "nope.jpg", "does not exist"),
        "directory": (tmp_path / "folder.jpg", "is a directory"),
        "empty": (tmp_path / "empty.jpg", "empty file"),
        "text": (tmp_path / "notes.jpg", "not an image file"),
        "truncated jpeg": (tmp_path / "truncated.jpg", "truncated or corrupt"),
        "truncated png": (tmp_path / "truncated.png", "truncated or corrupt"),
        "bomb": (tmp_path / "bomb.png", "decompression bombs"),
        "big": (tmp_path / "big.png", "claims 12000x12000 pixels"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "text", "truncated jpeg", "truncated png",
                                  "bomb", "big"])
def test_a_bad_file_is_one_sentence_naming_it(tmp_path, kind):
    path, says = bad_files(tmp_path)[kind]
    before = peak_rss_mb()
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert says in message and str(path) in message and "\n" not in message
    assert peak_rss_mb() - before < 100, "a refused file must not be decoded into a huge buffer"


def test_the_pixel_limit_is_adjustable(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), rng_image(100, 100))
    with pytest.raises(ImageError, match="over the limit of 5000 pixels"):
        load_image(path, max_pixels=5000)
    assert load_image(path, max_pixels=10_000).shape == (100, 100, 3)


# -- bad arrays -----------------------------------------------------------------------------

@pytest.mark.parametrize("array,says", [
    (np.zeros((3, 40, 60), np.uint8), "channels-first"),
    (np.zeros(100, np.uint8), "has shape (100,)"),
    (np.zeros((1, 40, 60, 3), np.uint8), "has shape (1, 40, 60, 3)"),
    (np.zeros((40, 60, 2), np.uint8), "has shape (40, 60, 2)"),
    (np.zeros((0, 60, 3), np.uint8), "holds no pixels"),
    (np.zeros((40, 60, 3), np.int64), "dtype int64"),
    (np.zeros((40, 60, 3), bool), "dtype bool"),
    (np.zeros((40, 60, 3), np.complex64), "dtype complex64"),
    (np.full((40, 60, 3), np.nan, np.float32), "NaN"),
    (np.full((40, 60, 3), 300.0), "values from 300 to 300"),
    (np.linspace(0, 1, 40 * 60 * 3).reshape(40, 60, 3), "looks like a 0-1 image; pass image * 255"),
])
def test_an_unusable_array_is_one_sentence(array, says):
    with pytest.raises(ImageError, match=None) as info:
        load_image(array)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_something_that_is_not_an_image_at_all():
    with pytest.raises(ImageError, match="is a list"):
        load_image([[1, 2], [3, 4]])


# -- accepted and converted -----------------------------------------------------------------

def test_color_files_come_back_as_bgr(tmp_path):
    image = rng_image()
    cv2.imwrite(str(tmp_path / "a.png"), image)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), image)


def test_grayscale_rgba_and_palette_files(tmp_path):
    gray = rng_image()[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), np.stack([gray] * 3, axis=2))
    rgba = np.random.default_rng(1).integers(0, 256, (30, 20, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgba[:, :, 2::-1])
    Image.fromarray(rgba[:, :, :3]).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").shape == (30, 20, 3)


def test_16_bit_files_are_scaled_to_8_bits(tmp_path):
    deep = np.random.default_rng(2).integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), deep)
    cv2.imwrite(str(tmp_path / "g16.png"), deep[:, :, 0])
    np.testing.assert_array_equal(load_image(tmp_path / "c16.png"), (deep >> 8).astype(np.uint8))
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png")[:, :, 1], (deep[:, :, 0] >> 8).astype(np.uint8))


def test_cmyk_jpeg_matches_opencvs_decoding(tmp_path):
    cmyk = np.random.default_rng(3).integers(0, 256, (32, 48, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=95)
    ours, reference = load_image(tmp_path / "c.jpg"), cv2.imread(str(tmp_path / "c.jpg"))
    assert ours.shape == (32, 48, 3) and np.abs(ours.astype(int) - reference).max() <= 2


def test_exif_rotation_is_applied_like_cv2_imread(tmp_path):
    image = rng_image(20, 50)
    pil = Image.fromarray(image[:, :, ::-1])
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    pil.save(tmp_path / "r.jpg", exif=exif, quality=95)
    ours, reference = load_image(tmp_path / "r.jpg"), cv2.imread(str(tmp_path / "r.jpg"))
    assert ours.shape == reference.shape == (50, 20, 3)


@pytest.mark.parametrize("array", [
    np.full((40, 60), 7, np.uint8), np.full((40, 60, 1), 7, np.uint8), np.full((40, 60, 4), 7, np.uint8),
    np.full((40, 60, 3), 7 * 257, np.uint16), np.full((40, 60, 3), 7.2, np.float64),
])
def test_arrays_are_converted_to_bgr_uint8(array):
    out = load_image(array)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8 and (out == 7).all() and out.flags.c_contiguous


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3000), (3000, 2), (1, 400)])
def test_tiny_and_extreme_images_run_through_the_segmenter(small_onnx, small_ckpt, h, w):
    from csrinfer import Segmenter

    image = rng_image(h, w, seed=h + w)
    for model in (small_onnx, small_ckpt):
        inst = Segmenter(model).predict(image)
        assert inst.masks.shape == (len(inst), h, w) and inst.boxes.shape == (len(inst), 4)
