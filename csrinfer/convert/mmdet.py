"""mmdetection SOLOv2 checkpoint -> csrinfer checkpoint (``csrinfer convert --from mmdet``).

mmdetection's ``SOLOv2`` (backbone ``ResNet``, neck ``FPN``, ``SOLOV2Head``) and csrinfer's
SOLOv2 family (``model.arch: solov2``) compute the same thing layer for layer; only the module
names differ. :func:`mmdet_key` renames one parameter, and :func:`convert_mmdet` refuses a file
with a parameter it has no place for (a DCN head, another neck) or without one the config needs,
naming the first, so a checkpoint never loads half-way. Class names come from the checkpoint's
``meta.dataset_meta.classes`` where mmdetection recorded them, else from the config; COCO's 80
classes carry COCO's category ids.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from csrinfer.config import Config, load_config
from csrinfer.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from csrinfer.errors import CheckpointError, ConfigError, first_line

# (mmdetection pattern, csrinfer replacement); the first match wins
_RULES = [
    (r"backbone\.(.+)", r"backbone.\1"),  # torchvision's and mmdetection's ResNet names agree
    (r"neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)", r"neck.lateral_convs.\1.\2"),
    (r"mask_head\.kernel_convs\.(\d+)\.conv\.weight", r"head.kernel_convs.\1.0.weight"),
    (r"mask_head\.kernel_convs\.(\d+)\.gn\.(weight|bias)", r"head.kernel_convs.\1.1.\2"),
    (r"mask_head\.cls_convs\.(\d+)\.conv\.weight", r"head.cate_convs.\1.0.weight"),
    (r"mask_head\.cls_convs\.(\d+)\.gn\.(weight|bias)", r"head.cate_convs.\1.1.\2"),
    (r"mask_head\.conv_kernel\.(weight|bias)", r"head.kernel_out.\1"),
    (r"mask_head\.conv_cls\.(weight|bias)", r"head.cate_out.\1"),
    (r"mask_head\.mask_feature_head\.conv_pred\.conv\.weight", r"head.mask_features.out.0.weight"),
    (r"mask_head\.mask_feature_head\.conv_pred\.gn\.(weight|bias)", r"head.mask_features.out.1.\1"),
]
_FPN_CONV = re.compile(r"neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)")
# level i, j-th conv: csrinfer's level is a Sequential of (conv block, upsample) pairs
_MASK_LEVEL = re.compile(r"mask_head\.mask_feature_head\.convs_all_levels\.(\d+)\.conv(\d+)\.(conv|gn)\.(weight|bias)")


def mmdet_key(key: str, num_levels: int = 4) -> str | None:
    """csrinfer's name for mmdetection's parameter ``key``, or None for a name it does not know.

    ``num_levels``: FPN input levels; mmdetection's ``fpn_convs`` past them are the extra levels.
    """
    m = _FPN_CONV.fullmatch(key)
    if m:
        i = int(m.group(1))
        return f"neck.output_convs.{i}.{m.group(2)}" if i < num_levels else f"neck.extra_convs.{i - num_levels}.{m.group(2)}"
    m = _MASK_LEVEL.fullmatch(key)
    if m:
        level, j, part, name = m.groups()
        if part == "conv" and name == "bias":
            return None  # the branch has GroupNorm, so its convolutions have no bias
        return f"head.mask_features.levels.{level}.{2 * int(j)}.{0 if part == 'conv' else 1}.{name}"
    for pattern, replacement in _RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def read_mmdet_checkpoint(path: str | os.PathLike, trust: bool = False) -> dict:
    """The raw dict of an mmdetection ``.pth``; refuses a file that is not one in one sentence.

    ``trust``: unpickle any Python object the file holds (only for a file from a trusted source;
    some older model-zoo files keep NumPy objects in their ``meta``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"mmdetection checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not the zip archive torch.save writes)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds Python objects that a weights-only load refuses to unpickle; "
                              "if you trust the file, pass --trust-pickle") from None
    except Exception as e:
        raise CheckpointError(f"{path} is corrupt or not a PyTorch file ({first_line(e, 160)})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not an mmdetection checkpoint (it holds a {type(payload).__name__})")
    return payload


def converted_state_dict(state: dict, model: torch.nn.Module, source: str) -> dict:
    """``state`` (mmdetection names) renamed onto ``model``; one sentence for the first key that
    has no place, is missing or has another shape."""
    own = model.state_dict()
    num_levels = len(model.neck.lateral_convs)
    out = {}
    for key, value in state.items():
        new = mmdet_key(key, num_levels)
        if new is None or new not in own:
            raise CheckpointError(f"{source} has the parameter '{key}', which this SOLOv2 config has no place for "
                                  f"(a DCN or other variant, or a config of another size?); {len(state)} keys in all")
        if tuple(value.shape) != tuple(own[new].shape):
            raise CheckpointError(f"{source}: '{key}' has shape {tuple(value.shape)} but the config wants "
                                  f"{tuple(own[new].shape)}; give the config the checkpoint was trained with")
        out[new] = value
    missing = [k for k in own if k not in out]
    if missing:
        raise CheckpointError(f"{source} lacks '{missing[0]}' (csrinfer's name) that the config needs; "
                              f"{len(missing)} missing in all: is it a SOLOv2 checkpoint of this config?")
    return out


def class_names(payload: dict, cfg: Config, source: str) -> tuple[list[str], list[int]]:
    """(names, category ids): from the checkpoint's dataset meta where recorded, else the config's."""
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    recorded = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    names = [str(n) for n in recorded] if recorded else list(cfg.classes)
    if len(names) != cfg.model.num_classes:
        raise ConfigError(f"{source} names {len(names)} classes but the config has model.num_classes "
                          f"{cfg.model.num_classes}; give the config the checkpoint was trained with")
    if tuple(names) == COCO_CLASSES:
        return names, list(COCO_CATEGORY_IDS)
    if names == list(cfg.classes):
        return names, list(cfg.category_ids)
    return names, list(range(1, len(names) + 1))


def convert_mmdet(source: str | os.PathLike, config: str | os.PathLike | Config, out: str | os.PathLike,
                  trust: bool = False) -> Path:
    """Write ``out``, a csrinfer checkpoint of the mmdetection SOLOv2 checkpoint ``source``.

    ``config`` is a YAML path or a Config with ``model.arch: solov2`` describing the same model
    (models/solov2_r50_fpn_coco.yaml for mmdetection's solov2_r50_fpn_*_coco). ``out`` is
    written atomically.

    Example:
        >>> convert_mmdet("solov2_r50_fpn_1x_coco.pth", "models/solov2_r50_fpn_coco.yaml", "solov2.pth")
    """
    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.model import build_model

    cfg = config if isinstance(config, Config) else load_config(config)
    if cfg.model.arch != "solov2":
        raise ConfigError(f"config {cfg.name} is model.arch {cfg.model.arch!r}; an mmdetection SOLOv2 checkpoint "
                          "needs a solov2 config (e.g. models/solov2_r50_fpn_coco.yaml)")
    payload = read_mmdet_checkpoint(source, trust)
    state = payload.get("state_dict", payload)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} has no state_dict of tensors; is it an mmdetection checkpoint?")
    model = build_model(cfg, pretrained=False)
    model.load_state_dict(converted_state_dict(state, model, str(source)), strict=True)
    cfg.classes, cfg.category_ids = class_names(payload, cfg, str(source))
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    return save_checkpoint(out, model, cfg, meta={
        "converted_from": "mmdetection", "source": Path(source).name,
        "mmdet_version": str(meta.get("mmdet_version", "unknown")),
    })
