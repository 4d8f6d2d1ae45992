"""Device strings ("cpu", "cuda", "cuda:N"), read once for every backend, training and export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from csrinfer.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import torch


def parse_device(device: str) -> tuple[str, int | None]:
    """"cpu" -> ("cpu", None), "cuda" -> ("cuda", None), "cuda:N" -> ("cuda", N); anything else
    is one sentence."""
    kind, colon, index = str(device).partition(":")
    if kind in ("cpu", "cuda") and (not colon or index.isdigit()):
        return kind, int(index) if colon else None
    raise ConfigError(f"unknown device '{device}'; use 'cpu', 'cuda' or 'cuda:N'")


def torch_device(requested: str | None = None) -> "torch.device":
    """``requested`` ("cpu", "cuda", "cuda:N"; default: CUDA when available) as a torch.device,
    checked here so that a typo or a missing GPU is one sentence, not a CUDA traceback later."""
    import torch

    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(*parse_device(requested))
    gpus = torch.cuda.device_count() if device.type == "cuda" and torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= gpus:
        seen = f"sees {gpus} CUDA GPU(s)" if gpus else "sees no CUDA GPU here"
        raise BackendUnavailableError(f"device '{requested}' asked for, but PyTorch {seen}; use 'cpu'"
                                      + (f" or 'cuda:0'..'cuda:{gpus - 1}'" if gpus else ""))
    return device
