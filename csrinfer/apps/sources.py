"""What ``csrinfer predict`` reads: image files, folders of them, video files, camera indices.

``collect_sources`` expands folders (sorted, not recursive, as Ultralytics and mmdetection read a
folder; subfolders left out are named in a warning) and sorts each item into a kind.
A path that does not exist is kept as an image source so that it is reported with the other
bad items at the end of a run instead of stopping it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from csrinfer.image_io import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is "image", "video" or "camera"; ``location`` a path or a camera index."""

    kind: str
    location: str | int

    @property
    def name(self) -> str:
        return f"camera{self.location}" if self.kind == "camera" else Path(self.location).stem

    def __str__(self) -> str:
        return f"camera {self.location}" if self.kind == "camera" else str(self.location)


def collect_sources(items) -> tuple[list[Source], list[tuple[str, str]]]:
    """Command-line items -> (sources in the order given, [(item, problem)] for unusable items).

    A bare integer ("0") is a camera index; a folder contributes its image and video files
    (sorted by name); a folder holding none is a problem.
    """
    sources, problems = [], []
    for item in items:
        text = str(item)
        if text.isdigit() and not Path(text).exists():
            sources.append(Source("camera", int(text)))
            continue
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            sources += [_file_source(p) for p in files]
            subfolders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            unsearched = f" (its subfolders {', '.join(subfolders)} are not searched: give them too)" if subfolders else ""
            if not files:
                problems.append((text, f"folder {path} holds no image or video files{unsearched}"))
            elif subfolders:
                warnings.warn(f"folder {path}: only its own files are read{unsearched}", stacklevel=2)
        else:
            sources.append(_file_source(path))  # missing or odd files are reported when read
    return sources, problems


def _file_source(path: Path) -> Source:
    return Source("video" if path.suffix.lower() in VIDEO_SUFFIXES else "image", str(path))
