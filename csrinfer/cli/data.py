"""``csrinfer data``: dataset helpers. ``data synth`` writes the synthetic shapes dataset."""

from __future__ import annotations

from csrinfer.cli.common import non_negative_int, output_folder, positive_int

HELP = "dataset helpers: 'data synth' writes a synthetic COCO-format dataset"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    synth = sub.add_parser("synth", help="write a synthetic COCO-format dataset of 4 shape classes (train + val)",
                           description="Write a COCO-format instance dataset of circles, rectangles, triangles "
                                       "and stars over textured backgrounds; deterministic for a seed.")
    synth.add_argument("--out", required=True, metavar="DIR", type=output_folder, help="folder to create (must not exist or be empty)")
    synth.add_argument("--n", type=positive_int, default=1000, help="training images (default 1000)")
    synth.add_argument("--n-val", type=positive_int, default=None, help="validation images (default: n / 5)")
    synth.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")


def run(args) -> int:
    from csrinfer.data.synthetic import default_val_count, write_synthetic

    n_val = default_val_count(args.n) if args.n_val is None else args.n_val
    out = write_synthetic(args.out, args.n, n_val, args.seed, progress=True)
    print(f"wrote {out}: {args.n} train and {n_val} val images")
    return 0
