"""The exceptions a user of csrinfer can meet.

Each carries one sentence that names the file or value and the problem; the CLI prints that
sentence and exits non-zero, never a traceback. Catch :class:`CsrinferError` for all of them.
"""

import os
from pathlib import Path


class CsrinferError(Exception):
    """Base class: a user-facing problem described in one sentence."""


class ConfigError(CsrinferError, ValueError):
    """A model config (YAML) is missing, malformed or inconsistent."""


class CheckpointError(CsrinferError):
    """A checkpoint is missing, unreadable, or does not match its config."""


class ImageError(CsrinferError, ValueError):
    """An input image (file or array) cannot be used: missing, corrupt, too large, wrong shape."""


class ModelFileError(CsrinferError):
    """A model file (.pth/.onnx/.plan) is missing, of an unknown kind, or unreadable."""


class DatasetError(CsrinferError):
    """A COCO-format dataset is missing or malformed."""


class TrainingError(CsrinferError):
    """Training cannot go on: the loss diverged (NaN/inf), or a run cannot be resumed."""


class ExportError(CsrinferError):
    """Export to ONNX or the TensorRT engine build failed."""


class BackendUnavailableError(CsrinferError):
    """A backend's runtime (TensorRT, CUDA, onnxruntime-extensions, Triton) is not installed here."""


class EngineMismatchError(CsrinferError):
    """A TensorRT engine was built for another TensorRT version or GPU than the one here."""


class ServerError(CsrinferError):
    """The Triton server could not be started, reached, or answered with an error."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit``
    characters: what a one-sentence error quotes from a library's multi-line message."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def os_error_sentence(e: OSError) -> str:
    """``Permission denied: /data/out`` rather than ``[Errno 13] Permission denied: '/data/out'``;
    a file standing where a folder is needed is named as such (``File exists`` says too little)."""
    if isinstance(e, (FileExistsError, NotADirectoryError)) and e.filename:
        sentence = file_in_the_way(os.fsdecode(e.filename))
        if sentence:
            return sentence
    if e.strerror and e.filename:
        return f"{e.strerror}: {e.filename}"
    return first_line(e)


def file_in_the_way(folder: str | os.PathLike) -> str | None:
    """"x is a file, not a folder" when ``folder``, or a folder above it, is a file; else None."""
    path = Path(folder)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is None:
        return None
    return f"{blocking} is a file, not a folder" + (f" (needed for {path})" if blocking != path else "")
