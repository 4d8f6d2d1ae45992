"""The Markdown table and the PNG plot of a ``run_all.py`` result (issue 7).

``run_all.py`` calls these at its end; run this file on a JSON to remake them (e.g. after
editing notes, or for a JSON brought back from a GPU machine)::

    python benchmarks/report_all.py benchmarks/results/cpu-2core.json   # -> .md and .png beside it

The plot is mask AP against FPS: the paper's Table I methods as reference points ("V100
(paper)", COCO test-dev), our trained models where an AP was measured (on the set named in
the label), and every variant of the speed grid at the paper's input size and batch 1 as a
vertical line: speed only, no AP (random weights).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Paper Table I: method -> (FPS on a V100, mask AP on COCO test-dev, #params M).
PAPER_TABLE_I = {
    "YOLACT": (43.5, 28.2, 35.29), "PolarMask": (23.9, 29.1, 32.09), "SOLO": (12.7, 33.1, 36.08),
    "K-Net": (18.3, 34.1, 37.26), "Mask R-CNN": (17.5, 34.7, 44.17), "SOLOv2": (17.7, 34.8, 33.89),
    "CSR-D2S (ours in the paper)": (19.5, 35.4, 32.13),
}

# Where each label sits (points from its marker; negative x: to the left), so the close
# SOLOv2 / Mask R-CNN / K-Net / CSR-D2S cluster stays legible.
LABEL_OFFSETS = {"CSR-D2S (ours in the paper)": (8, 5), "SOLOv2": (-8, 4), "Mask R-CNN": (-8, -9), "K-Net": (8, -4),
                 "SOLO": (-8, -9)}


def _f(v, fmt="{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def md_table(header: list[str], rows: list[list], right: int = 0) -> list[str]:
    """Markdown table lines; the columns from index ``right`` on are right-aligned (numbers)."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def speed_table(report: dict) -> list[str]:
    header = ["variant", "input (WxH)", "batch", "precision", "FPS", "p50 ms", "p90 ms", "p99 ms", "pre p50",
              "network p50", "post p50", "timed"]
    rows = []
    for r in report["speed"]:
        lat = r["latency_ms"]
        rows.append([r["variant"], r["input_name"], r["batch"], r["precision"], _f(r["fps"]),
                     *(_f(lat["total"][p], "{:.1f}") for p in ("p50", "p90", "p99")),
                     *(_f(lat[k]["p50"], "{:.1f}") for k in ("preprocess", "network", "postprocess")), r["iters"]])
    rows.append(["*paper: CSR-D2S, Tesla V100*", "*COCO 1x (≤1333x800)*", "*1*", "*fp32*", "*19.5*"] + [""] * 7)
    return md_table(header, rows, right=4)


def _table_intro(t: dict) -> list[str]:
    return [f"Eager FP32, {t['input']}, batch 1, on {t['device_name']}; ratio = FPS / FPS of {t['ratio_to']}.", ""]


def table_ii(t: dict) -> list[str]:
    header = ["config", "arch", "CSR", "D2S", "params M (ours)", "GFLOPs (ours)", "FPS (ours)", "ratio (ours)",
              "timed", "paper AP", "paper FPS", "paper ratio"]
    rows = [[r["config"], r.get("arch", "csr_d2s"), "✓" if r["csr"] else "", "✓" if r["d2s"] else "",
             f"{r['params_M']:.2f}", _f(r.get("gflops"), "{:.1f}"), _f(r["fps"], "{:.3f}"),
             _f(r["fps_ratio"], "{:.3f}"), r["iters"], r["paper_ap"], r["paper_fps"], f"{r['paper_ratio']:.3f}"]
            for r in t["rows"]]
    return _table_intro(t) + md_table(header, rows, right=4)


def table_iii(t: dict) -> list[str]:
    header = ["CSR width", "params M (ours)", "params M (paper)", "GFLOPs (ours)", "FPS (ours)", "ratio (ours)",
              "timed", "paper AP", "paper FPS", "paper ratio"]
    rows = [[r["csr_channels"], f"{r['params_M']:.2f}", r["paper_params_M"], _f(r.get("gflops"), "{:.1f}"),
             _f(r["fps"], "{:.3f}"), _f(r["fps_ratio"], "{:.3f}"), r["iters"], r["paper_ap"], r["paper_fps"],
             f"{r['paper_ratio']:.3f}"] for r in t["rows"]]
    return _table_intro(t) + md_table(header, rows)


def floor_section(f: dict) -> list[str]:
    p = f["peaks"]
    peaks = ", ".join(f"{k.split('_')[1].upper()} matmul {v / 1e12:.3g} TFLOP/s" for k, v in p.items()
                      if k.startswith("matmul_") and k.endswith("_flops"))
    flops = f["flops_per_image"]
    lines = [f"`{f.get('model', 'csr_d2s_r50_coco')}` at {f['input']}: {flops['network'] / 1e9:.1f} GFLOP network + "
             f"{flops['postprocess'] / 1e9:.1f} GFLOP in-graph post-processing per image (2 FLOPs per multiply-add). "
             f"Peaks measured on this device: {peaks}; copy {p['copy_bytes_per_s'] / 1e9:.1f} GB/s (read + write).",
             "",
             "Bytes moved at least once = weights (read once) + input (float32, read once) + outputs (written once) + "
             "every layer's output — convolution, matrix product, max pooling — written once and read once "
             "(normalisation, activations, residual sums, pixel shuffle and resizes fused into them). "
             "Floor = max(FLOPs / peak FLOP/s, bytes / copy bandwidth); efficiency = floor / measured network "
             "latency (p50). Above 100 % would mean fewer arithmetic operations than the direct convolutions "
             "(e.g. Winograd) or a peak measured while the machine was busier than during the timing.",
             ""]
    header = ["batch", "precision", "GFLOP", "weights MB", "activations MB", "in+out MB", "total MB",
              "compute floor ms", "memory floor ms", "floor ms", "bound"]
    rows = [[r["batch"], r["precision"], f"{r['flops'] / 1e9:.1f}", f"{r['bytes']['weights'] / 1e6:.0f}",
             f"{r['bytes']['activations'] / 1e6:.0f}", f"{(r['bytes']['input'] + r['bytes']['outputs']) / 1e6:.0f}",
             f"{r['bytes']['total'] / 1e6:.0f}", f"{r['compute_floor_ms']:.2f}", f"{r['memory_floor_ms']:.2f}",
             f"{r['floor_ms']:.2f}", r["bound"]] for r in f["rows"]]
    lines += md_table(header, rows)
    if f["efficiency"]:
        rows = [[e["variant"], e["batch"], e["precision"], f"{e['floor_ms']:.2f}", f"{e['network_p50_ms']:.1f}",
                 f"{100 * e['efficiency']:.1f} %"] for e in f["efficiency"]]
        lines += [""] + md_table(["variant", "batch", "precision", "floor ms", "network p50 ms", "efficiency"], rows,
                                 right=3)
    return lines


def accuracy_section(points: list[dict]) -> list[str]:
    header = ["model", "backend", "device", "data", "images", "mask AP", "AP50", "AP75", "FPS (batch 1)"]
    rows = [[r["model"], r["backend"], r["device"], f"{r['accuracy']['data']} ({r['accuracy']['split']})",
             r["accuracy"]["images"], *(_f(r["accuracy"][k], "{:.1f}") for k in ("AP", "AP50", "AP75")),
             _f(r["fps"])] for r in points]
    return md_table(header, rows, right=4)


def markdown(report: dict) -> str:
    v = report["versions"]
    load = report.get("loadavg", {})
    lines = [f"# csrinfer benchmarks: {report['machine']} ({report['device_name']})", "",
             f"- date: {report['date']}; total {report.get('total_seconds', 0):.0f} s",
             f"- command: `{report['command']}`",
             f"- versions: csrinfer {v['csrinfer']}, torch {v['torch']} (CUDA {v['cuda']}), onnxruntime "
             f"{v['onnxruntime']}, TensorRT {v['tensorrt']}",
             f"- load average (1/5/15 min): start {load.get('start')}, end {load.get('end')}"]
    lines += [f"- {n}" for n in report["notes"]]
    lines += ["", "## Speed: the paper model, image in → instances out", ""] + speed_table(report)
    if report.get("table_ii"):
        lines += ["", "## Paper Table II: the effect of each component", ""] + table_ii(report["table_ii"])
    if report.get("table_iii"):
        lines += ["", "## Paper Table III: CSR width", ""] + table_iii(report["table_iii"])
    if report.get("floor"):
        lines += ["", "## Compute and memory floor", ""] + floor_section(report["floor"])
    if report.get("accuracy_points"):
        lines += ["", "## Trained models: mask AP and speed", ""] + accuracy_section(report["accuracy_points"])
    if report["skipped"]:
        lines += ["", "## Not run", ""] + [f"- {s['what']}: {s['reason']}" for s in report["skipped"]]
    if report["errors"]:
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in report["errors"].items()]
    return "\n".join(lines) + "\n"


def write_markdown(report: dict, path) -> Path:
    from csrinfer import atomic

    return atomic.write_text(path, markdown(report))


def write_plot(report: dict, path) -> Path | None:
    """Mask AP vs FPS (log x). Returns None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from csrinfer.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for name, (fps, ap, _) in PAPER_TABLE_I.items():
        ours = name.startswith("CSR-D2S")
        ax.scatter([fps], [ap], marker="*" if ours else "o", s=160 if ours else 50, color="tab:red" if ours else "tab:gray",
                   zorder=3)
        dx, dy = LABEL_OFFSETS.get(name, (6, -3))
        ax.annotate(f"{name}, V100 (paper)", (fps, ap), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                    ha="left" if dx > 0 else "right")
    first = next(iter(report["settings"]["sizes"]), None)
    speed_only = [r for r in report["speed"] if r["input_name"] == first and r["batch"] == 1]
    ap_points = report.get("accuracy_points", [])
    fps_values = [19.5, 43.5, 12.7] + [r["fps"] for r in speed_only] + [r["fps"] for r in ap_points]
    lo, hi = min(fps_values) / 2, max(fps_values) * 2
    colors = plt.get_cmap("tab10")
    for i, r in enumerate(speed_only):
        ax.axvline(r["fps"], color=colors(i), linestyle=":", linewidth=1.5, zorder=1)
        ax.text(r["fps"], 0.02, f" {r['variant']} ({r['precision']}), {report['machine']}: "
                f"{r['fps']:.3g} FPS — speed only, no AP", rotation=90, fontsize=7, color=colors(i),
                transform=ax.get_xaxis_transform(), va="bottom", ha="right")
    for r in ap_points:
        a = r["accuracy"]
        if a["AP"] is None:
            continue
        ax.scatter([r["fps"]], [a["AP"]], marker="D", s=50, color="tab:blue", zorder=3)
        ax.annotate(f"{r['config']} on {Path(a['data']).name} ({a['split']}, not COCO), {r['backend']} "
                    f"{r['device']}", (r["fps"], a["AP"]), textcoords="offset points", xytext=(-8, 4), fontsize=7,
                    color="tab:blue", ha="right")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    aps = [v[1] for v in PAPER_TABLE_I.values()] + [r["accuracy"]["AP"] for r in ap_points
                                                    if r["accuracy"]["AP"] is not None]
    ax.set_ylim(min(0.0, min(aps)) if ap_points else 25, max(aps) + 5)
    ax.set_xlabel("FPS (images/s, batch 1; log scale)")
    ax.set_ylabel("mask AP (%)")
    ax.set_title(f"mask AP vs speed — paper Table I (V100) and csrinfer on {report['machine']} "
                 f"({report['device_name']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: report_all.py RESULT.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    report = json.loads(path.read_text())
    print(write_markdown(report, path.with_suffix(".md")))
    print(write_plot(report, path.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
