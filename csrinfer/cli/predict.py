"""``csrinfer predict``: run a model on images, folders, videos or a camera.

Thin: collects the inputs, builds a :class:`csrinfer.Segmenter` and calls
:func:`csrinfer.apps.predict.predict_sources`. Unreadable inputs are listed at the
end (one sentence each); the good ones are still written; the exit code is then 1.
"""

from __future__ import annotations

import sys

from csrinfer.cli.common import (add_fast_path_arguments, add_model_argument, add_runtime_arguments,
                                 fast_path_flags_given, fast_path_from_args, next_free_folder, output_folder,
                                 positive_int, runtime_options)

HELP = "run a model on images, folders, video files or a camera; write overlays and COCO results"


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="IMG_OR_DIR",
                   help="image files, folders of images, video files, or a camera index (0)")
    source = p.add_mutually_exclusive_group(required=True)
    add_model_argument(source, required=False)
    source.add_argument("--server", metavar="URL",
                        help="a Triton server running a csrinfer model instead (HOST:PORT, http:// or grpc://)")
    p.add_argument("--out", default=None, metavar="DIR", type=output_folder,
                   help="output folder (default runs/predict, or runs/predict2, ... when that holds results)")
    p.add_argument("--score-thr", type=float, default=None, metavar="T",
                   help="keep instances scoring above T (default: all the model returns, its own thresholds applied)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the best available)")
    add_runtime_arguments(p)
    p.add_argument("--no-draw", action="store_true", help="write only the COCO results, no overlay images")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop each video or camera after N frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fast_path_arguments(p)
    p.add_argument("--max-pixels", type=positive_int, default=None, metavar="N", help="read images of up to N pixels (default 100000000)")


def run(args) -> int:
    from csrinfer import Segmenter
    from csrinfer.errors import ConfigError
    from csrinfer.apps.predict import files_in_the_way, predict_sources
    from csrinfer.apps.sources import collect_sources

    if args.server and (given := fast_path_flags_given(args)):
        raise ConfigError(f"{given[0]} is for a local model (--model); a Triton server runs its own")
    fast = fast_path_from_args(args, args.model)
    sources, problems = collect_sources(args.inputs)
    if args.out and (taken := files_in_the_way(args.out, sources, draw=not args.no_draw)):  # before the model loads
        raise ConfigError(f"--out {args.out} already holds files this run would overwrite "
                          f"({', '.join(p.name for p in taken[:3])}{', ...' if len(taken) > 3 else ''}); "
                          "give another folder or delete them (without --out, runs/predictN is a new folder)")
    if args.server:
        from csrinfer.serve.client import RemoteSegmenter

        segmenter = RemoteSegmenter(args.server, score_thr=args.score_thr)
    else:
        segmenter = Segmenter(args.model, device=args.device, score_thr=args.score_thr, fast=fast,
                              **({"max_pixels": args.max_pixels} if args.max_pixels else {}), **runtime_options(args))
    out = args.out or next_free_folder("runs/predict")
    report = predict_sources(segmenter, sources, out, draw=not args.no_draw,
                             progress=not args.quiet, max_frames=args.max_frames)
    failures = problems + report.failures
    rate = report.images / report.seconds if report.seconds else 0.0
    where = f"Triton at {args.server}" if args.server else f"{segmenter.backend.name} on {segmenter.device}"
    print(f"{report.images} images/frames, {report.instances} instances, {rate:.2f} per second "
          f"({where}); results in {out}")
    if report.results_json is not None:
        print(f"COCO results: {report.results_json}")
    if failures:
        print(f"{len(failures)} of {len(sources) + len(problems)} inputs failed:", file=sys.stderr)
        for _, sentence in failures:
            print(f"  {sentence}", file=sys.stderr)
        return 1
    return 0
