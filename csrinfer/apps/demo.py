"""``csrinfer demo``: the whole pipeline on a fresh machine, no GPU and no downloads, in minutes.

The README's main job. Six stages, each announced, each with a progress bar:

1. the synthetic shapes dataset (``csrinfer.data.synthetic``: 4 classes, COCO format);
2. training ``models/csr_d2s_r18_small.yaml`` on the CPU for ``minutes`` (``csrinfer.train``, the
   schedule fitted to the time, so its lr steps happen however fast the machine is);
3. export to ONNX (``csrinfer.export.pipeline``: static input of the config's export size);
4. mask AP (pycocotools) and speed of the ONNX file through ``Segmenter`` (ONNX Runtime) on
   the val split, in one ``csrinfer.apps.bench`` run;
5. overlay PNGs of the first val images (``csrinfer.apps.predict``);
6. ``report.md`` and ``report.json``: AP table, FPS and latency, training length, stage times,
   machine, date, command.

Everything goes under ``out`` (default ``runs/demo``); a second run in the same folder starts
afresh. ``quick=True`` is the CI-sized version (a dozen tiny images, a few iterations).

Example:
    >>> from csrinfer.apps.demo import DemoOptions, run_demo
    >>> report = run_demo(DemoOptions(out="runs/demo", minutes=6))
    >>> report["accuracy"]["AP"], report["speed"]["fps"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from csrinfer.errors import ConfigError

MARKER = ".csrinfer-demo"  # written in ``out`` so that a rerun may clear it, and nothing else
PARTS = ("shapes", "train", "export", "overlays", "report.md", "report.json")
SMALL_CONFIG = Path(__file__).resolve().parents[2] / "models" / "csr_d2s_r18_small.yaml"
QUICK = dict(n_train=12, n_val=4, bench_iters=2)  # with 3 iterations at 128-160 px: seconds
QUICK_ITERS = 3
# What a user may expect, from the one reference run on a machine with nothing else running.
EXPECTED_AP = ("Expected with the defaults (7 minutes, 1000 train images) on 2 idle CPU cores: mask AP about 33 "
               "(33.0 in the reference run: load average ~1.5, 479 iterations after the whole 300-step backbone "
               "warm-up). Less training lowers it: other processes on the cores (a load average above the core "
               "count) or fewer --minutes mean fewer iterations, and may cut the backbone warm-up (it may take a "
               "quarter of the time); more minutes raise it.")


@dataclass
class DemoOptions:
    """Args:
        out: folder for everything the demo writes.
        minutes: training time (the other stages take 1-2 minutes on 2 CPU cores).
        n_train, n_val: synthetic images per split.
        overlays: val images drawn into ``out/overlays``.
        bench_iters: timed iterations of the speed measurement (after 3 warm-up ones).
        seed: dataset seed.
        quick: CI size (``QUICK``): 12 train and 4 val images of the small config at 128-160 px,
            3 iterations; ``minutes``, ``n_train``, ``n_val`` and ``bench_iters`` are replaced.
        config: the model config (default: models/csr_d2s_r18_small.yaml).
    """

    out: str | Path = "runs/demo"
    minutes: float = 7.0
    n_train: int = 1000
    n_val: int = 100
    overlays: int = 8
    bench_iters: int = 30
    seed: int = 0
    quick: bool = False
    config: str | Path | None = None


def run_demo(options: DemoOptions, say=print, command: str | None = None) -> dict:
    """Run the six stages; returns the report (also written to ``out/report.json``).
    ``command``: the command line to record (default: this process's)."""
    from csrinfer.apps.bench import command_line, loadavg, now_iso

    if options.minutes <= 0 or options.n_train < 1 or options.n_val < 1:
        raise ConfigError("--minutes, --n-train and --n-val must be positive")
    if options.quick:  # the report then records the sizes that ran
        options = dataclasses.replace(options, **QUICK)
    out = prepare_folder(Path(options.out))
    started, load_start, times = time.monotonic(), loadavg(), {}
    report = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
              "date": now_iso(), "command": command or command_line(), "loadavg_start": load_start}
    stages = [("dataset", "writing the synthetic shapes dataset", lambda: dataset_stage(options, out, report)),
              ("train", "training the small model " + (f"for {QUICK_ITERS} iterations (--quick)" if options.quick
                                                        else f"for {options.minutes:g} min") + " on the CPU",
               lambda: train_stage(options, out, report)),
              ("export", "exporting it to ONNX", lambda: export_stage(out, report)),
              ("evaluate", "mask AP and speed of the ONNX file (Segmenter, ONNX Runtime)",
               lambda: evaluate_stage(options, out, report)),
              ("overlays", "drawing the first val images", lambda: overlay_stage(options, out, report)),
              ("report", "writing the report", lambda: None)]
    for i, (key, title, stage) in enumerate(stages, 1):
        say(f"[{i}/{len(stages)}] {title}  ({time.monotonic() - started:.0f} s so far)")
        t0 = time.monotonic()
        stage()
        times[key] = round(time.monotonic() - t0, 1)
    report.update(stage_seconds=times, total_seconds=round(time.monotonic() - started, 1),
                  loadavg_end=loadavg())
    write_report(out, report)
    return report


def prepare_folder(out: Path) -> Path:
    """``out`` ready for a demo: created, or cleared of a previous demo's files; a non-empty
    folder that no demo made is refused (never delete what is not ours)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give --out a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ConfigError(f"{out} already exists and was not made by csrinfer demo; choose another --out")
        for name in PARTS:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by csrinfer demo; a rerun clears this folder's demo files\n")
    return out


def demo_config(options: DemoOptions):
    """The small config; in quick mode shrunk to tiny images, a small batch, no loader workers."""
    from csrinfer.config import load_config

    path = Path(options.config) if options.config else SMALL_CONFIG
    if not path.is_file():
        raise ConfigError(f"model config {path} does not exist (the demo needs the repository's models/ "
                          "folder: install csrinfer from a clone with pip install -e .)")
    cfg = load_config(path)
    if options.quick:
        cfg.input.short_side, cfg.input.max_size, cfg.input.export_size = 128, 160, [128, 160]
        t = cfg.train
        t.short_side_range, t.batch_size, t.base_batch_size, t.num_workers = [128, 160], 2, 2, 0
        t.warmup_iters, t.log_every, t.crop_pretrain_steps = 2, 1, min(t.crop_pretrain_steps, 2)
    return cfg


def dataset_stage(options: DemoOptions, out: Path, report: dict) -> None:
    from csrinfer.data.synthetic import write_synthetic

    write_synthetic(out / "shapes", options.n_train, options.n_val, options.seed, progress=True)
    report["dataset"] = {"path": str(out / "shapes"), "train_images": options.n_train, "val_images": options.n_val,
                         "seed": options.seed}


def train_stage(options: DemoOptions, out: Path, report: dict) -> None:
    from csrinfer.model.checkpoint import read_checkpoint
    from csrinfer.train import train

    cfg = demo_config(options)
    t0 = time.monotonic()
    final = train(cfg, out / "shapes", out / "train", max_minutes=options.minutes, device="cpu",
                  max_iters=QUICK_ITERS if options.quick else None, fit_to_time=not options.quick)
    meta = read_checkpoint(final)["meta"]
    report["training"] = {"config": cfg.name, "checkpoint": str(final), "seconds": round(time.monotonic() - t0, 1),
                          "iterations": meta["iteration"], "batch_size": cfg.train.batch_size,
                          "images_seen": meta["iteration"] * cfg.train.batch_size, "warmup": meta.get("warmup")}


def warmup_line(training: dict) -> str | None:
    """The backbone warm-up in one sentence, saying so when the time budget cut it."""
    w = training.get("warmup")
    if not w:
        return None
    line = f"backbone warm-up: {w['steps']} of {w['configured']} steps"
    if w.get("cut") == "time budget":
        line += (" (cut by the time budget: the machine was slower than the warm-up's quarter of the time allows; "
                 "the mask AP is lower for it)")
    elif w.get("cut") == "short run":
        line += " (never more steps than training iterations)"
    return line


def export_stage(out: Path, report: dict) -> None:
    from csrinfer.export.pipeline import ExportOptions, export_model

    with ticker("exporting"):
        result = export_model(out / "train" / "final.pth", ExportOptions(out_dir=out / "export", engine=False))
    report["export"] = {"onnx": str(result.onnx), "input_size": list(result.info.input_size),
                        "megabytes": round(result.onnx.stat().st_size / 1e6, 1)}


def evaluate_stage(options: DemoOptions, out: Path, report: dict) -> None:
    from csrinfer.apps.bench import benchmark

    result = benchmark(report["export"]["onnx"], device="cpu", warmup=3, iters=options.bench_iters,
                       data=out / "shapes", coco_results=out / "export" / "results_val.json", progress=True,
                       argv=["csrinfer", "bench", "--model", report["export"]["onnx"], "--data", str(out / "shapes")])
    report["accuracy"] = result["accuracy"]
    report["speed"] = {k: result[k] for k in ("backend", "device", "device_name", "precision", "batch", "input_shape",
                                              "fps", "latency_ms", "iters", "timer")}
    report["versions"], report["host"] = result["versions"], result["host"]


def overlay_stage(options: DemoOptions, out: Path, report: dict) -> None:
    from csrinfer.apps.predict import predict_sources
    from csrinfer.runtime.segmenter import Segmenter
    from csrinfer.apps.sources import Source

    images = sorted((out / "shapes" / "val").glob("*.png"))[: options.overlays]
    segmenter = Segmenter(report["export"]["onnx"], device="cpu")
    result = predict_sources(segmenter, [Source("image", str(p)) for p in images], out / "overlays", progress=True)
    report["overlays"] = {"folder": str(out / "overlays"), "images": [str(p) for p in result.written],
                          "instances": result.instances}


def write_report(out: Path, report: dict) -> None:
    from csrinfer import atomic

    atomic.write_json(out / "report.json", report)
    atomic.write_text(out / "report.md", markdown(report))


def summary_lines(report: dict) -> list[str]:
    """What the demo prints at the end: mask AP, FPS, where the files are."""
    acc, speed, train = report["accuracy"], report["speed"], report["training"]
    from csrinfer.apps.evaluation import METRICS

    cells = "  ".join(f"{k} {'-' if acc[k] is None else f'{acc[k]:.1f}'}" for k in METRICS)
    lat = speed["latency_ms"]["total"]
    return [
        f"mask AP on {acc['images']} synthetic val images (pycocotools, segm, %): {cells}",
        f"speed: {speed['fps']:.1f} FPS, {speed['backend']} on {speed['device']} ({speed['device_name']}), batch "
        f"{speed['batch']}, input {'x'.join(map(str, speed['input_shape'][2:]))}; latency p50 {lat['p50']:.1f} ms, "
        f"p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms",
        f"trained {train['iterations']} iterations ({train['images_seen']} images) in {train['seconds'] / 60:.1f} min; "
        f"whole demo {report['total_seconds'] / 60:.1f} min; load average {report['loadavg_start']} -> "
        f"{report['loadavg_end']}",
        *([warmup_line(train)] if warmup_line(train) else []),
        EXPECTED_AP,
        f"overlays in {report['overlays']['folder']}; report in {Path(report['overlays']['folder']).parent / 'report.md'}",
    ]


def markdown(report: dict) -> str:
    from csrinfer.apps.evaluation import METRICS

    acc, speed, t = report["accuracy"], report["speed"], report["training"]
    lat = speed["latency_ms"]
    lines = ["# csrinfer demo", "",
             f"`{report['command']}`: {report['date']}, {speed['device_name']}, load average "
             f"{report['loadavg_start']} -> {report['loadavg_end']}; whole demo {report['total_seconds']:.0f} s.", "",
             f"- data: {report['dataset']['train_images']} train + {report['dataset']['val_images']} val synthetic images "
             f"(`{report['dataset']['path']}`)",
             f"- training: `{t['config']}`, {t['iterations']} iterations of batch {t['batch_size']} in {t['seconds']:.0f} s "
             f"(`{t['checkpoint']}`)",
             *([f"- {warmup_line(t)}"] if warmup_line(t) else []),
             f"- ONNX: `{report['export']['onnx']}` ({report['export']['megabytes']} MB, input "
             f"{'x'.join(map(str, report['export']['input_size']))})", "",
             f"## Mask AP on {acc['images']} val images (pycocotools, segm, %)", "",
             "| " + " | ".join(METRICS) + " |", "|" + " ---: |" * len(METRICS),
             "| " + " | ".join("-" if acc[k] is None else f"{acc[k]:.1f}" for k in METRICS) + " |", "",
             EXPECTED_AP, "",
             f"## Speed: {speed['backend']} on {speed['device']}, batch {speed['batch']}, {speed['iters']} timed iterations",
             "", "| step | mean ms | p50 ms | p90 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for key in ("preprocess", "network", "postprocess", "total"):
        s = lat[key]
        lines.append(f"| {key} | {s['mean']:.2f} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} |")
    lines += ["", f"**{speed['fps']:.1f} FPS** (the paper: 19.5 FPS for the ResNet-50 model on a V100).", "",
              "## Overlays", ""] + [f"![{Path(p).name}](overlays/{Path(p).name})" for p in report["overlays"]["images"]]
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in report["stage_seconds"].items())]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def ticker(desc: str):
    """A progress line that counts seconds while a step without its own progress runs."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, bar_format="{desc}: {elapsed} elapsed", dynamic_ncols=True)
    done = threading.Event()

    def tick():
        while not done.wait(0.5):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()
