"""``csrinfer bench``: FPS, latency percentiles (pre-processing / network / post-processing) and,
with ``--data``, mask AP of a model file. Thin: parses the flags, calls
:func:`csrinfer.bench.benchmark`, prints :func:`csrinfer.bench.format_result`."""

from __future__ import annotations

from csrinfer.cli.common import (add_runtime_arguments, non_negative_int, output_file, parse_hw, positive_int,
                                 runtime_options)

HELP = "measure FPS, latency (p50/p90/p99) and, with --data, mask AP of a model file"


def add_arguments(p) -> None:
    p.add_argument("--engine", required=True, metavar="MODEL", help="model file: .pth/.pt, .onnx, .plan/.engine, .xml")
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
    add_runtime_arguments(p)
    p.add_argument("--fast", action="store_true",
                   help=".pth/.pt on CUDA: every GPU fast-path switch (FP16, channels_last, fused D2S, CUDA "
                        "graphs, GPU pre-processing)")
    p.add_argument("--fp16", action="store_true", help=".pth/.pt on CUDA: FP16 network")
    p.add_argument("--cuda-graph", action="store_true", help=".pth/.pt on CUDA: replay the network as a CUDA graph")
    p.add_argument("--compile", action="store_true", help=".pth/.pt: run the network through torch.compile")
    p.add_argument("--json", default=None, metavar="OUT", type=output_file(".json"), help="write the result as JSON (benchmarks/bench.schema.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def backend_options(args) -> dict:
    """Segmenter keyword arguments for the PyTorch switches asked for."""
    options = {}
    if args.fast:
        from csrinfer.runtime.fastpath import fast_path_kwargs

        options = fast_path_kwargs(args.engine)
    for flag in ("fp16", "cuda_graph", "compile"):
        if getattr(args, flag):
            options[flag] = True
    if options:
        from pathlib import Path

        from csrinfer.errors import ConfigError

        if Path(args.engine).suffix.lower() not in (".pth", ".pt"):
            raise ConfigError(f"--fast, --fp16, --cuda-graph and --compile are PyTorch-backend switches; "
                              f"{args.engine} is not a .pth/.pt checkpoint")
    return options


def run(args) -> int:
    from csrinfer import atomic
    from csrinfer.bench import benchmark, format_result

    coco_results = None
    if args.json and args.data:
        from pathlib import Path

        coco_results = Path(args.json).with_suffix(".coco_results.json")
    result = benchmark(args.engine, device=args.device, input_size=args.input_size, batch=args.batch,
                       warmup=args.warmup, iters=args.iters, data=args.data, split=args.split,
                       max_images=args.max_images, coco_results=coco_results, progress=not args.quiet,
                       **backend_options(args), **runtime_options(args))
    print(format_result(result))
    if args.json:
        print(f"wrote {atomic.write_json(args.json, result)}")
    return 0
