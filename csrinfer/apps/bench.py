"""``csrinfer bench``: speed (and, given a dataset, mask AP) of any model file, as the paper's
Table I reports it (FPS at batch 1 on a V100, 19.5 for CSR-D2S) and as a user comparing
segmentation models wants it: throughput, latency percentiles, where the time goes.

One iteration is what ``Segmenter.predict_batch`` does to a batch of decoded images, split
into its three public steps (csrinfer/runtime/segmenter.py), and then what the caller reads of
the results, each timed:

- ``preprocess``: letterbox + pad into the network input (``Segmenter.preprocess``);
- ``network``: the backend's ``infer``: upload, network and the in-graph post-processing
  (scores, labels, mask probabilities of K slots at the feature stride);
- ``postprocess``: ``Segmenter.postprocess``: the ``Instances`` of each image, labels, scores
  and boxes made, masks kept unread where the network left them;
- ``result``: reading the masks in the form ``read`` names: ``none`` (not read: what
  ``predict`` costs a caller who needs boxes and scores), ``rle`` (COCO RLE, what ``to_coco``,
  ``eval`` and the Triton response read) or ``masks`` (every mask at the image's size).

Image decoding is not timed (the images are decoded once, before the run). On a CUDA device
each step is timed with CUDA events recorded on the current stream between the steps (the
iteration ends with a synchronisation, so the steps add up to the iteration's wall time); on a
CPU with ``time.perf_counter``. Warm-up iterations (CUDA-graph capture, torch.compile, cuDNN
and allocator warm-up) come first and are not counted.

FPS is throughput: ``batch * 1000 / mean iteration latency (ms)``. Percentiles are of the
per-iteration latency (numpy's linear interpolation). The result is a plain dict whose
layout is documented by ``benchmarks/bench.schema.json``.

Example:
    >>> from csrinfer.apps.bench import benchmark, format_result
    >>> result = benchmark("model.onnx", batch=1, iters=50, data="data/shapes")
    >>> print(format_result(result))
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrinfer.errors import ConfigError

SCHEMA = "csrinfer-bench/2"
STEPS = ("preprocess", "network", "postprocess", "result")
READS = ("none", "rle", "masks")  # what the ``result`` step reads of each Instances
# Paper Table I, "Ours": mask AP on COCO test-dev, FPS on one Tesla V100 (batch 1).
PAPER = {"method": "CSR-D2S (paper, Table I)", "fps": 19.5, "mask_AP": 35.4, "params_M": 32.13,
         "device": "Tesla V100", "batch": 1, "input": "COCO, short side 800, long side <= 1333"}
DEFAULT_IMAGE_HW = (480, 640)  # a typical COCO photo: letterboxed to 800x1067, padded 800x1088


# --- timing ----------------------------------------------------------------------------------

class StepClock:
    """Times consecutive steps of one iteration on ``device``.

    ``start()``, then ``mark(name)`` after each step, then ``read()`` -> {name: ms}. On CUDA
    the marks are CUDA events on the current stream and ``read`` waits for the last one.
    """

    def __init__(self, device: str = "cpu"):
        import torch

        self.cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
        self._torch = torch
        self._marks: list[tuple[str, object]] = []

    def _now(self):
        if self.cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._marks = [("start", self._now())]

    def mark(self, name: str) -> None:
        self._marks.append((name, self._now()))

    def read(self) -> dict[str, float]:
        if self.cuda:
            self._marks[-1][1].synchronize()
            elapsed = lambda a, b: a.elapsed_time(b)  # noqa: E731
        else:
            elapsed = lambda a, b: (b - a) * 1e3  # noqa: E731
        return {name: elapsed(prev, t) for (_, prev), (name, t) in zip(self._marks, self._marks[1:])}

    @property
    def kind(self) -> str:
        return "cuda_events" if self.cuda else "perf_counter"


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, min, max of a list of milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timings")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "min": float(a.min()), "max": float(a.max())}


class BenchRun:
    """A Segmenter and one fixed batch of decoded images, ready to be timed.

    Args:
        segmenter: a :class:`csrinfer.Segmenter`.
        images: uint8 BGR [H, W, 3] images; the batch is the first ``batch`` of them, cycled.
        batch: images per iteration.
        read: what the ``result`` step reads of each image's Instances (one of ``READS``).

    ``run(n)`` times ``n`` iterations and keeps every sample, so callers may interleave
    several BenchRuns (``benchmarks/run_all.py``) and summarise each one at the end.
    """

    def __init__(self, segmenter, images: Sequence[np.ndarray], batch: int = 1, read: str = "none"):
        if batch < 1:
            raise ConfigError(f"batch must be at least 1, got {batch}")
        if read not in READS:
            raise ConfigError(f"read must be one of {', '.join(READS)}, got {read!r}")
        static = segmenter.info.batch
        if static is not None and static != batch:
            raise ConfigError(f"{segmenter.backend.name} model has a static batch of {static}; bench it with "
                              f"--batch {static} or export it with --batch {batch} (or --dynamic)")
        self.segmenter = segmenter
        self.images = [images[i % len(images)] for i in range(batch)]
        self.batch = batch
        self.read = read
        self.clock = StepClock(self._timing_device())
        self.samples: list[dict[str, float]] = []
        self.instances = 0
        self.input_shape: list[int] | None = None

    def _timing_device(self) -> str:
        backend = self.segmenter.backend
        return backend.preprocess_device or backend.device

    def step(self) -> dict[str, float]:
        """One iteration; returns ms per step."""
        seg, clock = self.segmenter, self.clock
        clock.start()
        inputs, boxes = seg.preprocess(self.images)
        clock.mark("preprocess")
        outputs = seg.backend.infer({"images": inputs})
        clock.mark("network")
        results = seg.postprocess(outputs, boxes)
        clock.mark("postprocess")
        for instances in results:
            if self.read == "rle":
                instances.rle()
            elif self.read == "masks":
                instances.masks
        clock.mark("result")
        times = clock.read()
        self.input_shape = [int(v) for v in inputs.shape]
        self.instances = sum(len(r) for r in results)
        return times

    def warmup(self, n: int, progress: bool = False, desc: str = "warm-up") -> None:
        for _ in _bar(range(n), progress, desc):
            self.step()

    def run(self, n: int, progress: bool = False, desc: str = "timing") -> None:
        for _ in _bar(range(n), progress, desc):
            times = self.step()
            times["total"] = sum(times[s] for s in STEPS)
            self.samples.append(times)

    def summary(self) -> dict:
        """``latency_ms`` (stats of total and of each step), ``fps``, ``iters``, ``input_shape``."""
        if not self.samples:
            raise ValueError("run() has not timed any iteration")
        latency = {k: latency_stats([s[k] for s in self.samples]) for k in ("total", *STEPS)}
        return {"input_shape": self.input_shape, "batch": self.batch, "read": self.read, "iters": len(self.samples),
                "latency_ms": latency, "fps": self.batch * 1e3 / latency["total"]["mean"],
                "instances_per_image": self.instances / self.batch, "timer": self.clock.kind}


def _bar(iterable, progress: bool, desc: str):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit="it", disable=not progress, leave=False, dynamic_ncols=True)


# --- the environment -------------------------------------------------------------------------

def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def versions() -> dict[str, str | None]:
    """csrinfer, Python, torch, CUDA/cuDNN (torch's), onnxruntime, TensorRT, OpenVINO (None when absent)."""
    import torch

    from csrinfer import __version__

    out = {"csrinfer": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda,
           "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
           "onnxruntime": None, "tensorrt": None}
    out["openvino"] = None
    for name in ("onnxruntime", "tensorrt", "openvino"):
        if name in sys.modules:
            out[name] = getattr(sys.modules[name], "__version__", None)
        elif importlib.util.find_spec(name) is not None:
            try:  # the installed distribution's version, without importing the package
                out[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                out[name] = "installed"
    return out


def precision_of(segmenter) -> str:
    """"fp16", "fp32", "int8", "bf16" (OpenVINO's bf16 inference of an FP32 model), or "tf32"
    (FP32 whose convolutions PyTorch runs as TF32 on CUDA)."""
    info = segmenter.info
    backend = segmenter.backend
    ran = getattr(backend, "precision", None)  # OpenVINO: what its compiled model runs ("f32", "bf16")
    if info.precision == "int8" and ran == "bf16":
        return "int8+bf16"  # the layers left unquantized run in bf16
    if info.precision != "fp32":
        return info.precision
    if ran == "bf16":
        return "bf16"
    if backend.name == "PyTorch" and str(backend.device).startswith("cuda"):
        import torch

        return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return "fp32"


def host_info() -> dict:
    import torch

    return {"hostname": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command_line(argv: Sequence[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    return " ".join(shlex.quote(str(a)) for a in argv)


# --- images ----------------------------------------------------------------------------------

def bench_images(count: int, data: str | os.PathLike | None = None, split: str = "val",
                 image_hw: tuple[int, int] = DEFAULT_IMAGE_HW, max_pixels: int | None = None) -> list[np.ndarray]:
    """``count`` uint8 BGR images: the first ones of a dataset split, else synthetic photos of
    ``image_hw`` (smooth colour fields with shapes, deterministic)."""
    if data is None:
        from csrinfer.apps.samples import synthetic_image

        return [synthetic_image(seed, *image_hw) for seed in range(count)]
    from csrinfer.data.coco import find_split, load_coco
    from csrinfer.image_io import read_image

    ann_file, image_dir = find_split(data, split)
    coco = load_coco(ann_file)
    ids = sorted(coco.getImgIds())[:count]
    if not ids:
        from csrinfer.errors import DatasetError

        raise DatasetError(f"{ann_file} lists no image to time")
    limit = {"max_pixels": max_pixels} if max_pixels else {}
    return [read_image(Path(image_dir) / coco.imgs[i]["file_name"], **limit) for i in ids]


# --- one benchmark ---------------------------------------------------------------------------

def benchmark(model, *, device: str | None = None, input_size: Sequence[int] | None = None, batch: int = 1,
              warmup: int = 10, iters: int = 100, data: str | os.PathLike | None = None, split: str = "val",
              max_images: int | None = None, coco_results: str | os.PathLike | None = None,
              progress: bool = True, argv: Sequence[str] | None = None, name: str | None = None,
              max_pixels: int | None = None, read: str = "none", **backend_options) -> dict:
    """Time ``model`` (a .pth/.pt/.onnx/.plan path, or a ``Segmenter``) and, with ``data``, measure
    its mask AP on that COCO-format folder's ``split``, in one run.

    Args:
        device: "cpu", "cuda", "cuda:N" (default: the backend's best).
        input_size: (H, W) network input every image is letterboxed into (default: the model's
            static size, or the resize rule of its config).
        batch: images per iteration; warmup, iters: untimed and timed iterations.
        data, split, max_images: the dataset for mask AP (pycocotools, segm) and for the timed
            images (its first ``batch`` images; without data, synthetic 480x640 images).
        coco_results: where to write the COCO results of the AP run (default: not kept).
        max_pixels: refuse dataset images of more pixels than this (default: the Segmenter's).
        read: what the timed ``result`` step reads of the Instances: "none" (masks unread),
            "rle" or "masks" (every mask at full size).
        backend_options: passed to the Segmenter (``fast=True``, ``threads=2``, ...).
        argv: the command to record (default: ``sys.argv``).

    Returns a dict laid out as ``benchmarks/bench.schema.json`` describes.
    """
    from csrinfer.runtime.segmenter import Segmenter

    if iters < 1 or warmup < 0:
        raise ConfigError(f"iters must be at least 1 and warmup at least 0, got {iters} and {warmup}")
    load_start = loadavg()
    started = now_iso()
    if isinstance(model, Segmenter):
        segmenter = model
    else:
        segmenter = Segmenter(model, device, input_size=input_size,
                              **({"max_pixels": max_pixels} if max_pixels else {}), **backend_options)
    run = BenchRun(segmenter, bench_images(batch, data, split, max_pixels=max_pixels), batch, read)
    run.warmup(warmup, progress)
    run.run(iters, progress)
    result = describe(segmenter, run.summary(), name=name or (str(model) if isinstance(model, (str, Path)) else None),
                      warmup=warmup, argv=argv, date=started, loadavg_start=load_start)
    if data is not None:
        result["accuracy"] = evaluate(segmenter, data, split, max_images, coco_results, progress)
    result["host"]["loadavg_end"] = loadavg()
    return result


def describe(segmenter, summary: dict, *, name: str | None = None, warmup: int = 0, argv=None,
             date: str | None = None, loadavg_start=None, **extra) -> dict:
    """A bench result (schema ``csrinfer-bench/2``) from a Segmenter and ``BenchRun.summary()``."""
    backend = segmenter.backend
    result = {
        "schema": SCHEMA,
        "model": name or segmenter.info.name or type(backend).__name__,
        "config": segmenter.info.name or None,
        "backend": backend.name,
        "device": str(backend.device),
        "device_name": device_name(str(backend.device)),
        "precision": precision_of(segmenter),
        "options": list(getattr(getattr(backend, "options", None), "enabled", [])),
        "warmup": warmup,
        **summary,
        "accuracy": None,
        "paper": dict(PAPER),
        "versions": versions(),
        "host": {**host_info(), "loadavg_start": loadavg_start, "loadavg_end": loadavg()},
        "date": date or now_iso(),
        "command": command_line(argv),
    }
    result.update(extra)
    return result


def evaluate(segmenter, data, split: str = "val", max_images: int | None = None,
             coco_results: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Mask AP of ``segmenter`` on a split (csrinfer.apps.evaluation, pycocotools segm); AP values in
    percent like the paper's tables, None where the split has no object of that size."""
    from csrinfer.apps.evaluation import METRICS, evaluate_checkpoint

    tmp = None if coco_results is not None else Path(tempfile.mkdtemp(prefix="csrinfer-bench-"))
    out = Path(coco_results) if tmp is None else tmp / "results.json"
    try:
        report = evaluate_checkpoint(segmenter, data, split, out=out, progress=progress, max_images=max_images)
    except BaseException:
        if tmp is not None and not out.exists():  # a written results file is what the error points to
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    metrics = {k: (None if report[k] is None else 100.0 * report[k]) for k in METRICS}
    return {"data": str(data), "split": split, "images": report["images"], **metrics,
            "eval_fps": report["fps"], "coco_results": str(coco_results) if coco_results is not None else None}


# --- text ------------------------------------------------------------------------------------

def format_result(result: dict) -> str:
    """The lines ``csrinfer bench`` prints."""
    shape = "x".join(map(str, result["input_shape"]))
    options = f", {'+'.join(result['options'])}" if result["options"] else ""
    lines = [f"{result['model']}: {result['backend']} on {result['device']} ({result['device_name']}), "
             f"{result['precision']}{options}",
             f"input {shape}, batch {result['batch']}, {result['warmup']} warm-up + {result['iters']} timed "
             f"iterations ({result['timer']})",
             f"{'ms per batch':<16}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}"]
    read = result.get("read", "none")
    names = {"preprocess": "pre-processing", "network": "network", "postprocess": "post-processing",
             "result": "masks unread" if read == "none" else f"reading {read}", "total": "total"}
    for key in (*STEPS, "total"):
        if key not in result["latency_ms"]:  # a result written before the result step was timed
            continue
        s = result["latency_ms"][key]
        lines.append(f"{names[key]:<16}" + "".join(f"{s[p]:10.2f}" for p in ("mean", "p50", "p90", "p99")))
    paper = result["paper"]
    lines.append(f"throughput: {result['fps']:.2f} images/s at batch {result['batch']}   "
                 f"(paper: {paper['fps']} FPS on a {paper['device']}, batch {paper['batch']})")
    acc = result.get("accuracy")
    if acc:
        from csrinfer.apps.evaluation import METRICS

        cells = "  ".join(f"{k} {'-' if acc[k] is None else f'{acc[k]:.1f}'}" for k in METRICS)
        lines.append(f"mask AP on {acc['images']} images of {acc['data']} ({acc['split']}): {cells}")
    return "\n".join(lines)



