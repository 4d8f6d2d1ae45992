"""The synthetic shapes dataset: COCO-format, deterministic, visible parts only."""

from __future__ import annotations

import hashlib

import pytest

from csrinfer.data.coco import CocoInstanceDataset, find_split
from csrinfer.data.synthetic import CLASSES, write_synthetic
from csrinfer.errors import DatasetError


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = write_synthetic(tmp_path / "a", n_train=3, n_val=1, seed=5)
    b = write_synthetic(tmp_path / "b", n_train=3, n_val=1, seed=5)
    c = write_synthetic(tmp_path / "c", n_train=3, n_val=1, seed=6)
    assert _digest(a) == _digest(b) != _digest(c)


def test_it_is_a_coco_dataset_of_the_four_shapes_with_disjoint_visible_masks(tmp_path):
    root = write_synthetic(tmp_path / "shapes", n_train=6, n_val=2, seed=0)
    ds = CocoInstanceDataset(*find_split(root, "train"))
    assert ds.class_names == list(CLASSES) and len(ds) == 6
    assert ds.stats["instances"] >= 6 and not any(ds.stats["skipped"].values())
    assert len(CocoInstanceDataset(*find_split(root, "val"))) == 2
    labels = []
    for i in range(len(ds)):
        _, masks, lab, _ = ds.load(i)
        assert masks.any(axis=(1, 2)).all()
        assert masks.sum(axis=0).max() <= 1  # occlusion: each pixel belongs to one object at most
        labels += lab.tolist()
    assert len(set(labels)) >= 3


def test_refuses_a_non_empty_folder_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        write_synthetic(tmp_path / "taken", n_train=1)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["file"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
