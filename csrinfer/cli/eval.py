"""``csrinfer eval``: mask AP (pycocotools COCOeval, segm) and FPS of a model file on a split."""

from __future__ import annotations

import json

from csrinfer.cli.common import add_model_argument, output_folder, positive_int

HELP = "evaluate a model: COCO mask AP table and FPS on the val split"


def add_arguments(p) -> None:
    add_model_argument(p, "--ckpt", help="model file: a checkpoint .pth (final.pth or last.pth of a training run), .onnx or .plan")
    p.add_argument("--data", required=True, help="dataset folder (annotations/instances_val.json + val/)")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--out", default=None, metavar="DIR", type=output_folder,
                   help="folder for the COCO results, results_<split>.json (default: the model file's folder)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--max-images", type=positive_int, default=None, help="evaluate the first N images only")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args) -> int:
    from pathlib import Path

    from csrinfer.cli.common import setup_logging
    from csrinfer.apps.evaluation import evaluate_checkpoint

    setup_logging()
    out = Path(args.out) / f"results_{args.split}.json" if args.out else None
    report = evaluate_checkpoint(args.model, args.data, args.split, out=out, device=args.device,
                                 max_images=args.max_images)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def print_report(report: dict) -> None:
    from csrinfer.apps.evaluation import format_table

    print(f"mask AP on {report['images']} images (pycocotools COCOeval, segm; percent):")
    print(format_table(report))
    fps = f"{report['fps']:.1f}" if report["fps"] else "-"
    print(f"FPS: {fps} on {report['device']} (batch 1; pre-processing, network, post-processing)")
    print(f"results: {report['results']}")
