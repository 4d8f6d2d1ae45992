"""csrinfer's TensorRT code against the real TensorRT Python bindings, 10.x and 11.x (tests/tensorrt_bindings.py).

Every attribute, enum member, property write and call csrinfer makes on ``tensorrt`` exists in
the real module with a matching signature (positional count and keyword names from pybind11's
signatures) and writability; the stand-in used by the behaviour tests (fake_tensorrt.py) offers
nothing the real module lacks. What only a GPU with TensorRT can show (parsing, building, the
engine's numbers) is not tested here.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

from tests.export import fake_tensorrt
from tests.tensorrt_bindings import SNAPSHOTS, enums, run_python

REPO = Path(__file__).resolve().parents[2]
MODULES = ["csrinfer/export/tensorrt.py", "csrinfer/runtime/backends/tensorrt.py",
           "csrinfer/plugins/tensorrt_plugin.py", "csrinfer/tensorrt_env.py"]

# What csrinfer does with `tensorrt`, read off the four modules above. Calls on objects TensorRT
# returns (builder, network, config, ...) are listed by the class TensorRT documents them on.
#   ("call", "Class.method" or "function", positional args passed, keyword names passed)
#   ("new", "Class", positional args, keywords)      constructor
#   ("read", "Class.property"), ("write", "Class.property")
#   ("member", "Enum.MEMBER") or ("member", "Class.Enum.MEMBER"), ("value", "name")
USES = [
    ("value", "__version__"), ("value", "float32"), ("value", "float16"),
    ("call", "nptype", 1, ()),
    # logger (tensorrt_env.py): a Python subclass of ILogger overriding log(severity, msg)
    ("new", "ILogger", 0, ()), ("call", "ILogger.log", 2, ()),
    ("member", "ILogger.Severity.ERROR"), ("member", "ILogger.Severity.INTERNAL_ERROR"),
    ("member", "ILogger.Severity.WARNING"),
    # builder (export/tensorrt.py)
    ("new", "Builder", 1, ()), ("call", "Builder.create_network", 1, ()),
    ("call", "Builder.create_builder_config", 0, ()), ("call", "Builder.create_optimization_profile", 0, ()),
    ("call", "Builder.build_serialized_network", 2, ()),
    ("member", "NetworkDefinitionCreationFlag.STRONGLY_TYPED"),
    ("new", "OnnxParser", 2, ()), ("call", "OnnxParser.parse_from_file", 1, ()),
    ("read", "OnnxParser.num_errors"), ("call", "OnnxParser.get_error", 1, ()),
    ("call", "ParserError.node", 0, ()), ("call", "ParserError.node_name", 0, ()),
    ("call", "ParserError.node_operator", 0, ()), ("call", "ParserError.desc", 0, ()),
    ("read", "INetworkDefinition.num_inputs"), ("call", "INetworkDefinition.get_input", 1, ()),
    ("read", "ITensor.shape"), ("read", "ITensor.name"),
    ("call", "IOptimizationProfile.set_shape", 4, ()),
    ("call", "IBuilderConfig.add_optimization_profile", 1, ()),
    ("call", "IBuilderConfig.set_memory_pool_limit", 2, ()), ("member", "MemoryPoolType.WORKSPACE"),
    ("write", "IBuilderConfig.builder_optimization_level"),
    ("call", "IBuilderConfig.set_flag", 1, ()), ("member", "BuilderFlag.VERSION_COMPATIBLE"),
    ("write", "IBuilderConfig.hardware_compatibility_level"), ("member", "HardwareCompatibilityLevel.AMPERE_PLUS"),
    ("call", "IBuilderConfig.create_timing_cache", 1, ()),
    ("call", "IBuilderConfig.set_timing_cache", 1, ("ignore_mismatch",)),
    ("call", "IBuilderConfig.get_timing_cache", 0, ()), ("call", "ITimingCache.serialize", 0, ()),
    # backend (runtime/backends/tensorrt.py)
    ("new", "Runtime", 1, ()), ("write", "Runtime.engine_host_code_allowed"),
    ("call", "Runtime.deserialize_cuda_engine", 1, ()),
    ("read", "ICudaEngine.num_io_tensors"), ("call", "ICudaEngine.get_tensor_name", 1, ()),
    ("call", "ICudaEngine.get_tensor_mode", 1, ()), ("member", "TensorIOMode.INPUT"),
    ("call", "ICudaEngine.get_tensor_dtype", 1, ()), ("call", "ICudaEngine.create_execution_context", 0, ()),
    ("call", "IExecutionContext.set_input_shape", 2, ()), ("call", "IExecutionContext.set_tensor_address", 2, ()),
    ("call", "IExecutionContext.get_tensor_shape", 1, ()), ("call", "IExecutionContext.execute_async_v3", 1, ()),
]
# tensorrt.plugin (plugins/tensorrt_plugin.py); the decorators' own validation is run in tests/plugins
PLUGIN_USES = [
    ("call", "register", 1, ()), ("call", "autotune", 1, ()), ("call", "aot_impl", 1, ()),
    ("new", "AutoTuneCombination", 2, ()), ("new", "KernelLaunchParams", 0, ()),
    ("write", "KernelLaunchParams.grid_x"), ("write", "KernelLaunchParams.block_x"),
    ("write", "KernelLaunchParams.shared_mem"),
    ("call", "SymIntExprs.from_tuple", 1, ()), ("new", "SymInt32", 1, ()),
    ("call", "from_shape_expr", 1, ("dtype",)), ("read", "TensorDesc.shape_expr"), ("read", "TensorDesc.dtype"),
]


def lookup(api: dict, path: str):
    """The entry of 'A.B.C' in a dumped module, or None."""
    head, *rest = path.split(".")
    entry = api.get(head)
    for part in rest:
        if entry is None:
            return None
        if entry["kind"] == "enum":
            return {"kind": "member", "value": entry["members"][part]} if part in entry["members"] else None
        entry = entry.get("attrs", {}).get(part)
    return entry


def accepts(signatures: list[dict], positional: int, keywords) -> bool:
    """True when some overload takes ``positional`` arguments plus ``keywords`` by name."""
    for sig in signatures:
        params = sig["params"]
        if positional > len(params) and not sig["varargs"]:
            continue
        rest = params[positional:]
        names = {p["name"] for p in rest}
        if not set(keywords) <= names and not sig["varargs"]:
            continue
        if all(p["default"] or p["name"] in keywords for p in rest):
            return True
    return False


def check(api: dict, use: tuple) -> str | None:
    """None if the real module allows ``use``, else what is wrong."""
    kind, path = use[0], use[1]
    entry = lookup(api, path)
    if entry is None:
        return f"{path} does not exist"
    if kind == "call":
        if entry["kind"] != "function":
            return f"{path} is a {entry['kind']}, not a function"
        if not accepts(entry["signatures"], use[2], use[3]):
            return f"{path} takes none of {use[2]} positional + {list(use[3])}: {entry['signatures']}"
    elif kind == "new":
        if entry["kind"] != "class":
            return f"{path} is not a class"
        if not accepts(entry.get("init", []), use[2], use[3]):
            return f"{path}() takes none of {use[2]} positional + {list(use[3])}: {entry.get('init')}"
    elif kind in ("read", "write"):
        if entry["kind"] != "property" and not (path.split(".")[0] in ("KernelLaunchParams",)):
            return f"{path} is a {entry['kind']}, not a property"
        if kind == "write" and entry["kind"] == "property" and not entry["writable"]:
            return f"{path} is read-only"
    elif kind == "member":
        if entry["kind"] != "member":
            return f"{path} is not an enum member"
    elif kind == "value":
        if entry["kind"] != "value":
            return f"{path} is not a value"
    return None


def test_every_tensorrt_use_of_csrinfer_exists_with_its_signature(real_tensorrt):
    api = real_tensorrt.api()
    problems = [p for p in (check(api["tensorrt"], u) for u in USES) if p]
    assert not problems, f"TensorRT {real_tensorrt.version}: " + "; ".join(problems)


def test_every_tensorrt_plugin_use_exists_with_its_signature(real_tensorrt):
    api = real_tensorrt.api()["tensorrt.plugin"]
    # KernelLaunchParams' fields are plain attributes set in __init__ (SymInt32-wrapping __setattr__)
    api["KernelLaunchParams"]["attrs"].update({f: {"kind": "property", "writable": True}
                                               for f in ("grid_x", "block_x", "shared_mem")})
    problems = [p for p in (check(api, u) for u in PLUGIN_USES) if p]
    assert not problems, f"TensorRT {real_tensorrt.version} tensorrt.plugin: " + "; ".join(problems)


def tensorrt_chains(module: str) -> list[tuple[str, str]]:
    """(root name, 'A.B.C') for every attribute chain on `trt`, `tensorrt` or `trtp` in ``module``."""
    found = []
    for node in ast.walk(ast.parse((REPO / module).read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in ("trt", "tensorrt", "trtp"):
            found.append((base.id, ".".join(chain)))
    return found


def test_the_list_covers_every_tensorrt_name_the_modules_use():
    """Every `trt.X...`/`tensorrt.X`/`trtp.X` chain in the four modules is in USES/PLUGIN_USES."""
    listed = {u[1] for u in USES} | {u[1] + ".__init__" for u in USES if u[0] == "new"}
    listed_plugin = {u[1] for u in PLUGIN_USES}
    missing = []
    for module in MODULES:
        for root, path in tensorrt_chains(module):
            known = listed_plugin if root == "trtp" else listed
            # ast.walk also yields the prefixes of a chain (trt.ILogger of trt.ILogger.Severity.ERROR)
            if path not in known and not any(k.startswith(path + ".") for k in known):
                missing.append(f"{module}: {root}.{path}")
    assert not missing, "TensorRT uses missing from USES: " + ", ".join(sorted(set(missing)))


def test_no_weak_typing_is_left():
    """TensorRT 11 removed it: no BuilderFlag.FP16, layer precisions, set_output_type or OBEY_PRECISION_CONSTRAINTS."""
    for module in MODULES:
        tree = ast.parse((REPO / module).read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not names & {"FP16", "OBEY_PRECISION_CONSTRAINTS", "set_output_type", "precision"}, module


def test_enum_snapshot_is_the_real_modules(real_tensorrt):
    """The stand-in's enums come from tests/export/tensorrt_enums/<version>.json: it must equal the real module."""
    snapshot = json.loads((SNAPSHOTS / f"{real_tensorrt.version}.json").read_text())
    assert snapshot == enums(real_tensorrt.api())


def fake_classes(fake):
    return {n: c for n, c in vars(fake).items()
            if inspect.isclass(c) and c.__module__ == fake.__name__ and not n.startswith("_")}


def test_stand_in_offers_nothing_the_real_module_lacks(real_tensorrt):
    api = real_tensorrt.api()["tensorrt"]
    fake = fake_tensorrt._load(real_tensorrt.version)
    problems = []
    for name, value in vars(fake).items():
        if name.startswith("_") or inspect.ismodule(value) or getattr(value, "__module__", None) not in (
                fake.__name__, "enum", None) and not isinstance(value, fake.DataType):
            continue
        if name not in api:
            problems.append(f"{name} is not in TensorRT")
    for name, cls in fake_classes(fake).items():
        if issubclass(cls, int):  # enums: values are checked through the snapshot
            continue
        real = api.get(name, {})
        for attr, value in vars(cls).items():
            if attr.startswith("_"):
                continue
            entry = real.get("attrs", {}).get(attr)
            if entry is None:
                problems.append(f"{name}.{attr} is not in TensorRT")
            elif isinstance(value, property):
                if entry["kind"] != "property":
                    problems.append(f"{name}.{attr} is a {entry['kind']} in TensorRT, a property here")
                elif value.fset is not None and not entry["writable"]:
                    problems.append(f"{name}.{attr} is writable here but read-only in TensorRT")
            elif callable(value) and not inspect.isclass(value):
                params = [p for p in inspect.signature(value).parameters][1:]
                real_names = [[p["name"] for p in s["params"]] for s in entry.get("signatures", [])]
                if entry["kind"] != "function" or params not in real_names:
                    problems.append(f"{name}.{attr}{tuple(params)} matches no TensorRT signature {real_names}")
    assert not problems, f"TensorRT {real_tensorrt.version}: " + "; ".join(problems)


def test_stand_in_instance_attributes_are_writable_in_tensorrt(real_tensorrt, tmp_path, monkeypatch):
    """Public attributes the stand-in's objects carry after a build and a run are writable properties there."""
    from tests.export.test_tensorrt import small_graph, use_fake

    import onnx

    fake = use_fake(monkeypatch, tmp_path, real_tensorrt.version)
    onnx.save(small_graph(), str(tmp_path / "m.onnx"))
    from csrinfer.export.tensorrt import build_engine

    build_engine(tmp_path / "m.onnx", fp16=False)
    built = fake.Builder._last
    runtime = fake.Runtime(None)
    engine = runtime.deserialize_cuda_engine(b'{"k": 4}')
    objects = [built.network, built.config, built.network.get_input(0), runtime, engine,
               engine.create_execution_context()]
    api = real_tensorrt.api()["tensorrt"]
    problems = []
    for obj in objects:
        cls = type(obj).__name__
        for attr in vars(obj):
            if attr.startswith("_"):
                continue
            entry = api[cls]["attrs"].get(attr)
            if entry is None or entry["kind"] != "property" or not entry["writable"]:
                problems.append(f"{cls}.{attr} is set on the stand-in but not a writable property in TensorRT")
    assert not problems, "; ".join(problems)


def test_real_logger_subclass_and_flags_work(real_tensorrt):
    """csrinfer's ILogger subclass instantiates and logs through the real pybind11 trampoline."""
    script = (
        "import tensorrt as trt, numpy as np\n"
        "from csrinfer.tensorrt_env import make_logger\n"
        "from csrinfer.export.tensorrt import _strongly_typed_flags\n"
        "log = make_logger(trt)\n"
        "log.log(trt.ILogger.Severity.ERROR, 'first')\n"
        "print(isinstance(log, trt.ILogger), log.first_error(), _strongly_typed_flags(trt),\n"
        "      trt.nptype(trt.float16) is np.float16)\n")
    out = run_python(real_tensorrt, "-c", script).split()[-4:]
    # NetworkDefinitionCreationFlag.STRONGLY_TYPED is bit 1 in TensorRT 10.13, bit 0 in 11.4
    bit = {"10.13.3.9": 1, "11.4.0.106": 0}[real_tensorrt.version]
    assert out == ["True", "first", str(1 << bit), "True"]
