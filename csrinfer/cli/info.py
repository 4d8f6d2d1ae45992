"""``csrinfer info``: parameters per part and FLOPs of a config or checkpoint."""

from __future__ import annotations

import json

from csrinfer.cli.common import add_model_argument, parse_hw

HELP = "parameter counts per part and GFLOPs of a model config or checkpoint"


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="model config YAML (models/*.yaml)")
    add_model_argument(src, "--ckpt", required=False, help="checkpoint .pth")
    p.add_argument("--input-size", type=parse_hw, default=None, metavar="HxW",
                   help="input size for FLOPs (default: the config's export size, 800x1344)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from csrinfer.model.summary import model_summary

    summary = model_summary(config=args.config, ckpt=args.model, input_size=args.input_size)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    p = summary["parameters"]
    print(f"{summary['name']}  ({summary['backbone']}, CSR {'on' if summary['csr'] else 'off'}"
          f"{' width ' + str(summary['csr_channels']) if summary['csr'] else ''}, "
          f"D2S {'on' if summary['d2s'] else 'off'}, {summary['num_classes']} classes)")
    for part in ("backbone", "neck", "head", "total"):
        print(f"  {part:<9} {p[part] / 1e6:8.2f} M parameters")
    f = summary["flops"]
    print(f"  GFLOPs at {f['height']}x{f['width']} (HxW): network {f['network'] / 1e9:.1f}, "
          f"in-graph post-processing {f['postprocess'] / 1e9:.1f}  (2 FLOPs per multiply-add)")
    return 0
