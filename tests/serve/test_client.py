"""RemoteSegmenter's URL checks and close, before any server is involved."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from csrinfer.errors import ServerError
from csrinfer.serve.client import RemoteSegmenter, parse_url

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url", ["localhost:99999", "grpc://localhost:99999", "notaurl::/x", "127.0.0.1:0",
                                 "http://h:-1"])
def test_a_port_outside_1_65535_is_refused(url):
    # gRPC would take 99999 modulo 65536 and call port 34463 instead
    with pytest.raises(ServerError, match=r"has no valid port; use HOST:PORT with a port from 1 to 65535"):
        parse_url(url, None)


@pytest.mark.parametrize("url, want", [("localhost:8000", ("localhost:8000", "http")),
                                       ("grpc://127.0.0.1:65535/", ("127.0.0.1:65535", "grpc")),
                                       ("[::1]:8001", ("[::1]:8001", "http")),
                                       ("h:8000/base", ("h:8000/base", "http"))])
def test_good_urls_pass(url, want):
    assert parse_url(url, None) == want


class _RecordingClient:
    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


def test_close_closes_the_connection_and_a_half_built_segmenter_has_none_to_close():
    built = RemoteSegmenter.__new__(RemoteSegmenter)  # as __init__ leaves it once connected
    built._client = _RecordingClient()
    with built:
        pass
    assert built._client.closed == 1  # leaving the with-block closed the connection, once
    built.close()
    assert built._client.closed == 2
    half = RemoteSegmenter.__new__(RemoteSegmenter)  # __init__ raised before connecting
    half.close()  # no AttributeError, and nothing made up to close
    assert not hasattr(half, "_client")


@pytest.mark.parametrize("server", ["localhost:99999", "http://http://127.0.0.1:1"])
def test_a_bad_server_address_is_one_line_on_stderr(tmp_path, server):
    """The second address passes our checks and is refused inside tritonclient's constructor,
    whose ``__del__`` then met a half-built object ("Exception ignored in ... __del__")."""
    pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    result = subprocess.run([sys.executable, "-m", "csrinfer", "predict", str(image), "--server", server,
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.startswith("csrinfer predict: error: ") and result.stderr.count("\n") == 1, result.stderr
