"""Configs as data: YAML files under ``models/`` read into these dataclasses.

Every field has the paper's value as its default (design.md §1), so ``Config()`` is the
paper model (ResNet-50, CSR width 256, COCO's 80 classes) and a YAML file only states what
differs. Configs are read at the edges (``build_model``, the CLI); the rest of the package
takes plain arguments.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from csrinfer.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from csrinfer.errors import ConfigError, first_line

# ImageNet statistics, RGB 0-255, as torchvision and mmdetection normalise ResNet inputs.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

ARCHS = ("csr_d2s", "solov2")
FPN_EXTRA = ("maxpool", "on_input", "on_lateral", "on_output")


@dataclass
class ModelConfig:
    """The network (paper §III, design.md §1).

    ``arch`` picks the family: "csr_d2s" (the paper's network; its neck fuses one stride-8 map)
    or "solov2" (mmdetection's SOLOv2: FPN P2-P6, each grid from its own level, a stride-4 mask
    branch; docs/mmdet.md). The fields marked "csr_d2s" are read by that family only, those marked
    "solov2" by the other; the rest mean the same in both.
    """

    arch: str = "csr_d2s"  # "csr_d2s" or "solov2"
    backbone: str = "resnet50"  # any torchvision ResNet: resnet18/34/50/101
    pretrained: bool = False  # ImageNet weights through torchvision's weights API, on request
    frozen_stages: int = 1  # stem + layer1 frozen, like mmdet's frozen_stages=1
    norm_eval: bool = True  # backbone BatchNorm statistics frozen
    neck_channels: int = 256  # W of the laterals and the fused stride-8 feature (solov2: FPN width)
    csr: bool = True  # csr_d2s: Cross-Scale Reweighting on/off (Table II)
    csr_channels: int = 256  # csr_d2s: "#channels" of Table III
    d2s: bool = True  # csr_d2s: Depth-to-Space fusion on/off (off: FPN nearest upsampling + sum)
    base_channels: int = 64  # solov2: width of the ResNet stem (mmdetection's ResNet base_channels)
    # solov2: how the FPN makes P6: "maxpool" (mmdetection's add_extra_convs=False) or a stride-2
    # 3x3 conv "on_input" (C5), "on_lateral" or "on_output" (P5)
    fpn_extra: str = "maxpool"
    num_classes: int = 80
    head_channels: int = 256  # kernel and category branches
    head_convs: int = 4
    mask_channels: int = 128  # mask branch
    kernel_dim: int = 256  # E, the dynamic 1x1 kernel length (= the mask features' channels)
    norm_groups: int = 32  # GroupNorm groups in the head
    num_grids: list[int] = field(default_factory=lambda: [40, 36, 24, 16, 12])
    scale_ranges: list[list[int]] = field(
        default_factory=lambda: [[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]]
    )
    # Small-mask filter, per grid, in pixels of the network *input* (padded image): a candidate
    # is kept when its binary mask covers more than this area. SOLOv2 drops masks with no more
    # pixels than their level's stride (8, 8, 16, 32, 32) on its stride-4 mask branch, i.e.
    # 16 x stride input pixels; our masks are stride-8, so the filter counts mask pixels x 64.
    min_mask_input_area: list[int] = field(default_factory=lambda: [128, 128, 256, 512, 512])

    @property
    def mask_stride(self) -> int:
        """Stride of the mask features and of the exported masks: 8 (csr_d2s) or 4 (solov2)."""
        return 4 if self.arch == "solov2" else 8


@dataclass
class InputConfig:
    """Pre-processing: COCO 1x resize, ImageNet normalisation inside the network."""

    short_side: int = 800
    max_size: int = 1333
    size_divisor: int = 32
    # Static input of exported graphs, H x W (1344x800 in the paper's W x H words).
    export_size: list[int] = field(default_factory=lambda: [800, 1344])
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


@dataclass
class InferenceConfig:
    """SOLOv2's test settings (mmdet 3.3 solov2_r50_fpn_1x_coco)."""

    score_thr: float = 0.1
    nms_pre: int = 500
    mask_thr: float = 0.5
    nms_kernel: str = "gaussian"  # or "linear"
    nms_sigma: float = 2.0
    filter_thr: float = 0.05
    max_per_img: int = 100


@dataclass
class TrainConfig:
    """Paper §IV: AdamW 1e-4, wd 0.05, 12 epochs, x0.1 at 8 and 11, batch 4."""

    epochs: int = 12
    milestones: list[int] = field(default_factory=lambda: [8, 11])
    gamma: float = 0.1
    lr: float = 1e-4
    base_batch_size: int = 4  # the lr above is for this total batch; scaled linearly
    batch_size: int = 2  # per process
    weight_decay: float = 0.05
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    grad_clip: float = 35.0  # max L2 norm; 0 disables
    amp: bool = True  # fp16 on CUDA, bf16 on CPUs with native bf16 (train.loop.autocast_dtype)
    # Eq. 6 weights: alpha * category + beta * dice + gamma * focal (masks)
    loss_cls: float = 1.0
    loss_dice: float = 2.0
    loss_focal: float = 3.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    pos_scale: float = 0.2  # SOLO centre region
    # Backbone warm-up on the training set's object crops before the detector trains, where no
    # ImageNet weights are used (csrinfer.train.pretrain); 0: none, as the paper.
    crop_pretrain_steps: int = 0
    # Data
    short_side_range: list[int] = field(default_factory=lambda: [800, 800])
    flip: float = 0.5
    num_workers: int = 2
    checkpoint_every: int = 1000  # iterations; a checkpoint is also written every epoch
    log_every: int = 20
    seed: int = 0


@dataclass
class Config:
    name: str = "csr_d2s_r50_coco"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Class names; `None` in YAML (or the word "coco") means COCO's 80 classes.
    classes: list[str] = field(default_factory=lambda: list(COCO_CLASSES))
    # The dataset category id of each class: the `category_id` of COCO results files. `None`
    # means COCO's ids (1..90 with gaps) for COCO's classes, else 1..N. Training sets them from
    # the dataset, so a checkpoint writes its own dataset's ids. Filled when the config is made:
    # code that replaces `classes` afterwards sets these too (as training does).
    category_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if len(self.classes) != self.model.num_classes:
            raise ConfigError(
                f"config '{self.name}' lists {len(self.classes)} class names but "
                f"model.num_classes is {self.model.num_classes}"
            )
        if self.category_ids is None:
            coco = tuple(self.classes) == COCO_CLASSES
            self.category_ids = list(COCO_CATEGORY_IDS) if coco else list(range(1, len(self.classes) + 1))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict, where: str):
    """Dataclass from a dict, refusing unknown keys and wrong types with one sentence."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}{_did_you_mean(unknown, names)}; "
                          f"known keys are {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{where}.{key}")
        else:
            kwargs[key] = _check_type(value, hint, f"{where}.{key}")
    return cls(**kwargs)


def _did_you_mean(unknown: list, names: set[str]) -> str:
    """' (did you mean 'backbone'?)' for the unknown keys that look like a typo of a known one."""
    import difflib

    matches = {key: difflib.get_close_matches(str(key), sorted(names), n=1, cutoff=0.7) for key in unknown}
    guesses = {key: found[0] for key, found in matches.items() if found}
    if not guesses:
        return ""
    if len(unknown) == 1:
        return f" (did you mean '{guesses[unknown[0]]}'?)"
    return " (did you mean " + ", ".join(f"'{guess}' for '{key}'" for key, guess in guesses.items()) + "?)"


def _check_type(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # `X | None`
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _check_type(value, hint, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint) or (typing.Any,)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def config_from_dict(data: dict, where: str = "config") -> Config:
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of sections (model:, input:, train:, ...), "
                          f"not a {type(data).__name__}")
    data = dict(data or {})
    _read_legacy_keys(data)
    classes = data.get("classes")
    if classes is None or classes == "coco":
        data["classes"] = list(COCO_CLASSES)
    try:
        cfg = _build(Config, data, where)
    except TypeError as e:  # a dataclass refusing its arguments
        raise ConfigError(f"{where} is not a valid config: {e}") from None
    check_values(cfg, where)
    return cfg


def _read_legacy_keys(data: dict) -> None:
    """Configs written before issue 20 (older YAML files and checkpoints) name the small-mask
    filter by SOLOv2's level strides, ``model.grid_strides``; the input area SOLOv2 means by a
    stride s is 16 x s (s pixels of its stride-4 masks)."""
    model = data.get("model")
    if isinstance(model, dict) and "grid_strides" in model and "min_mask_input_area" not in model:
        model = dict(model)
        strides = model.pop("grid_strides")
        if isinstance(strides, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in strides):
            model["min_mask_input_area"] = [16 * s for s in strides]
        else:
            model["min_mask_input_area"] = strides  # refused by the type check with its name
        data["model"] = model


def check_values(cfg: Config, where: str = "config") -> None:
    """Refuse values the network or the training loop cannot use, naming the field, so that a
    typo in a YAML file is one sentence when it is read rather than a shape error mid-run."""
    m, i, inf, t = cfg.model, cfg.input, cfg.inference, cfg.train
    grids = (len(m.num_grids), len(m.scale_ranges), len(m.min_mask_input_area))
    widths = {"head_channels": m.head_channels, "mask_channels": m.mask_channels, "kernel_dim": m.kernel_dim}
    ids = cfg.category_ids
    rules = [
        (m.arch in ARCHS, f"model.arch must be one of {list(ARCHS)}, got {m.arch!r}"),
        (m.fpn_extra in FPN_EXTRA, f"model.fpn_extra must be one of {list(FPN_EXTRA)}, got {m.fpn_extra!r}"),
        (m.arch != "solov2" or len(m.num_grids) == 5,
         f"model.arch solov2 reads one grid from each FPN level P2-P6: give 5 num_grids, got {len(m.num_grids)}"),
        (m.base_channels >= 1, f"model.base_channels must be at least 1, got {m.base_channels}"),
        (m.num_classes >= 1, f"model.num_classes must be at least 1, got {m.num_classes}"),
        (len(ids) == m.num_classes and len(set(ids)) == len(ids) and min(ids, default=0) >= 0,
         f"category_ids needs {m.num_classes} different non-negative ids, one per class, got {ids}"),
        (grids[0] >= 1 and len(set(grids)) == 1, "model.num_grids, model.scale_ranges and model.min_mask_input_area "
                                                 f"need one entry per grid, got {grids[0]}, {grids[1]} and {grids[2]}"),
        (all(s >= 1 for s in m.num_grids), "model.num_grids must be positive"),
        (all(a >= 0 for a in m.min_mask_input_area), "model.min_mask_input_area must not be negative"),
        (all(len(r) == 2 and 0 <= r[0] < r[1] for r in m.scale_ranges),
         f"model.scale_ranges must be [low, high] pairs with low < high, got {m.scale_ranges}"),
        (m.norm_groups >= 1 and all(w % m.norm_groups == 0 for w in widths.values()),
         f"model.head_channels, mask_channels and kernel_dim ({list(widths.values())}) must be multiples of "
         f"model.norm_groups ({m.norm_groups}) for GroupNorm"),
        (-1 <= m.frozen_stages <= 4, f"model.frozen_stages must be -1 to 4, got {m.frozen_stages}"),
        (i.size_divisor >= 32 and i.size_divisor % 32 == 0,
         f"input.size_divisor must be a multiple of 32 (the backbone's stride), got {i.size_divisor}"),
        (len(i.export_size) == 2 and all(s > 0 and s % i.size_divisor == 0 for s in i.export_size),
         f"input.export_size must be [height, width], multiples of {i.size_divisor}, got {i.export_size}"),
        (len(i.mean) == len(i.std) == 3 and all(s > 0 for s in i.std),
         f"input.mean and input.std need 3 values (R, G, B), std positive; got {i.mean} and {i.std}"),
        (0 < i.short_side <= i.max_size, f"input.short_side ({i.short_side}) must be positive and at most "
                                         f"input.max_size ({i.max_size})"),
        (inf.nms_kernel in ("gaussian", "linear"),
         f"inference.nms_kernel must be 'gaussian' or 'linear', got {inf.nms_kernel!r}"),
        (all(0 <= v <= 1 for v in (inf.score_thr, inf.mask_thr, inf.filter_thr)),
         "inference.score_thr, mask_thr and filter_thr must lie in [0, 1]"),
        (inf.nms_pre >= 1 and inf.max_per_img >= 1, "inference.nms_pre and max_per_img must be at least 1"),
        (t.epochs >= 1 and t.batch_size >= 1 and t.base_batch_size >= 1,
         "train.epochs, batch_size and base_batch_size must be at least 1"),
        (t.milestones == sorted(t.milestones) and all(1 <= e <= t.epochs for e in t.milestones),
         f"train.milestones must be increasing epochs within 1..{t.epochs}, got {t.milestones}"),
        (t.lr > 0 and t.gamma > 0 and t.weight_decay >= 0 and t.grad_clip >= 0,
         "train.lr and gamma must be positive, weight_decay and grad_clip not negative"),
        (t.warmup_iters >= 0 and 0 <= t.warmup_ratio <= 1, "train.warmup_iters must be >= 0 and warmup_ratio in [0, 1]"),
        (len(t.short_side_range) == 2 and 0 < t.short_side_range[0] <= t.short_side_range[1],
         f"train.short_side_range must be [low, high] with 0 < low <= high, got {t.short_side_range}"),
        (0 <= t.flip <= 1, f"train.flip is a probability in [0, 1], got {t.flip}"),
        (min(t.num_workers, t.crop_pretrain_steps) >= 0 and min(t.checkpoint_every, t.log_every) >= 1,
         "train.num_workers and crop_pretrain_steps must be >= 0, checkpoint_every and log_every >= 1"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"{where}: {message}")


def require_config(cfg) -> Config:
    """``cfg`` when it is a :class:`Config`; a dict or a YAML path is one sentence pointing to
    :func:`load_config`."""
    if not isinstance(cfg, Config):
        raise ConfigError(f"cfg must be a csrinfer Config (csrinfer.config.load_config), not a {type(cfg).__name__}")
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    """Read a YAML model config; every problem is one :class:`ConfigError` sentence."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid YAML ({first_line(e)})") from None
    cfg = config_from_dict(data or {}, where=str(path))
    if not (data or {}).get("name"):
        cfg.name = path.stem
    return cfg
