"""A/B runs of training settings for the small config: what limits the synthetic benchmark (issue 3).

Each run trains ``models/csr_d2s_r18_small.yaml`` with some settings overridden for a fixed
number of iterations (the schedule sized to them, so runs compare per iteration, not per
second), then reports on the val split:

- mask AP (pycocotools, segm) and the class-agnostic AP (``useCats=0``): their gap is what
  wrong classes cost;
- category accuracy: the argmax of the category branch on the positive cells of 64 training
  images, against their targets (chance = 1 / number of classes).

Results are appended to a JSON list (default ``benchmarks/results/train_ab_cpu.json``) with the
machine, date, command and load average. Run two at a time with one thread each to use both
cores of the CPU machine; compare runs of the same length only.

    PYTHONPATH=$PWD python benchmarks/train_ab.py --name base --data DATA --threads 1
    PYTHONPATH=$PWD python benchmarks/train_ab.py --name cls4 --data DATA --threads 1 --set train.loss_cls=4.0
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import argparse  # noqa: E402
import datetime  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the run's name (its folder under --work)")
    p.add_argument("--data", required=True, help="a COCO-format folder, e.g. from `csrinfer data synth`")
    p.add_argument("--config", default=str(REPO / "models" / "csr_d2s_r18_small.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                   help="override a config value, e.g. train.loss_cls=4.0 (repeatable)")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/csrinfer_train_ab")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "train_ab_cpu.json"))
    return p.parse_args(argv)


def apply_overrides(cfg, overrides):
    """``section.key=JSON`` settings over ``cfg``, checked like the YAML (csrinfer.config)."""
    from csrinfer.config import config_from_dict
    from csrinfer.errors import ConfigError

    data = cfg.to_dict()
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if not isinstance(data.get(section), dict):
            raise SystemExit(f"train_ab: unknown config key '{key}'")
        try:
            data[section][name] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"train_ab: the value of '{key}' is not JSON: {value}") from None
    try:
        return config_from_dict(data, where="--set")
    except ConfigError as e:
        raise SystemExit(f"train_ab: {e}") from None


def category_accuracy(cfg, ckpt, data, first=1000, count=64) -> float:
    """Argmax of the category branch on the positive cells of ``count`` training images."""
    from csrinfer.model.checkpoint import load_checkpoint
    from train_diagnose import category_confusion

    confusion = category_confusion(load_checkpoint(ckpt)[0].eval(), cfg, data, first, count)
    return float(confusion.trace()) / max(int(confusion.sum()), 1)


def append_result(path: Path, record: dict) -> None:
    """Append to the JSON list under a lock (two runs finish side by side), atomically."""
    from csrinfer import atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = json.loads(path.read_text()) if path.exists() else []
        runs.append(record)
        atomic.write_json(path, runs, indent=1)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from csrinfer.apps.bench import cpu_name
    from csrinfer.config import load_config
    from csrinfer.apps.evaluation import evaluate_checkpoint
    from csrinfer.train.distributed import init_distributed, shutdown
    from csrinfer.train.loop import Trainer
    from train_diagnose import class_agnostic_ap

    torch.set_num_threads(args.threads)
    cfg = apply_overrides(load_config(args.config), args.set)
    load_start = os.getloadavg()
    device = torch.device("cpu")
    world = init_distributed(device)
    started = time.monotonic()
    try:
        trainer = Trainer(cfg, args.data, Path(args.work) / args.name, device, world)
        trainer.total_iters = trainer.stop_at = args.iters  # the schedule's milestones follow
        ckpt = trainer.run(None, progress=False)
    finally:
        shutdown(world)
    seconds = time.monotonic() - started
    metrics = evaluate_checkpoint(ckpt, args.data, progress=False)
    agnostic = class_agnostic_ap(Path(args.data) / "annotations" / "instances_val.json",
                                 json.loads(Path(metrics["results"]).read_text()))
    record = {
        "name": args.name, "overrides": args.set, "iterations": args.iters, "train_seconds": round(seconds, 1),
        "mask_ap": {k: round(metrics[k], 4) for k in ("AP", "AP50", "AP75")},
        "class_agnostic_ap": {k: round(v, 4) for k, v in agnostic.items()},
        "category_accuracy_on_positives": round(category_accuracy(cfg, ckpt, args.data), 3),
        "chance_accuracy": round(1 / cfg.model.num_classes, 3),
        "threads": args.threads, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/train_ab.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
    }
    append_result(Path(args.results), record)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
