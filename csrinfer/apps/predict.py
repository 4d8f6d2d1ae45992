"""``csrinfer predict`` as library functions: images and videos in, overlays and COCO results out.

Nothing finished is lost: each overlay is written atomically as soon as it is ready, the
COCO-results JSON is written (atomically) even when the run is interrupted, a video is
closed and kept up to the last finished frame, and an unreadable input is recorded and
skipped so the good ones are still processed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from csrinfer import atomic
from csrinfer.errors import CsrinferError, ImageError
from csrinfer.image_io import load_image
from csrinfer.runtime.draw import draw_instances
from csrinfer.apps.sources import Source
from csrinfer.runtime.segmenter import Segmenter

RESULTS_NAME = "predictions.json"


@dataclass
class PredictReport:
    """What a run wrote and what it could not read."""

    written: list[Path] = field(default_factory=list)  # overlays and annotated videos
    results_json: Path | None = None
    images: int = 0  # images and video frames done
    instances: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, one sentence)


def predict_sources(segmenter: Segmenter, sources: Sequence[Source], out_dir, draw: bool = True,
                    category_ids: Sequence[int] | None = None, progress: bool = True,
                    max_frames: int | None = None) -> PredictReport:
    """Run ``segmenter`` on every source; images -> ``out_dir/<name>.png`` + ``predictions.json``,
    videos and cameras -> ``out_dir/<name>.mp4``.

    ``predictions.json`` is a COCO results list (RLE masks, ``category_id`` = the model's own
    category id of the label unless ``category_ids`` maps labels; ``image_id`` = the file
    name's number when every image is named by a number, as COCO's are, else the position
    among the images, from 1), each entry also carrying its ``file_name``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PredictReport()
    start = time.perf_counter()
    images = [s for s in sources if s.kind == "image"]
    try:
        _predict_images(segmenter, images, out_dir, draw, category_ids, progress, report)
        for source in (s for s in sources if s.kind != "image"):
            try:
                path, frames, instances = predict_video(segmenter, source, out_dir, progress, max_frames)
            except CsrinferError as e:
                report.failures.append((str(source), str(e)))
                continue
            report.written.append(path)
            report.images += frames
            report.instances += instances
    finally:
        report.seconds = time.perf_counter() - start
    return report


def _predict_images(segmenter, images, out_dir, draw, category_ids, progress, report) -> None:
    from tqdm import tqdm

    entries = []
    ids = image_ids([s.location for s in images])
    names = unique_names([s.name for s in images])
    report.results_json = out_dir / RESULTS_NAME
    try:
        for source, image_id, name in tqdm(list(zip(images, ids, names)), desc="predict", unit="img",
                                            disable=not progress or not images):
            try:
                image = load_image(source.location, segmenter.max_pixels)
                instances = segmenter.predict(image)
                if draw:
                    report.written.append(write_png(out_dir / f"{name}.png", draw_instances(image, instances)))
            except CsrinferError as e:
                report.failures.append((str(source), str(e)))
                continue
            except OSError as e:  # the overlay could not be written (disk full, permissions)
                report.failures.append((str(source), f"cannot write its overlay in {out_dir} ({e.strerror or e})"))
                continue
            for entry in instances.to_coco(image_id, category_ids):
                entries.append({**entry, "file_name": Path(source.location).name})
            report.images += 1
            report.instances += len(instances)
    finally:  # also on Ctrl-C: what was predicted is kept
        if images:
            atomic.write_json(report.results_json, entries, indent=None)
        else:
            report.results_json = None


def predict_video(segmenter: Segmenter, source: Source, out_dir, progress: bool = True,
                  max_frames: int | None = None) -> tuple[Path, int, int]:
    """Annotate a video file or camera frame by frame -> (output .mp4, frames, instances).

    The progress bar shows frames per second. A camera runs until ``max_frames`` or Ctrl-C;
    either way the video written so far is closed and kept.
    """
    from tqdm import tqdm

    if source.kind == "video" and not Path(source.location).is_file():
        raise ImageError(f"video {source} does not exist" if not Path(source.location).exists()
                         else f"video {source} is not a file")
    capture = cv2.VideoCapture(source.location)
    if not capture.isOpened():
        raise ImageError(f"{'camera' if source.kind == 'camera' else 'video'} {source.location} cannot be opened "
                         f"({'no such camera' if source.kind == 'camera' else 'not a video OpenCV can decode'})")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out_path = Path(out_dir) / f"{source.name}.mp4"
    partial = out_path.with_name(f".{out_path.stem}.partial.mp4")  # VideoWriter picks the format by suffix
    writer, frames, instances = None, 0, 0
    bar = tqdm(total=min(total, max_frames) if total and max_frames else total or max_frames,
               desc=str(source), unit="frame", disable=not progress)
    start = time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            result = segmenter.predict(frame)
            if writer is None:
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(draw_instances(frame, result))
            frames += 1
            instances += len(result)
            bar.update(1)
            bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.1f}")
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
            os.replace(partial, out_path)
    if frames == 0:
        raise ImageError(f"{'camera' if source.kind == 'camera' else 'video'} {source.location} gave no frames")
    return out_path, frames, instances


def image_ids(locations: Sequence) -> list[int]:
    """COCO image ids: the numbers in the file names (000000397133.jpg -> 397133) when every
    name is a distinct number, else 1, 2, 3, ... in order."""
    stems = [Path(str(loc)).stem for loc in locations]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(stems) + 1))


def files_in_the_way(out_dir, sources: Sequence[Source], draw: bool = True) -> list[Path]:
    """Files in ``out_dir`` that :func:`predict_sources` would overwrite: an earlier run's results
    (whose overlays would be left mixed with the new ones), overlays, annotated videos."""
    images = [s for s in sources if s.kind == "image"]
    names = {RESULTS_NAME} if images else set()
    if draw:
        names |= {f"{n}.png" for n in unique_names([s.name for s in images])}
    names |= {f"{s.name}.mp4" for s in sources if s.kind != "image"}
    return sorted(p for p in (Path(out_dir) / n for n in names) if p.exists())


def unique_names(names: Sequence[str]) -> list[str]:
    """Output names without collisions: a, a_1, a_2, ... for repeated stems."""
    used, out = set(), []
    for name in names:
        candidate, count = name, 0
        while candidate in used:
            count += 1
            candidate = f"{name}_{count}"
        used.add(candidate)
        out.append(candidate)
    return out


def write_png(path: Path, image_bgr) -> Path:
    ok, data = cv2.imencode(".png", image_bgr)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    return atomic.write_bytes(path, data.tobytes())


