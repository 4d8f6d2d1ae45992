"""``RemoteSegmenter``: ``Segmenter``'s interface, run by a Triton server over HTTP or gRPC.

It talks to any repository csrinfer writes (``csrinfer serve`` or an exported ensemble in
NVIDIA's container) through :mod:`csrinfer.serve.protocol`: a file is sent as its encoded
bytes (what was on disk, nothing decoded here), an array as raw uint8 BGR pixels (or as a PNG
when the served model takes encoded images only). ``predict_batch`` sends one request per
image, all in flight at once, so the server's dynamic batcher can join them.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from csrinfer.errors import BackendUnavailableError, ConfigError, ImageError, ServerError
from csrinfer.image_io import MAX_PIXELS
from csrinfer.runtime.instances import Instances
from csrinfer.serve import protocol as wire


def parse_url(url: str, protocol_name: str | None) -> tuple[str, str]:
    """'grpc://host:port' / 'http://host:port' / 'host:port' -> (host:port, protocol)."""
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme not in ("http", "grpc"):
            raise ServerError(f"server URL {url} has scheme '{scheme}'; use http://HOST:PORT or grpc://HOST:PORT")
        if protocol_name not in (None, scheme):
            raise ServerError(f"server URL {url} says {scheme} but protocol='{protocol_name}' was asked for")
        address, name = rest.rstrip("/"), scheme
    else:
        address, name = url.rstrip("/"), protocol_name or "http"
    if name not in ("http", "grpc"):
        raise ServerError(f"protocol '{name}' is not one of http, grpc")
    _check_port(url, address)
    return address, name


def _check_port(url: str, address: str) -> None:
    """Refuse a port that is not 1..65535: gRPC would quietly take it modulo 65536 and call another port."""
    try:
        port = urlsplit(f"//{address}").port
    except ValueError:
        port = -1
    if port is not None and not 0 < port <= 65535:
        raise ServerError(f"server URL {url} has no valid port; use HOST:PORT with a port from 1 to 65535")


class RemoteSegmenter:
    """Instance segmentation by a csrinfer model served on Triton.

    Args:
        url: ``HOST:PORT`` of the server's HTTP (or gRPC) endpoint, optionally with
            ``http://`` or ``grpc://``.
        protocol: "http" or "grpc" (default: the URL's scheme, else http).
        model: the served model's name (``csrinfer`` unless the repository was given another).
        timeout: seconds to wait for one response before giving up with :class:`ServerError`.
        concurrency: requests in flight at once in ``predict_batch``.
        score_thr: keep instances scoring above this (default: all the server returns, which
            applied the model's own thresholds, as ``Segmenter``).
        max_pixels: image files claiming more pixels are refused when read here (as ``Segmenter``).

    A gRPC RemoteSegmenter may be shared by threads; an HTTP one (gevent underneath) may not:
    give each thread its own.

    Example:
        >>> seg = RemoteSegmenter("127.0.0.1:8000")
        >>> instances = seg.predict("street.jpg")
    """

    def __init__(self, url: str, protocol: str | None = None, model: str = "csrinfer",
                 timeout: float = 60.0, concurrency: int = 8, score_thr: float | None = None,
                 max_pixels: int = MAX_PIXELS):
        if score_thr is not None and not 0 <= score_thr <= 1:
            raise ConfigError(f"score_thr is a probability in [0, 1], got {score_thr}")
        self.address, self.protocol = parse_url(url, protocol)
        self.score_thr = score_thr
        self.max_pixels = max_pixels
        self.model = model
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        self._module = _client_module(self.protocol)
        self._client = self._connect()
        config = self._model_config()
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.class_names = tuple(json.loads(params.get("class_names") or "[]"))
        ids = json.loads(params.get("category_ids") or "null")  # absent from repositories of older csrinfer
        self.category_ids = tuple(ids) if ids is not None else None
        self.takes_raw = any(i["name"] == wire.IMAGE_RAW for i in config.get("input", []))

    def _connect(self):
        m = self._module
        try:
            if self.protocol == "http":
                client = _quiet_del(m.InferenceServerClient)(
                    self.address, concurrency=self.concurrency, connection_timeout=self.timeout,
                    network_timeout=self.timeout)
            else:
                client = _quiet_del(m.InferenceServerClient)(self.address)
            ready = client.is_model_ready(self.model)
        except Exception as e:  # noqa: BLE001 - tritonclient raises socket, gevent and grpc errors
            raise ServerError(f"no Triton server answers at {self.protocol}://{self.address} ({_short(e)})") from None
        if not ready:
            raise ServerError(f"the Triton server at {self.protocol}://{self.address} has no ready model "
                              f"'{self.model}'")
        return client

    def _model_config(self) -> dict:
        if self.protocol == "http":
            return self._client.get_model_config(self.model)
        return self._client.get_model_config(self.model, as_json=True)["config"]

    def predict(self, image) -> Instances:
        """One image (a path, or an H x W x 3 uint8 BGR array) -> Instances at its size."""
        return self.predict_batch([image])[0]

    __call__ = predict

    def predict_batch(self, images: Sequence) -> list[Instances]:
        """Several images -> one Instances each, in order; all requests are in flight together.

        Raises :class:`ImageError` for the first image the server (or this side) refused and
        :class:`ServerError` when the server cannot be reached or fails.
        """
        requests = [self._inputs(im, i if len(images) > 1 else None) for i, im in enumerate(images)]
        results: list[Instances | None] = [None] * len(requests)
        for start in range(0, len(requests), self.concurrency):
            window = range(start, min(start + self.concurrency, len(requests)))
            pending = [(i, self._submit(requests[i])) for i in window]
            for i, handle in pending:
                results[i] = self._collect(handle, i if len(images) > 1 else None)
        return results

    def _inputs(self, image, index: int | None) -> list:
        from csrinfer.image_io import as_bgr_uint8

        label = "image" if index is None else f"image {index}"
        if isinstance(image, (str, os.PathLike)):
            data = _read_bytes(Path(image))
            return [self._tensor(wire.IMAGE, np.array([[data]], dtype=object), "BYTES")]
        if isinstance(image, np.ndarray):
            array = as_bgr_uint8(image, f"{label} array")
            if self.takes_raw:
                return [self._tensor(wire.IMAGE_RAW, array[None], "UINT8")]
            import cv2

            ok, png = cv2.imencode(".png", array)
            return [self._tensor(wire.IMAGE, np.array([[png.tobytes()]], dtype=object), "BYTES")]
        raise ImageError(f"{label} is a {type(image).__name__}; pass a file path or an H x W x 3 uint8 BGR array")

    def _tensor(self, name: str, array: np.ndarray, datatype: str):
        t = self._module.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        return t

    def _submit(self, inputs: list):
        m = self._module
        try:
            if self.protocol == "http":
                outputs = [m.InferRequestedOutput(n, binary_data=True) for n in wire.OUTPUTS]
                return self._client.async_infer(self.model, inputs, outputs=outputs, timeout=int(self.timeout * 1e6))
            import queue

            done: queue.Queue = queue.Queue(maxsize=1)
            self._client.async_infer(self.model, inputs, callback=lambda result, error: done.put((result, error)),
                                     client_timeout=self.timeout)
            return done
        except Exception as e:  # noqa: BLE001
            raise self._error(e, None) from None

    def _collect(self, handle, index: int | None) -> Instances:
        try:
            if self.protocol == "http":
                result = handle.get_result(timeout=self.timeout)
            else:
                import queue

                try:
                    result, error = handle.get(timeout=self.timeout + 5)
                except queue.Empty:
                    raise ServerError(f"no answer from {self.protocol}://{self.address} within {self.timeout:.0f} s") from None
                if error is not None:
                    raise error
        except ServerError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e, index) from None
        outputs = {n: result.as_numpy(n) for n in wire.OUTPUTS}
        instances = wire.decode_instances(outputs, self.class_names, self.category_ids)[0]
        return instances if self.score_thr is None else instances[np.flatnonzero(instances.scores > self.score_thr)]

    def _error(self, error: Exception, index: int | None) -> Exception:
        """A refused image -> ImageError with the server's sentence; anything else -> ServerError."""
        status = str(getattr(error, "status", lambda: "")() or "")
        message = getattr(error, "message", lambda: None)() or _short(error)
        where = "" if index is None else f" (image {index})"
        if status in ("400", "StatusCode.INVALID_ARGUMENT"):
            return ImageError(f"the server refused the request{where}: {message}")
        return ServerError(f"Triton at {self.protocol}://{self.address} failed the request{where}: {message}")

    def close(self) -> None:
        client = getattr(self, "_client", None)  # absent when __init__ raised before connecting
        if client is not None:
            client.close()

    def __enter__(self) -> "RemoteSegmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteSegmenter({self.protocol}://{self.address}, model={self.model!r}, classes={len(self.class_names)})"


def _client_module(name: str):
    try:
        if name == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as e:
        raise BackendUnavailableError(f"RemoteSegmenter needs tritonclient ({e}); pip install 'csrinfer[serve]'") from None
    return module


@functools.cache
def _quiet_del(client_class: type) -> type:
    """``client_class`` whose ``__del__`` stays quiet after its ``__init__`` raised.

    tritonclient's ``__del__`` calls ``close``, which reads attributes ``__init__`` sets last: an
    address it refuses would add "Exception ignored in ... __del__" after our one-line error.
    """
    class Client(client_class):
        def __del__(self):
            try:
                super().__del__()
            except AttributeError:
                pass

    return Client


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ImageError(f"image {path} does not exist")
    if path.is_dir():
        raise ImageError(f"image {path} is a directory, not an image file")
    return path.read_bytes()


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
