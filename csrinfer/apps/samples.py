"""Images to try a model on when the user gives none (``csrinfer check``, benchmarks).

scikit-image's bundled photos when it is installed (no download), else synthetic images:
smooth colour fields with a few filled shapes, deterministic per seed.
"""

from __future__ import annotations

import cv2
import numpy as np

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def sample_images(count: int = 4) -> list[tuple[str, np.ndarray]]:
    """``count`` (name, uint8 BGR [H, W, 3]) pairs."""
    images = []
    try:
        import skimage.data

        for name in SKIMAGE_PHOTOS[:count]:
            rgb = getattr(skimage.data, name)()
            images.append((name, np.ascontiguousarray(rgb[:, :, ::-1])))
    except Exception:  # scikit-image missing or a photo unavailable: synthetic ones fill in
        images = []
    sizes = [(480, 640), (427, 640), (640, 480), (300, 451)]
    for seed in range(len(images), count):
        h, w = sizes[seed % len(sizes)]
        images.append((f"synthetic{seed}", synthetic_image(seed, h, w)))
    return images


def synthetic_image(seed: int, height: int, width: int, shapes: int = 4) -> np.ndarray:
    """uint8 BGR [H, W, 3]: a smooth random colour field with ``shapes`` filled circles."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(shapes):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(4, max(5, min(height, width) // 3)))
        cv2.circle(image, center, radius, [int(c) for c in rng.integers(0, 256, 3)], -1)
    return image
