"""Checkpoints: one ``.pth`` holding the config, class names and weights (design.md §2).

A checkpoint alone rebuilds the model. Training adds its state (optimizer, scheduler,
iteration, RNG) under ``train_state``. Files are written atomically (temp file + rename),
so an interrupted write never replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from csrinfer.atomic import atomic_write
from csrinfer.config import Config, config_from_dict
from csrinfer.errors import CheckpointError, ConfigError, first_line

FORMAT = "csrinfer-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, cfg: Config,
                    train_state: dict | None = None, meta: dict | None = None) -> Path:
    """Write ``{format, version, config, class_names, state_dict[, train_state, meta]}`` atomically."""
    model = getattr(model, "module", model)  # unwrap DDP
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "class_names": list(cfg.classes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict; a missing or unreadable file is one :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a .pth file")
    if not zipfile.is_zipfile(path):  # torch.load's own message for foreign bytes is about weights_only
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file (not the zip archive "
                              "torch.save writes)")
    try:
        # weights_only: a checkpoint holds tensors and plain Python values, never code to unpickle.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a csrinfer checkpoint: it holds Python objects that a "
                              "weights-only load refuses to unpickle") from None
    except Exception as e:  # torch.load raises many types on broken archives (RuntimeError, EOFError, ...)
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file ({first_line(e, 160)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a csrinfer checkpoint (no '{FORMAT}' header)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['version']}; "
                              f"this csrinfer reads up to {VERSION}, upgrade csrinfer")
    return payload


def checkpoint_config(payload: dict, path: str | os.PathLike) -> Config:
    """The config a checkpoint (``read_checkpoint``'s dict) was saved with, its class names included."""
    try:
        cfg = config_from_dict(payload["config"], where=f"config in {path}")
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid config ({e})") from None
    cfg.classes = list(payload.get("class_names", cfg.classes))
    return cfg


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint. Returns ``(model, cfg, payload)``; model in eval mode."""
    from csrinfer.model import build_model

    payload = read_checkpoint(path)
    cfg = checkpoint_config(payload, path)
    model = build_model(cfg, pretrained=False)
    load_weights(model, payload.get("state_dict", {}), str(path))
    return model.to(map_location).eval(), cfg, payload


def load_weights(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Strict load with one sentence naming what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
                  for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {mismatched[0]})")
        raise CheckpointError(f"weights in {source} do not match its config: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
