"""Parameters and GFLOPs of the true SOLOv2 (mmdetection's, models/solov2_r50_fpn_coco.yaml) beside
csrinfer's one-map FPN baseline and the paper model, at 800x1344 (paper Table II's size).

Shapes only (csrinfer.model.complexity runs on the "meta" device): no timing, any machine.
    python benchmarks/solov2_complexity.py   # -> benchmarks/results/solov2_complexity.json
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from csrinfer import atomic, bench  # noqa: E402
from csrinfer.config import load_config  # noqa: E402
from csrinfer.model import build_model  # noqa: E402
from csrinfer.model.complexity import count_flops, count_parameters  # noqa: E402

CONFIGS = ("solov2_r50_fpn_coco", "fpn_r50_coco", "csr_d2s_r50_coco", "solov2_light_r50_fpn_coco")


def main() -> None:
    rows = []
    for name in CONFIGS:
        model = build_model(load_config(REPO / "models" / f"{name}.yaml")).eval()
        params = count_parameters(model)
        flops = count_flops(model, 800, 1344)
        rows.append({"config": name, "params_M": {k: v / 1e6 for k, v in params.items()},
                     "gflops_network": flops["network"] / 1e9, "gflops_postprocess": flops["postprocess"] / 1e9})
        print(f"{name:28s} {params['total'] / 1e6:6.2f} M params  {flops['network'] / 1e9:7.1f} GFLOPs (network)")
    result = {"what": "params and GFLOPs at 800x1344, batch 1 (2 FLOPs per multiply-add)",
              "command": "python benchmarks/solov2_complexity.py", "date": datetime.now(timezone.utc).isoformat(),
              "host": {**bench.host_info(), "loadavg": bench.loadavg()}, "rows": rows,
              "note": "postprocess GFLOPs are counted with the CSR-D2S post-processing at each model's mask stride"}
    out = REPO / "benchmarks" / "results" / "solov2_complexity.json"
    atomic.atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))


if __name__ == "__main__":
    main()
