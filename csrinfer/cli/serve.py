"""``csrinfer serve``: a model file served by a real Triton Inference Server on 127.0.0.1.

Writes a model repository (a Python-backend ``Segmenter`` around the file, csrinfer/serve/
repository.py), starts ``tritonserver`` on it, prints the HTTP, gRPC and metrics URLs once
every model is ready, and stops it cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from csrinfer.cli.common import add_model_argument, output_folder

HELP = "serve a model on Triton Inference Server (HTTP, gRPC and metrics on 127.0.0.1)"


def add_arguments(p) -> None:
    add_model_argument(p, help="model file: .pth, .onnx or .plan (with its .json sidecar)")
    p.add_argument("--port", type=int, default=8000,
                   help="HTTP port; gRPC listens on PORT+1 and metrics on PORT+2 (0: any free ports; default 8000)")
    p.add_argument("--instances", type=int, default=1, help="model instances (parallel executions; default 1)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch the dynamic batcher forms (default 8)")
    p.add_argument("--no-dynamic-batching", action="store_true", help="run requests one at a time per instance")
    p.add_argument("--repo", type=output_folder, metavar="DIR", help="write the model repository here and keep it (default: a temporary folder)")
    p.add_argument("--name", default="csrinfer", help="model name clients ask for (default csrinfer)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: the best available)")
    p.add_argument("--log", help="tritonserver's log file (default: tritonserver.log beside --repo, else in the temp folder)")


def run(args) -> int:
    from csrinfer.errors import ConfigError, ServerError
    from csrinfer.serve.repository import write_serve_repo
    from csrinfer.serve.server import TritonServer

    highest = 65535 - 2  # gRPC and metrics take PORT+1 and PORT+2
    if not 0 <= args.port <= highest:
        raise ConfigError(f"--port {args.port} is out of range: give 1 to {highest} (gRPC and metrics take the next "
                          f"two ports) or 0 for any free ports")
    with tempfile.TemporaryDirectory(prefix="csrinfer-serve-") as tmp:
        repo = Path(args.repo) if args.repo else Path(tmp) / "repo"
        write_serve_repo(args.model, repo, name=args.name, instances=args.instances, max_batch=args.max_batch,
                         dynamic_batching=not args.no_dynamic_batching, device=args.device)
        ports = [args.port, args.port + 1, args.port + 2] if args.port else [0, 0, 0]
        # the default log outlives the temporary repository, so a failure can still be read
        log = Path(args.log) if args.log else (repo.parent / "tritonserver.log" if args.repo else
                                               Path(tempfile.gettempdir()) / f"csrinfer-serve-{os.getpid()}.log")
        server = TritonServer(repo, *ports, log_file=log)
        signal.signal(signal.SIGTERM, _interrupt)
        print(f"starting tritonserver on {repo} (log: {log}) ...", flush=True)
        try:
            server.start()
            urls = server.urls
            print(f"serving '{args.name}' ({Path(args.model).name})\n"
                  f"  HTTP     http://{urls['http']}   (RemoteSegmenter('{urls['http']}'))\n"
                  f"  gRPC     grpc://{urls['grpc']}\n"
                  f"  metrics  {urls['metrics']}\n"
                  f"Ctrl-C to stop.", flush=True)
            while server.running:
                time.sleep(0.5)
            raise ServerError(f"tritonserver stopped by itself (exit code {server.process.returncode}): "
                              f"{server.failure_reason()}")
        except KeyboardInterrupt:
            print("stopping tritonserver ...", file=sys.stderr, flush=True)
        finally:
            code = server.stop()
        print(f"stopped (exit code {code})", file=sys.stderr)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
