"""Benchmark: train the small config on the synthetic shapes on CPU cores, then evaluate it.

What must hold (issue 3): mask AP >= 0.50 on the synthetic val split within 20 minutes of
training on 2 CPU cores. This script

1. writes the synthetic dataset (``csrinfer data synth``; not counted as training time),
2. trains ``models/csr_d2s_r18_small.yaml`` on the CPU with ``--threads`` threads for
   ``--minutes`` of training, the schedule fitted to that time (``train(..., fit_to_time=True)``:
   however fast the machine is today, the lr steps at 8/12 and 11/12 of the run and it ends in
   time),
3. evaluates ``final.pth`` on val with pycocotools (segm), and
4. writes ``benchmarks/results/train_synthetic_cpu.json``: the AP table, training time and
   iterations, the machine (CPU model, cores), the date, the exact command and the load
   average at start and end (the machine may be shared: a higher load means fewer iterations).

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/train_synthetic.py            # the full benchmark, ~25 min
    PYTHONPATH=$PWD python benchmarks/train_synthetic.py --minutes 2 --n-train 100 --n-val 20 \\
        --results /tmp/quick.json                                    # a quick look

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set before torch loads): on cores
shared with other processes, spinning threads slowed training down up to 7x here.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU benchmark, even on a machine with a GPU

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_AP = 0.50


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "models" / "csr_d2s_r18_small.yaml"))
    p.add_argument("--work", default="/tmp/csrinfer_train_synthetic", help="dataset and run folder (recreated)")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget (hard stop)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "train_synthetic_cpu.json"))
    return p.parse_args(argv)


def machine() -> dict:
    from csrinfer.apps.bench import cpu_name

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(cpu=cpu_name(), cores=os.cpu_count(), usable_cores=usable, platform=platform.platform(),
                python=platform.python_version())


class LoadSampler:
    """The 1-minute load average once a minute while training runs (the machine may be shared)."""

    def __init__(self, every: float = 60.0):
        import threading

        self.every, self.samples, self._done = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._done.wait(self.every):
            self.samples.append(round(os.getloadavg()[0], 2))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def summary(self) -> dict:
        s = sorted(self.samples)
        return {"samples": self.samples, "median": s[len(s) // 2] if s else None}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from csrinfer.model.checkpoint import read_checkpoint
    from csrinfer.cli.common import setup_logging
    from csrinfer.config import load_config
    from csrinfer.data.synthetic import write_synthetic
    from csrinfer.apps.evaluation import evaluate_checkpoint, format_table
    from csrinfer.train import train
    from csrinfer.train.loop import autocast_dtype

    setup_logging()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    t = time.time()
    data = write_synthetic(work / "shapes", args.n_train, args.n_val, args.seed)
    synth_seconds = time.time() - t

    cfg = load_config(args.config)
    load_start = os.getloadavg()
    t = time.time()
    load_during = LoadSampler()
    with load_during:
        final = train(cfg, data, work / "run", max_minutes=args.minutes, device="cpu", fit_to_time=True)
    train_seconds = time.time() - t
    load_end = os.getloadavg()
    meta = read_checkpoint(final)["meta"]

    report = evaluate_checkpoint(final, data, "val", out=work / "results_val.json", device="cpu")
    metrics = {k: report[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    print(format_table(metrics))
    result = {
        "benchmark": "train the small config on the synthetic shapes on CPU, evaluate mask AP on val",
        "target": {"AP": TARGET_AP, "training_minutes": args.minutes},
        "passed": metrics["AP"] is not None and metrics["AP"] >= TARGET_AP,
        "mask_ap": metrics,
        "eval": {"images": report["images"], "fps": report["fps"], "device": "cpu", "threads": args.threads},
        "training": {
            "seconds": round(train_seconds, 1),
            "iterations": meta["iteration"],
            "fitted_iterations": meta["total_iters"],
            "epochs": round(meta["epoch"], 2),
            "images_seen": meta["iteration"] * cfg.train.batch_size,
            # the backbone warm-up: steps done of those configured, and what cut it (time budget)
            "warmup": meta.get("warmup"),
            "threads": args.threads,
            "autocast": str(autocast_dtype(torch.device("cpu"), cfg.train.amp)),
        },
        "dataset": {"train_images": args.n_train, "val_images": args.n_val, "seed": args.seed,
                    "synth_seconds": round(synth_seconds, 1)},
        "config": Path(args.config).name,
        "machine": machine(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in load_end],
        "loadavg_1min_during_training": load_during.summary(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
    }
    out = Path(args.results)
    from csrinfer import atomic

    atomic.write_json(out, result)
    print(f"{'PASS' if result['passed'] else 'FAIL'}: mask AP {metrics['AP']:.3f} (target {TARGET_AP}) after "
          f"{meta['iteration']} iterations in {train_seconds / 60:.1f} min; wrote {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
