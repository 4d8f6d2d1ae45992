"""The real TensorRT Python bindings, loadable on a machine without TensorRT (design.md §3).

PyPI serves the bindings as small binary wheels (``tensorrt-cu12-bindings`` for TensorRT 10,
``tensorrt-cu13-bindings`` for 11). Their ``tensorrt.so`` links ``libnvinfer``,
``libnvinfer_plugin`` and ``libnvonnxparser`` only for a handful of C factory functions
(``createInferBuilder_INTERNAL`` and the like). :func:`prepare` downloads one wheel, unpacks it,
finds those symbols with ``nm -D --undefined-only``, compiles a shim for each library the module
needs (``readelf -d`` NEEDED) in which every such symbol returns null, and lays the package out
as ``tensorrt``. With ``LD_LIBRARY_PATH``/``PYTHONPATH`` pointing there, ``import tensorrt``
loads the real module: every class, enum member, property and pybind11 signature is NVIDIA's,
and so is the pure-Python ``tensorrt.plugin``. Builders, networks, engines and the plugin
registry cannot be made (their factories return null).

Only subprocesses get those paths (:func:`run_python`), so no other test sees this ``tensorrt``.
Everything lands in ``$CSRINFER_TEST_CACHE`` (default ``~/.cache/csrinfer-test``)
``/tensorrt/<version>`` and is reused; CI keeps that folder between runs.

``python -m tests.tensorrt_bindings snapshot`` rewrites the enum snapshots the stand-in
(tests/export/fake_tensorrt.py) takes its values from; a test checks them against the real module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# One TensorRT 10 (>= 10.9, the first with ahead-of-time plugins) and one TensorRT 11, pinned.
VERSIONS = {
    "10.13.3.9": "tensorrt-cu12-bindings",
    "11.4.0.106": "tensorrt-cu13-bindings",
}
HERE = Path(__file__).resolve().parent
API_SCRIPT = HERE / "tensorrt_api.py"
SNAPSHOTS = HERE / "export" / "tensorrt_enums"


class Unavailable(Exception):
    """The bindings cannot be had here (no download, no C compiler); the message says why."""


@dataclass(frozen=True)
class Bindings:
    version: str
    root: Path  # the cache folder of this version

    @property
    def python_path(self) -> Path:
        return self.root / "python"

    @property
    def lib_path(self) -> Path:
        return self.root / "shims"

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.python_path), str(HERE.parent)])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.lib_path), env.get("LD_LIBRARY_PATH")]))
        return env

    def api(self) -> dict:
        """The real module's API surface (tests/tensorrt_api.py), dumped once per version of that script."""
        digest = hashlib.sha256(API_SCRIPT.read_bytes()).hexdigest()[:12]
        path = self.root / f"api-{digest}.json"
        if not path.is_file():
            tmp = self.root / f"api.json.{os.getpid()}.tmp"
            run_python(self, str(API_SCRIPT), str(tmp))
            os.replace(tmp, path)
        return json.loads(path.read_text())


def cache_root() -> Path:
    return Path(os.environ.get("CSRINFER_TEST_CACHE", Path.home() / ".cache" / "csrinfer-test")) / "tensorrt"


def prepare(version: str) -> Bindings:
    """The bindings of ``version`` ready to import, built on first use; raises Unavailable."""
    root = cache_root() / version
    if (root / "ready").is_file():
        return Bindings(version, root)
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root.parent))
    try:
        package = _unpack(_download(VERSIONS[version], version, work), work)
        _make_shims(package / "tensorrt.so", work / "shims")
        (work / "python").mkdir()
        (work / "python" / "tensorrt").symlink_to(Path("..") / package.relative_to(work), target_is_directory=True)
        (work / "ready").write_text(version)
        try:
            os.replace(work, root)  # atomic: a concurrent run either wins or finds it ready
        except OSError:
            if not (root / "ready").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Bindings(version, root)


def run_python(bindings: Bindings, *args: str, timeout: float = 120) -> str:
    """Run ``python args...`` with the real bindings importable; returns stdout, raises on failure."""
    proc = subprocess.run([sys.executable, *args], env=bindings.env(), capture_output=True, text=True,
                          timeout=timeout, cwd=HERE.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed with the real TensorRT {bindings.version} "
                           f"bindings:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _download(package: str, version: str, work: Path) -> Path:
    dest = work / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(dest),
           f"{package}=={version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"could not download {package}=={version}: {e}") from None
    wheels = list(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel for this platform"])[-1]
        raise Unavailable(f"could not download {package}=={version}: {last}")
    return wheels[0]


def _unpack(wheel: Path, work: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(work / "wheel")
    found = list((work / "wheel").glob("*/tensorrt.so"))
    if len(found) != 1:
        raise RuntimeError(f"{wheel.name} has no single tensorrt.so (found {found})")
    return found[0].parent


def needed_libraries(so: Path) -> list[str]:
    """The NVIDIA sonames ``so`` links (readelf -d NEEDED)."""
    out = _tool(["readelf", "-d", str(so)])
    return [n for n in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out) if n.startswith("libnv")]


def factory_symbols(so: Path) -> list[str]:
    """What ``so`` imports from TensorRT's libraries: its undefined symbols that carry no symbol version
    (glibc's and libstdc++'s all do) and are not the Python C API or the dynamic loader's."""
    out = _tool(["nm", "-D", "--undefined-only", str(so)])
    names = [line.split()[-1] for line in out.splitlines() if line.split()[:1] == ["U"]]
    ours = re.compile(r"^(_?Py|_Py|dl(open|sym|close|error)$|pthread_)")
    return sorted(n for n in names if "@" not in n and not ours.match(n))


def _make_shims(so: Path, dest: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise Unavailable("no C compiler (cc) to build the null TensorRT library shims")
    symbols = factory_symbols(so)
    if not symbols:
        raise RuntimeError(f"{so} imports no TensorRT factory symbols; the shim recipe no longer applies")
    dest.mkdir(parents=True)
    source = dest / "null_tensorrt.c"
    # Every factory returns null (an int 0 where TensorRT returns a version or a bool).
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in symbols))
    for soname in needed_libraries(so):
        proc = subprocess.run([compiler, "-shared", "-fPIC", "-o", str(dest / soname), str(source)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise Unavailable(f"the C compiler failed to build {soname}: {proc.stderr.strip()[:300]}")


def _tool(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise Unavailable(f"'{cmd[0]}' (binutils) is needed to inspect tensorrt.so: {e}") from None


def enums(api: dict) -> dict:
    """Every enum of the dumped ``tensorrt`` module, nested ones as 'Class.Enum', and the DataType constants."""
    out = {}
    for name, entry in api["tensorrt"].items():
        if entry["kind"] == "enum":
            out[name] = entry["members"]
        elif entry["kind"] == "class":
            for attr, sub in entry["attrs"].items():
                if sub["kind"] == "enum":
                    out[f"{name}.{attr}"] = sub["members"]
    out["dtype constants"] = {n: e["value"] for n, e in api["tensorrt"].items()
                              if e["kind"] == "value" and e.get("type") == "DataType"}
    return out


def write_snapshots() -> None:
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    for version in VERSIONS:
        path = SNAPSHOTS / f"{version}.json"
        path.write_text(json.dumps(enums(prepare(version).api()), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["snapshot"]:
        sys.exit("usage: python -m tests.tensorrt_bindings snapshot")
    write_snapshots()
