"""``TritonServer``: a real ``tritonserver`` process on loopback ports, started and stopped by us.

The binary comes from the ``nvidia-pytriton`` wheel (``pytriton/tritonserver/bin``), which ships
Triton with its Python backend only; NVIDIA's ``tritonserver`` on ``PATH`` (their container) is
used when the wheel is absent. PyTriton's own Python API is not used: its proxy process fails
on CPython 3.11.7 inside ``multiprocessing.resource_tracker``, so we drive the binary directly.

The wheel keeps the Python backend's stub (``triton_python_backend_stub``) apart, one per
Python version, so each server gets its own backend folder: ``<workdir>/backends/python`` holds
links to the backend library, its ``triton_python_backend_utils.py`` and the stub for this
interpreter's version. The stub embeds the system ``libpython3.X`` in an isolated interpreter
(it ignores ``PYTHONPATH``); the repository's ``model.py`` files add our site-packages
themselves (:mod:`csrinfer.serve.repository`).

That stub is built with a pybind11 that predates NumPy 2: under NumPy 2 it reads tensors with
the wrong strides and dies on the first BYTES input. So where this Python has NumPy 2, the stub
gets NumPy 1.26 from a folder of its own (:func:`stub_numpy_dir`, installed once by pip on
first start), placed before site-packages; torch, OpenCV, Pillow and pycocotools all run on it.

The process runs in its own process group (Ctrl-C in a terminal reaches us, not it); ``stop``
sends SIGINT (Triton unloads the models and fails what is still queued), waits, then kills
the whole group, Python stubs included. Its output is appended to a log file; a failure is
explained from what this launch wrote there only, never from an earlier run's lines.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from csrinfer.errors import BackendUnavailableError, ServerError

INSTALL_HINT = "pip install --no-deps nvidia-pytriton==0.7.0 (it ships the tritonserver binary)"
STUB_NUMPY = "numpy==1.26.4"  # the newest NumPy whose C structures the stub's pybind11 reads
# Started through this trampoline, the server gets SIGTERM when the thread that started it dies
# (PR_SET_PDEATHSIG = 1 survives exec), so a killed test run leaves no server behind.
_TRAMPOLINE = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
               "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])")
# Log lines that say why Triton stopped, most telling first (matched without regard to case).
_CAUSES = ("failed to load '", "poll failed", "failed to start", "already in use", "unavailable", "error:")
# Lines every start logs on a machine without a usable GPU: a cause only when nothing else is.
_GPU_NOISE = ("cuda", "nvidia", "gpu", "pinned memory")
_GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+\]\s*")


def find_tritonserver() -> tuple[Path, Path]:
    """(tritonserver binary, folder holding its ``backends/``); raises when neither source exists."""
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
        if (root / "bin" / "tritonserver").exists():
            return root / "bin" / "tritonserver", root
    found = shutil.which("tritonserver")
    if found:
        root = Path(found).resolve().parents[1]  # /opt/tritonserver/bin/tritonserver
        return Path(found), root
    raise BackendUnavailableError(f"the tritonserver binary was not found; {INSTALL_HINT}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``port`` (SO_REUSEADDR, as servers bind: a closed connection's
    TIME_WAIT does not count as busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def prepare_backends(root: Path, workdir: Path) -> Path:
    """A backend folder for this server: links to the Python backend plus this Python's stub."""
    src = root / "backends" / "python"
    dst = workdir / "backends" / "python"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (dst / name).symlink_to(src / name)
    stub = src / "triton_python_backend_stub"
    if not stub.exists():  # the wheel's layout: one stub per Python version
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise BackendUnavailableError(f"Triton's Python backend has no stub for Python {version} "
                                          f"(looked in {stub.parent})")
    check_stub(stub)
    (dst / "triton_python_backend_stub").symlink_to(stub)
    return dst.parent


def stub_numpy_dir() -> Path | None:
    """The folder giving Triton's Python stub NumPy 1.x, or None when this Python's NumPy is 1.x."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(sys.prefix) / "share" / "csrinfer" / f"triton-stub-numpy-py{version}"


def ensure_stub_numpy() -> None:
    """Install :data:`STUB_NUMPY` into :func:`stub_numpy_dir` once (pip, from the package index)."""
    target = stub_numpy_dir()
    if target is None or (target / "numpy" / "__init__.py").exists():
        return
    print(f"csrinfer: installing {STUB_NUMPY} for Triton's Python stub into {target} (once)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))  # renamed into place when whole
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
                             "--target", str(tmp), STUB_NUMPY], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BackendUnavailableError(f"Triton's Python stub needs NumPy 1.x and pip could not install it "
                                      f"({(result.stderr.strip().splitlines() or ['no output'])[-1]}); run "
                                      f"`{sys.executable} -m pip install --target {target} {STUB_NUMPY}`")
    try:
        tmp.rename(target)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)


def check_stub(stub: Path) -> None:
    """Run the stub without arguments: it exits 1 when its shared libraries load."""
    result = subprocess.run([str(stub)], capture_output=True, text=True, timeout=30)
    if result.returncode != 1 and "error while loading shared libraries" in result.stderr:
        lib = result.stderr.split("shared libraries:")[-1].split(":")[0].strip()
        raise BackendUnavailableError(f"Triton's Python backend stub cannot load {lib}; install it "
                                      f"(Debian/Ubuntu: apt-get install libpython{sys.version_info.major}."
                                      f"{sys.version_info.minor})")


class TritonServer:
    """A ``tritonserver`` on ``repo_dir``, listening on 127.0.0.1 only.

    Ports of 0 are chosen free. The server lives until :meth:`stop`, the end of a ``with``
    block, interpreter exit, or the death of the thread that started it.

    Example:
        >>> with TritonServer("repo") as server:
        ...     print(server.urls["http"])
    """

    def __init__(self, repo_dir: str | os.PathLike, http_port: int = 0, grpc_port: int = 0,
                 metrics_port: int = 0, log_file: str | os.PathLike | None = None,
                 exit_timeout: int = 5, log_verbose: int = 0, host: str = "127.0.0.1"):
        self.repo_dir = Path(repo_dir).resolve()
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.host = host
        self.exit_timeout = exit_timeout
        self.log_verbose = log_verbose
        self._workdir = Path(tempfile.mkdtemp(prefix="csrinfer-triton-"))
        self.log_file = Path(log_file) if log_file else self._workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        self._log_start = 0  # where this launch's output begins in the log file
        self._start_failed = False

    @property
    def urls(self) -> dict[str, str]:
        """Where clients connect: ``http`` and ``grpc`` as tritonclient takes them, ``metrics`` in full."""
        return {"http": f"{self.host}:{self.ports['http']}", "grpc": f"{self.host}:{self.ports['grpc']}",
                "metrics": f"http://{self.host}:{self.ports['metrics']}/metrics"}

    def command(self, binary: Path, backends: Path) -> list[str]:
        return [str(binary), f"--model-repository={self.repo_dir}", f"--backend-directory={backends}",
                f"--http-address={self.host}", f"--http-port={self.ports['http']}",
                f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
                "--allow-gpu-metrics=false", "--disable-auto-complete-config", "--strict-readiness=true",
                f"--exit-timeout-secs={self.exit_timeout}", f"--log-verbose={self.log_verbose}"]

    def start(self, timeout: float = 180.0, attempts: int = 3) -> "TritonServer":
        """Start and wait until every model is ready; raises :class:`ServerError` with the log's reason.

        A free port that another process takes before Triton binds it costs a new launch, up to
        ``attempts`` launches. When start fails it stops the server (see :meth:`stop`).
        """
        self._start_failed = False
        try:
            return self._start(timeout, attempts)
        except BaseException:
            self._start_failed = True
            self.stop()
            raise

    def _start(self, timeout: float, attempts: int) -> "TritonServer":
        if not self.repo_dir.is_dir():
            raise ServerError(f"model repository {self.repo_dir} does not exist")
        binary, root = find_tritonserver()
        backends = prepare_backends(root, self._workdir)
        ensure_stub_numpy()
        chosen = dict(self.ports)
        self._refuse_busy_ports(chosen)
        for attempt in range(attempts):
            free = iter(free_ports(3, self.host))
            self.ports = {k: v or next(free) for k, v in chosen.items()}
            self._launch(binary, backends)
            try:
                self._wait_ready(timeout)
                return self
            except ServerError:
                if attempt + 1 == attempts or not self._lost_a_free_port(chosen):
                    raise
                self._end_process()
        return self

    def _refuse_busy_ports(self, chosen: dict[str, int]) -> None:
        """Ports asked for that something already listens on are refused before launching:
        another server there would answer our readiness check as if it were this one."""
        for kind, port in chosen.items():
            if port and not port_is_free(port, self.host):
                raise ServerError(f"port {port} ({kind}) on {self.host} is already in use, by another server "
                                  f"perhaps; choose other ports")

    def _lost_a_free_port(self, chosen: dict[str, int]) -> bool:
        """Whether Triton found a port busy that was picked free here (not one the caller asked for)."""
        reason = self.failure_reason()
        picked = [self.ports[k] for k, v in chosen.items() if not v]
        return "already in use" in reason and any(f":{port}'" in reason for port in picked)

    def _launch(self, binary: Path, backends: Path) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            command = [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *self.command(binary, backends)]
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.ports['http']}/v2/health/ready"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerError(f"tritonserver exited during start-up (exit code {code}): "
                                  f"{self.failure_reason()} (log: {self.log_file})")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready within {timeout:.0f} s: {self.failure_reason()} "
                          f"(log: {self.log_file})")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGINT, wait up to ``timeout`` s (default: the exit timeout + 5), then kill the group.

        Returns the exit code (None when it was never started). Requests still in flight get
        an error: Triton fails what it has not finished, and a killed server closes the sockets.

        The temporary work folder goes too, except when it holds the log (no ``log_file`` was
        given) and the start failed or the server exited non-zero: then the log stays for the
        error message that names it, and only its backend links go.
        """
        atexit.unregister(self.stop)
        code = None if self.process is None else self._end_process(timeout)
        self._remove_workdir()
        return code

    def _end_process(self, timeout: float | None = None) -> int:
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGINT)
                self.process.wait(self.exit_timeout + 5 if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # stubs left behind, or a hung server
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.wait()

    def _remove_workdir(self) -> None:
        failed = self._start_failed or (self.process is not None and self.process.returncode != 0)
        if failed and self.log_file.parent == self._workdir and self.log_file.exists():
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)
        else:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log that the latest launch wrote."""
        try:
            with open(self.log_file, "rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure_reason(self) -> str:
        """Why the latest launch failed, from its log: the first line naming a cause, else its first error."""
        return explain_failure(self.log_tail(200))

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def explain_failure(log: str) -> str:
    """The line of a Triton log that says why it failed, without its glog prefix, quotes or traceback."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    noise = [line for line in lines if any(word in line.lower() for word in _GPU_NOISE)]
    telling = [line for line in lines if line not in noise] + noise
    for key in _CAUSES:
        hits = [line for line in telling if key in line.lower()]
        if hits:
            return _message(hits[0])
    errors = [line for line in telling if line[0] in "EF" and _GLOG_PREFIX.match(line)]
    return _message(errors[0] if errors else lines[-1]) if lines else "no output"


def _message(line: str) -> str:
    """A log line's message: glog's prefix, the quotes and anything after its first escaped newline gone."""
    text = _GLOG_PREFIX.sub("", line).strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    return text.split("\\n")[0].strip()[:500]
