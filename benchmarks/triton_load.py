"""Load test of ``csrinfer serve``'s Triton model: dynamic batching on vs off, 1/4/16 clients.

One tritonserver on 127.0.0.1 serves the same checkpoint twice: ``batched`` (dynamic batching,
up to ``--max-batch`` requests per execution) and ``single`` (no dynamic batching: one request
per execution). Each client is a thread with its own gRPC connection sending one encoded image
at a time (closed loop) until its quota is done. Runs alternate between the two models and
repeat, and the median of the repeats is reported, because the machine's cores are shared.

Bounded: ``--requests`` per client per run, a per-request timeout, and ``--time-limit`` for the
whole benchmark (runs not started by then are skipped and listed). Traffic stays on loopback.

    PYTHONPATH=$PWD python benchmarks/triton_load.py            # -> benchmarks/results/triton_load_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from csrinfer import atomic  # noqa: E402
from csrinfer.apps.bench import cpu_name  # noqa: E402
from csrinfer.serve import protocol  # noqa: E402


def make_checkpoint(path: Path, short_side: int) -> Path:
    """The small config (ResNet-18) at ``short_side`` px, random weights that yield many instances."""
    import torch

    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.config import load_config
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    cfg = load_config(REPO / "models" / "csr_d2s_r18_small.yaml")
    cfg.input.short_side, cfg.input.max_size = short_side, short_side * 3 // 2
    torch.manual_seed(0)
    return save_checkpoint(path, make_confident(build_model(cfg)).eval(), cfg)


def encoded_images(count: int, size: tuple[int, int]) -> list[bytes]:
    rng = np.random.default_rng(0)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(count):
        base = 127 + 100 * np.sin(x[..., None] / rng.uniform(5, 20, 3) + y[..., None] / rng.uniform(5, 20, 3))
        out.append(cv2.imencode(".jpg", np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8))[1].tobytes())
    return out


def run_load(url: str, model: str, clients: int, requests: int, images: list[bytes], timeout: float) -> dict:
    """``clients`` threads x ``requests`` each; latency of every request, failures and losses counted."""
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = grpcclient.InferenceServerClient(url)
        barrier.wait()
        for i in range(requests):
            data = images[(k + i) % len(images)]
            t = grpcclient.InferInput(protocol.IMAGE, [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[data]], dtype=object))
            start = time.perf_counter()
            try:
                result = conn.infer(model, [t], client_timeout=timeout)
                ok = result.as_numpy("num_instances") is not None
                with lock:
                    (latencies.append(time.perf_counter() - start) if ok else failures.append("no output"))
            except Exception as e:  # noqa: BLE001 - every failure is counted, none ends the run
                with lock:
                    failures.append(str(e).splitlines()[0][:200])
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    sent = clients * requests
    return {"sent": sent, "ok": len(latencies), "failed": len(failures), "lost": sent - len(latencies) - len(failures),
            "wall_s": wall, "throughput_rps": len(latencies) / wall,
            "p50_ms": 1e3 * float(np.percentile(latencies, 50)) if latencies else None,
            "p99_ms": 1e3 * float(np.percentile(latencies, 99)) if latencies else None,
            "failures": failures[:5]}


def median_of(runs: list[dict]) -> dict:
    keys = ("throughput_rps", "p50_ms", "p99_ms", "wall_s")
    out = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in keys}
    out.update(sent=sum(r["sent"] for r in runs), ok=sum(r["ok"] for r in runs),
               failed=sum(r["failed"] for r in runs), lost=sum(r["lost"] for r in runs), repeats=len(runs))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="checkpoint/ONNX to serve (default: the small config at --short-side, random weights)")
    p.add_argument("--short-side", type=int, default=192)
    p.add_argument("--image-size", default="240x320", help="HxW of the JPEG requests")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests", type=int, default=0, help="requests per client per run (default: 48 / clients, at least 3)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request before it counts as failed")
    p.add_argument("--time-limit", type=float, default=900.0, help="no new run starts after this many seconds")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "triton_load_cpu.json"))
    args = p.parse_args()

    from csrinfer.serve.repository import write_serve_repo
    from csrinfer.serve.server import TritonServer

    began = time.monotonic()
    clients_list = [int(c) for c in args.clients.split(",")]
    h, w = (int(v) for v in args.image_size.lower().split("x"))
    images = encoded_images(4, (h, w))
    load_before = os.getloadavg()
    results, skipped = {}, []
    with tempfile.TemporaryDirectory(prefix="triton-load-") as tmp:
        model = Path(args.model) if args.model else make_checkpoint(Path(tmp) / "small.pth", args.short_side)
        repo = Path(tmp) / "repo"
        write_serve_repo(model, repo, name="batched", max_batch=args.max_batch, queue_delay_us=args.queue_delay_us)
        write_serve_repo(model, repo, name="single", max_batch=args.max_batch, dynamic_batching=False)
        with TritonServer(repo, log_file=Path(tmp) / "tritonserver.log") as server:
            url = server.urls["grpc"]
            for name in ("batched", "single"):  # warm-up: first executions pay for lazy initialisation
                run_load(url, name, 2, 2, images, args.timeout)
            runs: dict[tuple[str, int], list[dict]] = {}
            for rep in range(args.repeats):
                for clients in clients_list:
                    requests = args.requests or max(3, 48 // clients)
                    for name in (("batched", "single") if rep % 2 == 0 else ("single", "batched")):
                        if time.monotonic() - began > args.time_limit:
                            skipped.append(f"{name} x{clients} repeat {rep}")
                            continue
                        r = run_load(url, name, clients, requests, images, args.timeout)
                        runs.setdefault((name, clients), []).append(r)
                        print(f"rep {rep} {name:8s} clients={clients:2d}: {r['throughput_rps']:.2f} req/s, "
                              f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, failed {r['failed']}, lost {r['lost']}",
                              flush=True)
    for (name, clients), rs in runs.items():
        results.setdefault(name, {})[str(clients)] = {"median": median_of(rs), "runs": rs}
    speedup = {str(c): results["batched"][str(c)]["median"]["throughput_rps"] / results["single"][str(c)]["median"]["throughput_rps"]
               for c in clients_list if str(c) in results.get("batched", {}) and str(c) in results.get("single", {})}
    report = {
        "benchmark": "csrinfer serve on tritonserver (nvidia-pytriton 0.7.0 wheel), gRPC on 127.0.0.1",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": cpu_name(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"model": str(args.model or f"small config, short side {args.short_side}, random weights")},
        "throughput_ratio_batched_over_single": speedup,
        "results": results,
        "skipped_for_time": skipped,
        "all_requests_answered": all(r["failed"] == 0 and r["lost"] == 0 for rs in runs.values() for r in rs),
    }
    out = Path(args.out)
    atomic.write_json(out, report)
    print(json.dumps({"throughput_ratio_batched_over_single": speedup,
                      "all_requests_answered": report["all_requests_answered"]}, indent=2))
    print(f"wrote {out}")
    return 0 if report["all_requests_answered"] else 1


if __name__ == "__main__":
    sys.exit(main())
