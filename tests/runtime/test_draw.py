"""Drawing: masks blended in their class colour, outlines, boxes and a legible label tag."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer.errors import ConfigError, ImageError
from csrinfer.runtime.draw import class_color, draw_instances
from csrinfer.runtime.instances import Instances, masks_to_boxes


def one_square(h=120, w=160, label=1):
    masks = np.zeros((1, h, w), bool)
    masks[0, 50:100, 60:120] = True
    return Instances(masks, np.array([label]), np.array([0.87], np.float32), masks_to_boxes(masks), ("cat", "dog"))


@pytest.mark.parametrize("background", [0, 255, 128])
def test_mask_box_and_tag_are_drawn_and_the_rest_is_untouched(background):
    image = np.full((120, 160, 3), background, np.uint8)
    inst = one_square()
    out = draw_instances(image, inst)
    assert out.shape == image.shape and out.dtype == np.uint8 and (image == background).all()  # input not modified
    color = np.array(class_color(1), float)
    inside = out[70:80, 80:100].reshape(-1, 3).astype(float)
    expected = background * 0.55 + color * 0.45
    assert np.abs(inside - expected).max() <= 1.5  # blended, not painted over
    assert (out[:35] == background).all() and (out[:, :50] == background).all()  # far from mask, box and tag
    tag = out[35:50, 60:120].reshape(-1, 3)  # above the box's top edge (y=50)
    assert (np.abs(tag.astype(int) - color).sum(axis=1) == 0).mean() > 0.3  # filled in the class colour
    text = np.array((0, 0, 0) if 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2] > 140 else (255, 255, 255))
    assert (np.abs(tag.astype(int) - text).sum(axis=1) == 0).any()  # contrasting text on it


def test_no_instances_gives_an_unchanged_copy():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = draw_instances(image, Instances.empty(40, 50))
    assert out is not image and (out == image).all()


def test_an_image_of_another_size_is_refused():
    with pytest.raises(ImageError, match="belong to a 120x160 image"):
        draw_instances(np.zeros((100, 100, 3), np.uint8), one_square())


@pytest.mark.parametrize("alpha", [2, -0.1])
def test_an_opacity_outside_0_1_is_refused(alpha):
    with pytest.raises(ConfigError, match=f"alpha is the masks' opacity in \\[0, 1\\], got {alpha}"):
        draw_instances(np.zeros((120, 160, 3), np.uint8), one_square(), alpha=alpha)


def test_classes_get_distinct_colours():
    assert len({class_color(i) for i in range(20)}) == 20 and class_color(3) == class_color(23)


def test_instances_below_the_display_threshold_are_not_drawn():
    masks = np.zeros((1, 40, 60), bool)
    masks[0, 10:30, 20:50] = True
    image = np.full((40, 60, 3), 128, np.uint8)
    faint = Instances(masks, np.array([0]), np.array([0.2], np.float32), masks_to_boxes(masks), ("cat",))
    np.testing.assert_array_equal(draw_instances(image, faint), image)  # 0.2 < the default 0.3
    assert (draw_instances(image, faint, score_thr=0.1)[15, 30] != 128).any()
