"""``csrinfer bench``: FPS, latency percentiles (pre-processing / network / post-processing /
result) and, with ``--data``, mask AP of a model file. Thin: parses the flags, calls
:func:`csrinfer.apps.bench.benchmark`, prints :func:`csrinfer.apps.bench.format_result`."""

from __future__ import annotations

import sys

from csrinfer.apps.bench import READS
from csrinfer.cli.common import (add_fast_path_arguments, add_model_argument, add_runtime_arguments,
                                 fast_path_from_args, non_negative_int, output_folder, parse_hw, positive_int,
                                 runtime_options)

HELP = "measure FPS, latency (p50/p90/p99) and, with --data, mask AP of a model file"


def add_arguments(p) -> None:
    add_model_argument(p, "--engine", help="model file: .pth/.pt, .onnx, .plan/.engine, .xml (OpenVINO IR)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="COCO-format folder: mask AP on its split, and its first images are the timed ones")
    p.add_argument("--split", default="val", help="split of --data (default: val)")
    p.add_argument("--max-images", type=positive_int, default=None, metavar="N", help="mask AP on the first N images only")
    p.add_argument("--input-size", type=parse_hw, default=None, metavar="HxW",
                   help="network input every image is letterboxed into (default: the model's)")
    p.add_argument("--batch", type=positive_int, default=1, help="images per iteration (default 1)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="untimed iterations first (default 10)")
    p.add_argument("--iters", type=positive_int, default=100, help="timed iterations (default 100)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the best available)")
    p.add_argument("--out", default=None, metavar="DIR", type=output_folder,
                   help="write the result to DIR/bench.json (benchmarks/bench.schema.json) and, with --data, "
                        "the COCO results to DIR/coco_results.json")
    p.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                   help="refuse dataset images of more than N pixels (default 100000000)")
    p.add_argument("--read", choices=READS, default="none",
                   help="what the timed result step reads of each image's instances: none (masks unread, the "
                        "default), rle (COCO RLE, as eval and to_coco) or masks (every mask at the image's size)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_runtime_arguments(p)
    add_fast_path_arguments(p)


def run(args) -> int:
    import json
    from pathlib import Path

    from csrinfer import atomic
    from csrinfer.apps.bench import benchmark, format_result

    fast = fast_path_from_args(args, args.model)
    out = Path(args.out) if args.out else None
    result = benchmark(args.model, device=args.device, input_size=args.input_size, batch=args.batch,
                       warmup=args.warmup, iters=args.iters, data=args.data, split=args.split,
                       max_images=args.max_images, coco_results=out / "coco_results.json" if out and args.data else None,
                       progress=not args.quiet, max_pixels=args.max_pixels, read=args.read,
                       **({"fast": fast} if fast else {}),
                       **runtime_options(args))
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    if out:
        written = atomic.write_json(out / "bench.json", result)
        print(f"wrote {written}", file=sys.stderr if args.json else sys.stdout)
    return 0
