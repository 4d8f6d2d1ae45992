"""``csrinfer serve``: starts a real server, prints where it listens, stops on Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from csrinfer.cli import main
from csrinfer.errors import BackendUnavailableError

REPO = Path(__file__).resolve().parents[2]


def test_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err


@pytest.mark.parametrize("port", ["65534", "99999", "-1"])
def test_a_port_without_room_for_grpc_and_metrics_is_refused_before_anything_else(tmp_path, capsys, port):
    # the model is missing too: refusing the port first shows nothing else was looked at
    assert main(["serve", "--model", str(tmp_path / "missing.pth"), "--port", port]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"csrinfer serve: error: --port {port} is out of range: give 1 to 65533 (gRPC and metrics take "
                   f"the next two ports) or 0 for any free ports")


def test_serve_prints_the_urls_and_stops_cleanly_on_ctrl_c(tmp_path, tiny_checkpoint):
    from csrinfer.serve.server import find_tritonserver

    try:
        find_tritonserver()
    except BackendUnavailableError as e:
        pytest.skip(f"tritonserver is not installed ({e})")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "csrinfer", "serve", "--model", str(tiny_checkpoint), "--port", "0",
                             "--repo", str(tmp_path / "repo")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        out = "".join(lines)
        http = re.search(r"HTTP\s+http://(127\.0\.0\.1:\d+)", out)
        assert http and re.search(r"gRPC\s+grpc://127\.0\.0\.1:\d+", out) and "metrics" in out, out + proc.stderr.read()
        with urllib.request.urlopen(f"http://{http.group(1)}/v2/health/ready", timeout=10) as r:
            assert r.status == 200
        assert (tmp_path / "repo" / "csrinfer" / "config.pbtxt").exists()  # --repo keeps the repository
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert "stopped" in proc.stderr.read()
        with pytest.raises(OSError):  # nothing listens there any more
            urllib.request.urlopen(f"http://{http.group(1)}/v2/health/ready", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
