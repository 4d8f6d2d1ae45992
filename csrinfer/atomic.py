"""Atomic file writes: a finished file is never replaced by a half-written one.

Every file csrinfer writes for a user (checkpoints, ONNX graphs, engines, predictions, reports)
goes through ``atomic_write``: the data goes to a temp file beside the target, then one rename
puts it in place, so Ctrl-C, a full disk or a crash leaves the old file or none, never a torn one.
Temp files and folders are made with the modes a plain ``open``/``mkdir`` would give (the umask's),
not ``tempfile``'s owner-only ones: an engine file must stay readable by a Triton server running
as another user.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def temp_beside(path: str | os.PathLike, folder: bool = False) -> Path:
    """A new empty file (or folder) next to ``path``, to fill and then rename onto it."""
    path = Path(path)
    # At most 200 bytes of the name: the temp name's 14 extra bytes must not push a long (up to
    # 255-byte) file name over the file system's limit. Cut between characters, never inside one.
    stem = os.fsencode(path.name)[:200].decode("utf-8", "ignore")
    for _ in range(100):
        tmp = path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp")
        try:
            if folder:
                tmp.mkdir()
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; ``path`` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: str | os.PathLike, value, indent: int | None = 2) -> Path:
    """``value`` as JSON; ``indent=None`` for large machine-read files (COCO results)."""
    text = json.dumps(value, indent=indent)
    return write_text(path, text + "\n" if indent is not None else text)
