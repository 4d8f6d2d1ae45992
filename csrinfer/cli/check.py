"""``csrinfer check``: run two model files on the same inputs and print the parity report.

Thin: builds two Segmenters that letterbox alike and calls
:func:`csrinfer.apps.compare.compare`. Exit code 0 when the report passes the tolerances,
1 when it does not.
"""

from __future__ import annotations

import json

from csrinfer.cli.common import (add_fast_path_arguments, add_model_argument, add_runtime_arguments,
                                 fast_path_from_args, non_negative_float, positive_int, runtime_options)

HELP = "compare two model files (backends) on the same images: output errors, mask IoU, scores"


def add_arguments(p) -> None:
    add_model_argument(p, help="reference model file (.pth, .onnx, .plan)")
    p.add_argument("--against", required=True, help="model file to compare with it")
    p.add_argument("--images", nargs="+", default=None, metavar="IMG_OR_DIR",
                   help="images or folders (default: a few sample photos)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the best available)")
    add_runtime_arguments(p, "--against")
    p.add_argument("--score-tol", type=non_negative_float, default=1e-3, help="largest score difference that passes (1e-3)")
    p.add_argument("--min-iou", type=non_negative_float, default=0.99, help="smallest matched-mask IoU that passes (0.99)")
    p.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                   help="refuse images of more than N pixels (default 100000000)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_fast_path_arguments(p)  # for --against: `--model m.pth --against m.pth --fast` checks the fast path


def run(args) -> int:
    from csrinfer.errors import ImageError
    from csrinfer.apps.compare import compare, parity_segmenters

    a, b = parity_segmenters(args.model, args.against, args.device, fast=fast_path_from_args(args, args.against),
                             **runtime_options(args))
    if args.images:
        from csrinfer.apps.sources import collect_sources

        sources, problems = collect_sources(args.images)
        images = [s.location for s in sources if s.kind == "image"]
        if problems or not images:
            raise ImageError(problems[0][1] if problems else "no image files among --images")
    else:
        from csrinfer.apps.samples import sample_images

        images = [image for _, image in sample_images()]
    report = compare(a, b, images, **({"max_pixels": args.max_pixels} if args.max_pixels else {}))
    passed = report.passed(args.score_tol, args.min_iou)
    if args.json:
        print(json.dumps({**report.to_dict(), "passed": passed}, indent=2))
    else:
        print(f"{args.model} ({a.backend.name}) vs {args.against} ({b.backend.name})")
        for line in report.lines():
            print(f"  {line}")
        verdict = "INCONCLUSIVE" if report.inconclusive else "PASS" if passed else "FAIL"
        print(f"  {verdict} (scores within {args.score_tol:g}, mask IoU >= {args.min_iou:g}, same counts)")
    return 0 if passed else 1
