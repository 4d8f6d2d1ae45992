"""``csrinfer demo``: synthetic data -> training -> ONNX -> Segmenter -> mask AP, FPS, overlays,
on a CPU in about ten minutes. Thin: calls :func:`csrinfer.apps.demo.run_demo`."""

from __future__ import annotations

import os

from csrinfer.cli.common import non_negative_int, output_folder, positive_float, positive_int

HELP = "the whole pipeline on a fresh CPU machine in ~10 minutes: data, training, ONNX, AP, FPS, overlays"


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", metavar="DIR", type=output_folder, help="output folder (default runs/demo)")
    p.add_argument("--minutes", type=positive_float, default=None, metavar="M",
                   help="training time (default 7; the other stages take 1-2 minutes on 2 CPU cores)")
    p.add_argument("--n-train", type=positive_int, default=None, help="synthetic training images (default 1000)")
    p.add_argument("--n-val", type=positive_int, default=None, help="synthetic val images (default 100)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="CI size: 12 tiny training images, 3 iterations, 4 val images (about 15 s)")


def run(args) -> int:
    # OpenMP threads that spin while waiting crawl on shared or busy cores: wait passively
    # (must be set before torch loads; an explicit setting by the user wins).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from csrinfer.cli.common import setup_logging
    from csrinfer.apps.demo import DemoOptions, run_demo, summary_lines
    from csrinfer.errors import ConfigError

    sizes, defaults = ("minutes", "n_train", "n_val"), DemoOptions()
    given = [f"--{k.replace('_', '-')}" for k in sizes if getattr(args, k) is not None]
    if args.quick and given:
        raise ConfigError(f"--quick sets its own sizes; leave out {', '.join(given)} or --quick")
    for key in sizes:
        if getattr(args, key) is None:
            setattr(args, key, getattr(defaults, key))
    setup_logging()
    command = f"csrinfer demo --out {args.out} --seed {args.seed}" + (
        " --quick" if args.quick else f" --minutes {args.minutes:g} --n-train {args.n_train} --n-val {args.n_val}")
    report = run_demo(DemoOptions(out=args.out, minutes=args.minutes, n_train=args.n_train, n_val=args.n_val,
                                  seed=args.seed, quick=args.quick), command=command)
    print("\n".join(summary_lines(report)))
    return 0
