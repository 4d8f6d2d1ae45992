"""``csrinfer train``: train a config on a COCO-format dataset (paper §IV schedule by default)."""

from __future__ import annotations

import os

from csrinfer.cli.common import non_negative_int, output_folder, positive_float, positive_int

HELP = "train a model on a COCO-format dataset (torchrun for several GPUs)"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="model config YAML (models/*.yaml)")
    p.add_argument("--data", required=True,
                   help="dataset folder: annotations/instances_{train,val}.json + train/ val/ (or COCO's *2017 names)")
    p.add_argument("--out", default=None, metavar="DIR", type=output_folder, help="checkpoints and logs (default: runs/<config name>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from OUT/last.pth (or from CKPT) at the same iteration, lr and data order")
    p.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs (milestones stay as configured)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per process (override train.batch_size; the lr scales with the total batch)")
    p.add_argument("--workers", type=non_negative_int, default=None, help="data loader processes (override train.num_workers)")
    p.add_argument("--max-minutes", type=positive_float, default=None, help="stop (and save) after this many minutes")
    p.add_argument("--fit-schedule", action="store_true",
                   help="size the schedule to --max-minutes instead of train.epochs: the lr steps at the same "
                        "fractions of the time the run gets")
    p.add_argument("--max-iters", type=positive_int, default=None, help="stop (and save) at this iteration")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: this process's GPU, else CPU)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation on the val split at the end")


def run(args) -> int:
    from pathlib import Path

    from csrinfer.cli.common import setup_logging
    from csrinfer.config import load_config
    from csrinfer.errors import ConfigError
    from csrinfer.train import train

    setup_logging()
    cfg = load_config(args.config)
    for name, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("workers", "num_workers")):
        if getattr(args, name) is not None:
            setattr(cfg.train, key, getattr(args, name))
    if args.fit_schedule and args.max_minutes is None:
        raise ConfigError("--fit-schedule needs --max-minutes, the time to fit the schedule to")
    out = Path(args.out or Path("runs") / cfg.name)
    val = None if args.no_eval else _val_split(args.data)  # a broken val file found now, not after training
    final = train(cfg, args.data, out, max_minutes=args.max_minutes, max_iters=args.max_iters,
                  resume=args.resume, device=args.device, fit_to_time=args.fit_schedule)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"weights: {final}")
    if val is not None:
        from csrinfer.cli.eval import print_report
        from csrinfer.apps.evaluation import evaluate_checkpoint

        print_report(evaluate_checkpoint(final, args.data, "val", device=args.device))
    elif not args.no_eval:
        print("no val split: skipping evaluation")
    return 0


def _val_split(data):
    """The val annotation file, its structure checked; None (and a warning) when the dataset has
    no val split."""
    import warnings

    from csrinfer.data.coco import find_split, load_coco
    from csrinfer.errors import DatasetError

    try:
        ann_file, _ = find_split(data, "val")
    except DatasetError as e:
        try:  # a dataset without a train split fails in train() at once: one message is enough
            find_split(data, "train")
        except DatasetError:
            return None
        warnings.warn(f"{e}; the run will not be evaluated", stacklevel=1)  # now, not after hours of training
        return None
    load_coco(ann_file)
    return ann_file
