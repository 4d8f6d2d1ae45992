"""``csrinfer convert --from mmdet``: an mmdetection SOLOv2 checkpoint -> a csrinfer checkpoint."""

from __future__ import annotations

from csrinfer.cli.common import output_folder

HELP = "convert a checkpoint trained elsewhere (mmdetection SOLOv2) into a csrinfer checkpoint"


def add_arguments(p) -> None:
    p.add_argument("source", help="the checkpoint to convert (.pth)")
    p.add_argument("--from", dest="framework", required=True, choices=["mmdet"],
                   help="where it was trained: mmdet (mmdetection 2.x/3.x SOLOv2, no DCN)")
    p.add_argument("--config", required=True,
                   help="csrinfer model config describing it, e.g. models/solov2_r50_fpn_coco.yaml")
    p.add_argument("--out", required=True, type=output_folder,
                   help="folder to write the csrinfer checkpoint into, as OUT/model.pth")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle any Python object in the file (only for files from a trusted source)")


def run(args) -> int:
    from csrinfer.convert.mmdet import convert_mmdet

    from pathlib import Path

    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = convert_mmdet(args.source, args.config, Path(args.out) / "model.pth", trust=args.trust_pickle)
    print(f"wrote {out} (from mmdetection {args.source}); next: csrinfer export --model {out} --out {args.out}")
    return 0
