"""SOLOv2 target assignment: hand-placed objects land on the cells worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrinfer.train.targets import IGNORE, batch_targets, centre_cells, image_targets

C = 4  # classes; label C is background


def _box_mask(y1, y2, x1, x2, size=256):
    m = torch.zeros((size, size), dtype=torch.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def test_a_hand_placed_box_lands_on_the_expected_cells():
    # 256 x 256 input, S = 8: cells of 32 px. Box x 70..130 (w 60), y 100..140 (h 40):
    # sqrt(w h) = 49 -> first range only. Centre (y 120, x 100) -> cell (3, 3).
    # Centre region: half-extents 0.2 * 20 = 4 (y), 0.2 * 30 = 6 (x) -> y 116..124 -> row 3;
    # x 94..106 -> columns 2..3.
    masks = _box_mask(100, 140, 70, 130)[None]
    cate, pos_cell, pos_inst, soft, weights = image_targets(masks, torch.tensor([2]), None, C, [8, 4],
                                                            [[1, 64], [128, 512]], pos_scale=0.2)
    expected = np.full((8, 8), C)
    expected[3, 2:4] = 2
    np.testing.assert_array_equal(cate[0].numpy(), expected)
    assert (cate[1] == C).all()  # out of the second grid's range
    assert pos_cell.tolist() == [3 * 8 + 2, 3 * 8 + 3] and pos_inst.tolist() == [0, 0]


def test_the_centre_region_is_clipped_to_the_cells_next_to_the_centre_cell():
    # pos_scale 1: the region is the whole box (x 10..250, y 40..200 on a 16-grid of 16 px cells)
    # but only the 3 x 3 cells around the centre cell (row 7, column 8) are positive.
    masks = _box_mask(40, 200, 10, 250)[None]
    cate, *_ = image_targets(masks, torch.tensor([1]), None, C, [16], [[1, 512]], pos_scale=1.0)
    rows, cols = np.nonzero(cate[0].numpy() == 1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 8, 7, 9)


def test_centre_cells_stay_inside_the_grid():
    assert centre_cells(1.0, 254.0, 50.0, 50.0, 256, 256, 8) == (0, 1, 6, 7)


def test_overlapping_scale_ranges_assign_an_object_to_both_grids():
    masks = _box_mask(100, 160, 100, 160)[None]  # sqrt(w h) = 60
    cate, pos_cell, *_ = image_targets(masks, torch.tensor([0]), None, C, [8, 4], [[1, 64], [48, 512]])
    assert (cate[0] == 0).any() and (cate[1] == 0).any()
    assert (pos_cell >= 64).any() and (pos_cell < 64).any()  # cells of grid 2 are numbered after grid 1's


def test_a_shared_cell_takes_the_later_class_and_trains_on_both_objects():
    # Both boxes have their centre of mass at (119.5, 119.5) -> cell (3, 3) of 32-px cells, and
    # centre regions (half-extents 4 and 3.2 px) inside it: each claims exactly cell 27.
    a = _box_mask(100, 140, 100, 140)
    b = _box_mask(104, 136, 104, 136)
    cate, pos_cell, pos_inst, *_ = image_targets(torch.stack([a, b]), torch.tensor([0, 3]), None, C, [8],
                                                 [[1, 512]])
    expected = np.full((8, 8), C)
    expected[3, 3] = 3  # the class of the later object, as mmdetection
    np.testing.assert_array_equal(cate[0].numpy(), expected)
    # ...but the cell's kernel learns both masks: one positive per (cell, object) pair.
    assert sorted(zip(pos_cell.tolist(), pos_inst.tolist())) == [(27, 0), (27, 1)]


def test_the_centre_of_mass_is_taken_on_pixel_indices():
    # Rows 16..47 and columns 96..159: on pixel indices the centre of mass is (31.5, 127.5), in
    # cell (0, 3) of a grid of 32-px cells; on pixel centres (+0.5) it would be (32, 128), in
    # cell (1, 4). A tiny centre region (pos_scale 0.01: half-extents 0.16 and 0.32 px) stays
    # inside the centre cell.
    masks = _box_mask(16, 48, 96, 160)[None]
    cate, pos_cell, pos_inst, *_ = image_targets(masks, torch.tensor([1]), None, C, [8], [[1, 512]],
                                                 pos_scale=0.01)
    expected = np.full((8, 8), C)
    expected[0, 3] = 1
    np.testing.assert_array_equal(cate[0].numpy(), expected)
    assert pos_cell.tolist() == [3] and pos_inst.tolist() == [0]


def test_batch_targets_count_pairs_and_distinct_cells():
    a, b = _box_mask(100, 140, 100, 140), _box_mask(104, 136, 104, 136)  # both claim cell 27 only
    c = _box_mask(4, 44, 4, 44)  # centre (23.5, 23.5), half-extents 4: y and x 19.5..27.5 -> cell 0 only
    t = batch_targets([torch.stack([a, b]), c[None]], [torch.tensor([0, 3]), torch.tensor([1])],
                      [None, None], C, [8], [[1, 512]])
    assert t.num_pos == 3 and t.num_pos_cells == 2
    assert sorted(zip(t.pos_image.tolist(), t.pos_cell.tolist(), t.pos_instance.tolist())) == [
        (0, 27, 0), (0, 27, 1), (1, 0, 2)]


def test_crowd_cells_are_ignored_but_positives_are_not():
    masks = _box_mask(100, 140, 70, 130)[None]
    crowd = torch.zeros((256, 256), dtype=torch.bool)
    crowd[:, :128] = True  # left half of the image
    cate, _, _, soft, weights = image_targets(masks, torch.tensor([2]), crowd, C, [8], [[1, 512]])
    grid = cate[0]
    assert (grid[:, :4][grid[:, :4] != 2] == IGNORE).all() and (grid[:, 4:] == C).all()
    assert (grid == 2).sum() == 2
    # mask weights: crowd pixels count only inside the object's own mask
    w = weights[0]
    assert (w[:, 16:] == 1).all() and (w[soft[0] >= 0.5] == 1).all() and (w[:, :16][soft[0][:, :16] < 0.5] == 0).all()


def test_mask_targets_are_the_covered_fraction_of_each_8x8_block():
    rng = np.random.default_rng(0)
    mask = torch.from_numpy((rng.random((64, 96)) < 0.4).astype(np.uint8))
    _, _, _, soft, _ = image_targets(mask[None], torch.tensor([0]), None, C, [4], [[1, 512]])
    expected = mask.numpy().reshape(8, 8, 12, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(soft[0].numpy(), expected, atol=1e-6)


def test_batch_targets_index_images_and_instances():
    m1 = torch.stack([_box_mask(10, 60, 10, 60), _box_mask(150, 200, 150, 200)])
    m2 = torch.zeros((0, 256, 256), dtype=torch.uint8)
    m3 = _box_mask(100, 150, 20, 70)[None]
    t = batch_targets([m1, m2, m3], [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.int64), torch.tensor([3])],
                      [None, None, None], C, [8], [[1, 512]])
    assert t.cate_labels[0].shape == (3, 8, 8) and t.masks.shape == (3, 32, 32)
    assert set(t.pos_image.tolist()) == {0, 2}
    assert set(t.pos_instance[t.pos_image == 2].tolist()) == {2}  # the third object of the batch
    assert (t.cate_labels[0][1] == C).all()


def _triangle(size=256):
    """Lower-left right triangle in the box y 40..232, x 24..216 (192 x 192)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy >= 40) & (yy < 232) & (xx >= 24) & (xx < 216) & (xx - 24 <= yy - 40)


def _l_shape(size=256):
    """An L: a bar x 24..72, y 40..232 and a bar y 184..232, x 24..216 (box 192 x 192)."""
    m = np.zeros((size, size), bool)
    m[40:232, 24:72] = True
    m[184:232, 24:216] = True
    return m


@pytest.mark.parametrize("shape,grid,centre_cell,rows,cols", [
    # Triangle: centre of mass (y 167.3, x 87.7), box centre (136, 120). S = 16 (16-px cells):
    # centre cell (10, 5), two cells from the box centre's (8, 7). Half-extents 0.2 * 96 = 19.2:
    # y 148.1..186.5 -> rows 9..11, x 68.5..106.9 -> columns 4..6.
    (_triangle, 16, (10, 5), (9, 11), (4, 6)),
    # L: centre of mass (y 166.4, x 88.6), box centre (136, 120). S = 8 (32-px cells): centre
    # cell (5, 2), one cell from the box centre's (4, 3). y 147.2..185.6 -> rows 4..5,
    # x 69.4..107.8 -> columns 2..3.
    (_l_shape, 8, (5, 2), (4, 5), (2, 3)),
])
def test_the_centre_region_is_centred_on_the_centre_of_mass_not_the_box(shape, grid, centre_cell, rows, cols):
    mask = shape()
    ys, xs = np.nonzero(mask)  # the centre of mass, independently: mean of the pixel indices
    cy, cx = ys.mean(), xs.mean()
    cell = 256 / grid
    assert (int(cy // cell), int(cx // cell)) == centre_cell
    box_cell = (int((ys.min() + ys.max() + 1) / 2 // cell), int((xs.min() + xs.max() + 1) / 2 // cell))
    assert abs(box_cell[0] - centre_cell[0]) >= 1 and abs(box_cell[1] - centre_cell[1]) >= 1
    cate, pos_cell, pos_inst, *_ = image_targets(torch.from_numpy(mask.astype(np.uint8))[None], torch.tensor([1]),
                                                 None, C, [grid], [[1, 512]], pos_scale=0.2)
    expected = np.full((grid, grid), C)
    expected[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = 1
    np.testing.assert_array_equal(cate[0].numpy(), expected)
    want_cells = sorted(r * grid + c for r in range(rows[0], rows[1] + 1) for c in range(cols[0], cols[1] + 1))
    assert sorted(pos_cell.tolist()) == want_cells and set(pos_inst.tolist()) == {0}


def test_the_scale_is_the_geometric_mean_of_the_box_sides_not_the_longer_side():
    # Box y 100..116 (h 16), x 30..230 (w 200): sqrt(16 * 200) = 56.6 -> [1, 64] only (the longer
    # side, 200, would put it in [128, 512] only). S = 16 (16-px cells): centre (108, 130) -> cell
    # (6, 8); half-extents 0.2 * 8 = 1.6 (y), 0.2 * 100 = 20 (x): y 106.4..109.6 -> row 6;
    # x 110..150 -> columns 6..9, clipped to 7..9 around the centre cell.
    masks = _box_mask(100, 116, 30, 230)[None]
    cate, pos_cell, pos_inst, *_ = image_targets(masks, torch.tensor([3]), None, C, [16, 8],
                                                 [[1, 64], [128, 512]], pos_scale=0.2)
    expected = np.full((16, 16), C)
    expected[6, 7:10] = 3
    np.testing.assert_array_equal(cate[0].numpy(), expected)
    assert (cate[1] == C).all()
    assert sorted(pos_cell.tolist()) == [6 * 16 + 7, 6 * 16 + 8, 6 * 16 + 9] and pos_inst.tolist() == [0, 0, 0]
