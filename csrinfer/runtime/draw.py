"""Drawing ``Instances`` on an image: coloured masks with outlines, boxes, class names, scores.

Legible on any image: masks are blended (the picture stays visible) and outlined in their
full colour, labels sit on a filled tag whose text is black or white, whichever contrasts,
and line widths and font size scale with the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from csrinfer.image_io import load_image
from csrinfer.runtime.instances import Instances

# 20 distinct, saturated colours (BGR), one per class index modulo 20.
PALETTE = np.array([
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
], dtype=np.uint8)


def class_color(label: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[int(label) % len(PALETTE)])


# Instances scoring below this are not drawn (the model keeps many low-scored instances, as
# SOLOv2 does for evaluation; drawn, they bury the picture under stacked labels).
DRAW_SCORE_THR = 0.3


def draw_instances(image, instances: Instances, alpha: float = 0.45, show_boxes: bool = True,
                   show_labels: bool = True, score_thr: float = DRAW_SCORE_THR) -> np.ndarray:
    """A copy of ``image`` (path or uint8 BGR [H, W, 3]) with ``instances`` drawn on it.

    Only instances scoring at least ``score_thr`` (default 0.3; 0 draws all) are drawn, and
    only their masks are made, each inside its box. Returns uint8 BGR [H, W, 3].
    Lower-scored instances are drawn first, so the best ones stay on top.
    """
    from csrinfer.errors import ConfigError, ImageError

    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha is the masks' opacity in [0, 1], got {alpha}")
    if not 0 <= score_thr <= 1:
        raise ConfigError(f"score_thr is a score in [0, 1], got {score_thr}")
    out = load_image(image).copy()
    if len(instances) and out.shape[:2] != instances.image_size:
        raise ImageError(f"image is {out.shape[0]}x{out.shape[1]} but the instances belong to a "
                         f"{instances.image_size[0]}x{instances.image_size[1]} image")
    h, w = out.shape[:2]
    line = max(1, round((h + w) / 2 * 0.003))
    font_scale = max(0.35, line / 3)
    instances = instances[np.flatnonzero(instances.scores >= score_thr)]
    order = np.argsort(instances.scores, kind="stable")  # ascending: best drawn last
    crops = instances.crops()
    for i in order:
        color = class_color(instances.labels[i])
        x1, y1 = (int(round(v)) for v in instances.boxes[i][:2])
        _blend_mask(out, crops[i], (x1, y1), color, alpha, line)
    names, taken = instances.names, []
    for i in order[::-1]:  # best first, so they get the tag spots closest to their boxes
        color = class_color(instances.labels[i])
        x1, y1, x2, y2 = (int(round(v)) for v in instances.boxes[i])
        if show_boxes and x2 > x1 and y2 > y1:
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, line, cv2.LINE_AA)
        if show_labels:
            _tag(out, f"{names[i]} {instances.scores[i]:.2f}", (x1, y1), color, font_scale, line, taken)
    return out


def _blend_mask(out: np.ndarray, crop: np.ndarray, corner: tuple[int, int], color, alpha: float,
                line: int) -> None:
    """Blend ``color`` into ``out`` where the mask (``crop``, its box from ``corner``) is set and outline it."""
    if crop.size == 0 or not crop.any():
        return
    x1, y1 = corner
    region = out[y1:y1 + crop.shape[0], x1:x1 + crop.shape[1]]
    region[crop] = (region[crop] * (1 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(region, contours, -1, color, max(1, line // 2), cv2.LINE_AA)


def _tag(out: np.ndarray, text: str, corner: tuple[int, int], color, font_scale: float, line: int,
         taken: list) -> None:
    """A filled label above the box's top-left corner (inside the image when there is no room),
    moved down past the tags already drawn (``taken``: their rectangles) so none hides another."""
    thickness = max(1, line // 2)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    h, w = out.shape[:2]
    tag_h = th + base + 2
    x = min(max(corner[0], 0), max(w - tw - 2, 0))
    y = corner[1] - tag_h if corner[1] - tag_h >= 0 else min(corner[1], max(h - tag_h, 0))
    for _ in range(len(taken)):
        hit = next((r for r in taken if x < r[2] and r[0] < x + tw + 2 and y < r[3] and r[1] < y + tag_h), None)
        if hit is None or hit[3] + tag_h > h:
            break
        y = hit[3]
    taken.append((x, y, x + tw + 2, y + tag_h))
    cv2.rectangle(out, (x, y), (x + tw + 2, y + tag_h), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(out, text, (x + 1, y + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color, thickness, cv2.LINE_AA)
