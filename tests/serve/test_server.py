"""A real tritonserver on free loopback ports, started once for the module.

Its repository holds both layouts csrinfer writes: ``csrinfer`` and ``seg_onnx`` (``csrinfer
serve``'s Python-backend Segmenter around a checkpoint and around its ONNX export), and ``ens``
(the ``--triton-repo`` ensemble
around the ONNX export, its ONNX Runtime engine stood in for by tests/serve/ort_engine.py,
since the pip wheel's tritonserver has no ONNX Runtime backend); ``solov2`` and ``solov2_ens``
the same two layouts around mmdetection's tiny SOLOv2, converted (issue 22).
"""

import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import cv2
import numpy as np
import pytest

from csrinfer.errors import BackendUnavailableError, ConfigError, ImageError, ServerError
from tests.serve.conftest import random_images

try:
    from csrinfer.serve.server import find_tritonserver

    find_tritonserver()
except BackendUnavailableError as e:  # the only reason to skip: no binary on this machine
    pytest.skip(f"tritonserver is not installed ({e})", allow_module_level=True)

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[http,grpc]")

import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402

from csrinfer.serve.client import RemoteSegmenter  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint, tiny_onnx, solov2_export):
    from csrinfer.serve.repository import MODEL_PY, local_python_paths, write_serve_repo, write_triton_repo
    from csrinfer.serve.server import TritonServer

    repo = tmp_path_factory.mktemp("triton") / "repo"
    write_serve_repo(tiny_checkpoint, repo, max_batch=4)
    write_serve_repo(tiny_onnx, repo, name="seg_onnx", max_batch=4, instances=2)
    paths = local_python_paths()
    write_serve_repo(solov2_export[0], repo, name="solov2", max_batch=4)
    write_triton_repo(tiny_onnx, repo, name="ens", max_batch=4, kind="KIND_CPU", python_paths=paths)
    write_triton_repo(solov2_export[1], repo, name="solov2_ens", max_batch=1, kind="KIND_CPU", python_paths=paths)
    for engine in (repo / "ens_engine", repo / "solov2_ens_engine"):
        config = engine / "config.pbtxt"
        config.write_text(config.read_text().replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
        (engine / "1" / "model.py").write_text(MODEL_PY.format(
            role="test stand-in for the ONNX Runtime backend", module="tests.serve.ort_engine", cls="OrtEngineModel",
            paths=paths["paths"], site_dirs=paths["site_dirs"]))
    srv = TritonServer(repo, exit_timeout=1, log_file=repo.parent / "tritonserver.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    arrays = random_images(seed=3)
    path = tmp_path_factory.mktemp("images") / "first.png"
    cv2.imwrite(str(path), arrays[0])
    return arrays, path


def assert_same(got, want):
    assert got.image_size == want.image_size
    assert len(got) == len(want) > 0
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.masks, want.masks)
    np.testing.assert_array_equal(got.boxes, want.boxes)
    assert tuple(got.class_names) == tuple(want.class_names)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_serve_model_matches_a_local_segmenter(server, images, tiny_checkpoint, protocol):
    from csrinfer.runtime.segmenter import Segmenter

    arrays, path = images
    want = Segmenter(tiny_checkpoint, device="cpu").predict_batch(arrays)
    remote = RemoteSegmenter(server.urls[protocol], protocol=protocol)
    got = remote.predict_batch([path] + arrays)  # a file travels encoded, arrays as raw pixels
    for g, w in zip(got, [want[0]] + want):
        assert_same(g, w)


def test_serve_model_runs_an_onnx_file_like_a_local_segmenter(server, images, tiny_onnx):
    from csrinfer.runtime.segmenter import Segmenter

    arrays, _ = images
    want = Segmenter(tiny_onnx, device="cpu").predict_batch(arrays)
    for g, w in zip(RemoteSegmenter(server.urls["grpc"], protocol="grpc", model="seg_onnx").predict_batch(arrays), want):
        assert_same(g, w)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_matches_a_local_onnx_segmenter(server, images, tiny_onnx, protocol):
    from csrinfer.runtime.segmenter import Segmenter

    arrays, _ = images
    want = Segmenter(tiny_onnx, device="cpu").predict_batch(arrays)
    remote = RemoteSegmenter(server.urls[protocol], protocol=protocol, model="ens")
    assert not remote.takes_raw  # arrays go as PNG: lossless, same pixels
    for g, w in zip(remote.predict_batch(arrays), want):
        assert_same(g, w)


@pytest.mark.parametrize("model", ["solov2", "solov2_ens"])
def test_a_converted_mmdetection_solov2_serves_like_a_local_segmenter(server, images, solov2_export, model):
    from csrinfer.runtime.segmenter import Segmenter

    arrays, _ = images
    local = solov2_export[0] if model == "solov2" else solov2_export[1]
    want = Segmenter(local, device="cpu").predict_batch(arrays)
    remote = RemoteSegmenter(server.urls["grpc"], protocol="grpc", model=model)
    got = remote.predict_batch(arrays)
    assert tuple(got[0].class_names) == ("person", "bicycle", "car", "cat", "dog")
    for g, w in zip(got, want):
        assert_same(g, w)


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and holds almost nothing (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bad_requests(module, image):
    """(what, inputs, words the error must contain) for each kind of bad request."""
    def tensor(name, array, datatype):
        t = module.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        return t

    def encoded(data):
        return [tensor("image", np.array([[data]], dtype=object), "BYTES")]

    return [
        ("wrong dtype", [tensor("image_raw", image[None].astype(np.float32), "FP32")], ["image_raw", "fp32", "uint8"]),
        ("wrong shape", [tensor("image_raw", np.dstack([image, image[..., :1]])[None], "UINT8")], ["shape", "image_raw"]),
        ("garbage bytes", encoded(b"this is not an image" * 10), ["not an image"]),
        ("empty body", encoded(b""), ["empty"]),
        ("60000x60000 header", encoded(png_header_claiming(60000, 60000)), ["pixels", "limit"]),
        ("both image inputs", [tensor("image_raw", image[None], "UINT8")] + encoded(b"x"), ["exactly one"]),
    ]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_an_error_naming_the_problem_and_the_server_goes_on(server, images, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(server.urls[protocol])
    remote = RemoteSegmenter(server.urls[protocol], protocol=protocol)
    arrays, path = images
    for what, inputs, words in bad_requests(module, arrays[1]):
        with pytest.raises(Exception) as info:
            client.infer("csrinfer", inputs)
        message = str(info.value).lower()
        assert all(w.lower() in message for w in words), (what, message)
        assert len(remote.predict(path)) > 0, f"no good answer after: {what}"


def test_a_score_threshold_outside_0_1_is_refused_before_connecting():
    with pytest.raises(ConfigError, match="score_thr is a probability"):
        RemoteSegmenter("127.0.0.1:1", score_thr=1.5)


def test_refused_images_are_image_errors_in_the_client(server, tmp_path):
    remote = RemoteSegmenter(server.urls["http"])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_claiming(60000, 60000))
    with pytest.raises(ImageError, match="over the limit"):
        remote.predict(bomb)
    with pytest.raises(ImageError, match="does not exist"):
        remote.predict(tmp_path / "missing.jpg")


def test_an_empty_http_body_is_refused(server, images):
    request = urllib.request.Request(f"http://{server.urls['http']}/v2/models/csrinfer/infer", data=b"",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400 and info.value.read()
    assert len(RemoteSegmenter(server.urls["http"]).predict(images[1])) > 0


def test_predict_cli_with_a_server_writes_what_a_local_model_writes(server, images, tiny_checkpoint, tmp_path):
    import json

    from csrinfer.cli import main

    _, path = images
    flags = {"remote": ["--server", f"grpc://{server.urls['grpc']}"],
             "local": ["--model", str(tiny_checkpoint), "--device", "cpu"]}
    for how, extra in flags.items():
        assert main(["predict", str(path), *extra, "--out", str(tmp_path / how), "--no-draw", "--quiet"]) == 0
    remote, local = (json.loads((tmp_path / how / "predictions.json").read_text()) for how in flags)
    assert len(remote) == len(local) > 0
    assert [r["segmentation"] for r in remote] == [r["segmentation"] for r in local]


def test_no_server_is_one_sentence():
    from csrinfer.serve.server import free_ports

    with pytest.raises(ServerError, match="no Triton server answers"):
        RemoteSegmenter(f"127.0.0.1:{free_ports(1)[0]}", timeout=5)


def test_requests_in_flight_when_the_server_stops_get_an_error(server, images):
    """Last in this module: it stops the module's server."""
    remote = RemoteSegmenter(server.urls["grpc"], protocol="grpc", concurrency=64, timeout=60)
    outcome = {}

    def flood():
        try:
            # Far more work than the server finishes in its shutdown grace period, so some
            # requests are still queued or running when it stops, however fast the machine.
            outcome["result"] = remote.predict_batch([images[0][0]] * 2000)
        except Exception as e:  # noqa: BLE001
            outcome["error"] = e

    worker = threading.Thread(target=flood)
    worker.start()
    time.sleep(1.0)
    server.stop()
    worker.join(timeout=30)
    assert not worker.is_alive(), "a request in flight hung after the server stopped"
    assert isinstance(outcome.get("error"), ServerError), outcome
