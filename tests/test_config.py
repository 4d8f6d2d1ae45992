"""Configs are YAML read into dataclasses; every mistake is one clear sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from csrinfer.config import Config, load_config
from csrinfer.errors import ConfigError

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_paper_config_is_the_default_config():
    cfg = load_config(MODELS / "csr_d2s_r50_coco.yaml")
    assert cfg.to_dict() == Config().to_dict()


@pytest.mark.parametrize("name,csr,d2s,width", [
    ("fpn_r50_coco", False, False, 256), ("csr_r50_coco", True, False, 256), ("d2s_r50_coco", False, True, 256),
    ("csr128_d2s_r50_coco", True, True, 128), ("csr512_d2s_r50_coco", True, True, 512),
    ("csr1024_d2s_r50_coco", True, True, 1024),
])
def test_ablation_configs(name, csr, d2s, width):
    cfg = load_config(MODELS / f"{name}.yaml")
    assert (cfg.model.csr, cfg.model.d2s, cfg.model.csr_channels) == (csr, d2s, width)
    assert cfg.name == name and len(cfg.classes) == 80


def test_small_config_is_small_and_consistent():
    cfg = load_config(MODELS / "csr_d2s_r18_small.yaml")
    m = cfg.model
    assert m.backbone == "resnet18" and len(cfg.classes) == m.num_classes
    assert len(m.num_grids) == len(m.scale_ranges) == len(m.min_mask_input_area)


def test_the_small_mask_filter_is_solov2s_in_input_pixels():
    # SOLOv2: more pixels than the level's stride (8, 8, 16, 32, 32) on stride-4 masks, each
    # pixel 4 x 4 input pixels: 16 x 8 = 128, 16 x 16 = 256, 16 x 32 = 512.
    assert Config().model.min_mask_input_area == [128, 128, 256, 512, 512]


def test_configs_that_name_the_filter_by_level_strides_still_load(tmp_path):
    # Checkpoints and YAML files written before the key was renamed say `grid_strides`.
    path = tmp_path / "old.yaml"
    path.write_text("model:\n  grid_strides: [8, 8, 16, 32, 32]\n")
    assert load_config(path).model.min_mask_input_area == [128, 128, 256, 512, 512]
    path.write_text("model:\n  grid_strides: [8, fast]\n")
    with pytest.raises(ConfigError, match="min_mask_input_area"):
        load_config(path)


@pytest.mark.parametrize("text,fragment", [
    ("model:\n  bakbone: resnet50\n", "model has unknown key(s) ['bakbone'] (did you mean 'backbone'?); known keys"),
    ("train:\n  epoch: 3\n  lrr: 0.1\n  zzz: 1\n", "unknown key(s) ['epoch', 'lrr', 'zzz'] (did you mean 'epochs' for 'epoch', "
                                                    "'lr' for 'lrr'?)"),
    ("modle:\n  csr: true\n", "bad.yaml has unknown key(s) ['modle'] (did you mean 'model'?)"),
    ("model:\n  xyzzy: 1\n", "model has unknown key(s) ['xyzzy']; known keys"),
    ("model:\n  csr: maybe\n", "model.csr must be true or false"),
    ("model:\n  num_classes: 3\n", "lists 80 class names but model.num_classes is 3"),
    ("train:\n  lr: fast\n", "train.lr must be a number"),
    ("model: [1, 2]\n", "must be a mapping"),
    ("- model\n- input\n", "must be a mapping of sections (model:, input:, train:, ...), not a list"),
    ("model: {csr: true\n", "is not valid YAML"),
    # values: refused when read, not as a shape error mid-run
    ("model:\n  num_grids: [40, 36, 24, 16]\n", "need one entry per grid, got 4, 5 and 5"),
    ("model:\n  min_mask_input_area: [128, 128, 256, 512, -1]\n", "min_mask_input_area must not be negative"),
    ("model:\n  head_channels: 100\n", "must be multiples of model.norm_groups (32)"),
    ("model:\n  scale_ranges: [[96, 1], [48, 192], [96, 384], [192, 768], [384, 2048]]\n", "low < high"),
    ("input:\n  size_divisor: 16\n", "input.size_divisor must be a multiple of 32"),
    ("input:\n  export_size: [801, 1344]\n", "input.export_size must be [height, width], multiples of 32"),
    ("input:\n  std: [58.4, 0, 57.4]\n", "std positive"),
    ("inference:\n  nms_kernel: gauss\n", "inference.nms_kernel must be 'gaussian' or 'linear'"),
    ("inference:\n  mask_thr: 50\n", "must lie in [0, 1]"),
    ("train:\n  batch_size: 0\n", "batch_size and base_batch_size must be at least 1"),
    ("train:\n  milestones: [11, 8]\n", "train.milestones must be increasing epochs within 1..12"),
    ("train:\n  short_side_range: [800, 640]\n", "0 < low <= high"),
    ("train:\n  flip: 2\n", "train.flip is a probability"),
    ("model:\n  num_classes: 2\nclasses: [a, b]\ncategory_ids: [3, 3]\n", "category_ids needs 2 different"),
    ("model:\n  num_classes: 2\nclasses: [a, b]\ncategory_ids: [3]\n", "category_ids needs 2 different"),
    ("model:\n  num_classes: 2\nclasses: [a, b]\ncategory_ids: 3\n", "category_ids must be a list"),
])
def test_bad_configs_say_what_is_wrong(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my_model.yaml"
    path.write_text("model:\n  csr_channels: 128\n")
    assert load_config(path).name == "my_model"


def test_category_ids_are_cocos_for_cocos_classes_else_one_to_n_unless_given(tmp_path):
    """COCO results name categories by the dataset's ids: COCO's run 1..90 with ten gaps."""
    coco = Config()
    gaps = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert coco.category_ids == sorted(set(range(1, 91)) - gaps)
    ids = dict(zip(coco.classes, coco.category_ids))
    assert (ids["person"], ids["backpack"], ids["toothbrush"]) == (1, 27, 90)
    assert load_config(MODELS / "csr_d2s_r18_small.yaml").category_ids == [1, 2, 3, 4]
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  num_classes: 3\nclasses: [mug, cat, person]\ncategory_ids: [3, 7, 12]\n")
    assert load_config(path).category_ids == [3, 7, 12]


# design.md §1, written out here (not read from Config()), so a changed default is caught.
DESIGN_DEFAULTS = {
    # Losses (Eq. 6): 1 x category + 2 x dice + 3 x focal; category focal alpha 0.25, gamma 2
    ("train", "loss_cls"): 1.0, ("train", "loss_dice"): 2.0, ("train", "loss_focal"): 3.0,
    ("train", "focal_alpha"): 0.25, ("train", "focal_gamma"): 2.0,
    # Inference: SOLOv2's test settings
    ("inference", "score_thr"): 0.1, ("inference", "nms_pre"): 500, ("inference", "mask_thr"): 0.5,
    ("inference", "nms_kernel"): "gaussian", ("inference", "nms_sigma"): 2.0, ("inference", "filter_thr"): 0.05,
    ("inference", "max_per_img"): 100,
    # Training (paper §IV): AdamW lr 1e-4, wd 0.05, 12 epochs, x0.1 at 8 and 11, total batch 4
    ("train", "lr"): 1e-4, ("train", "weight_decay"): 0.05, ("train", "epochs"): 12, ("train", "milestones"): [8, 11],
    ("train", "gamma"): 0.1, ("train", "base_batch_size"): 4,
    # Input: short side 800, long side at most 1333, padded to a multiple of 32, ImageNet statistics
    ("input", "short_side"): 800, ("input", "max_size"): 1333, ("input", "size_divisor"): 32,
    ("input", "mean"): [123.675, 116.28, 103.53], ("input", "std"): [58.395, 57.12, 57.375],
    # Network: ResNet-50 (frozen stem), W = 256, CSR 256, D2S, SOLOv2 head on five grids
    ("model", "backbone"): "resnet50", ("model", "frozen_stages"): 1, ("model", "neck_channels"): 256,
    ("model", "csr"): True, ("model", "csr_channels"): 256, ("model", "d2s"): True, ("model", "num_classes"): 80,
    ("model", "head_channels"): 256, ("model", "head_convs"): 4, ("model", "mask_channels"): 128,
    ("model", "kernel_dim"): 256, ("model", "num_grids"): [40, 36, 24, 16, 12],
}


@pytest.mark.parametrize("source", ["Config()", "csr_d2s_r50_coco.yaml"])
def test_the_paper_config_holds_the_design_values(source):
    cfg = Config() if source == "Config()" else load_config(MODELS / source)
    got = {(section, key): getattr(getattr(cfg, section), key) for section, key in DESIGN_DEFAULTS}
    wrong = {k: (got[k], v) for k, v in DESIGN_DEFAULTS.items() if got[k] != v or type(got[k]) is not type(v)}
    assert not wrong, f"(section, key): (config, design.md) {wrong}"
    assert len(cfg.classes) == 80 and cfg.classes[0] == "person"


def test_the_optimizer_of_the_paper_config_is_adamw_with_the_design_lr_and_weight_decay():
    import torch

    from csrinfer.train.schedule import build_optimizer

    tc = Config().train
    opt = build_optimizer(torch.nn.Linear(3, 2), tc.lr, tc.weight_decay)
    assert type(opt) is torch.optim.AdamW
    assert {g["lr"] for g in opt.param_groups} == {1e-4}
    assert max(g["weight_decay"] for g in opt.param_groups) == 0.05
