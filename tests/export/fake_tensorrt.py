"""A stand-in for the ``tensorrt`` module that records what csrinfer's builder and backend ask of it.

It lets CI walk every line of csrinfer/export/tensorrt.py and runtime/backends/tensorrt.py without
a GPU: ONNX nodes become "layers", the "engine" is a JSON description of the build, execution
copies the input into the scores. It proves nothing about what TensorRT computes. It offers
nothing the real module lacks (tests/export/test_tensorrt_conformance.py checks it against the
real bindings of each version):

- every enum and ``DataType`` constant is made from the snapshot of the real module
  (tests/export/tensorrt_enums/<version>.json, written by ``python -m tests.tensorrt_bindings
  snapshot`` and compared with the real module by the tests), so values, names and which members
  exist are TensorRT's own, per version;
- classes, methods and parameter names are the real ones, and a property is writable here only
  where it is writable there; what tests inspect is kept under leading-underscore names;
- calls that can fail in TensorRT can fail here too: ``build_serialized_network`` and
  ``create_timing_cache`` return None and ``set_timing_cache`` False when a test asks
  (``Builder._fail_build``, ``IBuilderConfig._reject_caches``).

``_load(version)`` gives the stand-in of another version (default: the TensorRT 10 one).
"""

from __future__ import annotations

import enum
import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import onnx

_VERSIONS = ("10.13.3.9", "11.4.0.106")
__version__ = globals().get("__version__", _VERSIONS[0])  # _load sets it before this module runs
_SNAPSHOT = json.loads((Path(__file__).parent / "tensorrt_enums" / f"{__version__}.json").read_text())


def _load(version: str) -> types.ModuleType:
    """A fresh stand-in module for TensorRT ``version`` (one of the snapshots)."""
    spec = importlib.util.spec_from_file_location(f"fake_tensorrt_{version.replace('.', '_')}", __file__)
    module = importlib.util.module_from_spec(spec)
    module.__version__ = version
    spec.loader.exec_module(module)
    return module


def _enum(name: str) -> type[enum.IntEnum]:
    return enum.IntEnum(name.rsplit(".", 1)[-1], _SNAPSHOT[name])


for _name in _SNAPSHOT:
    if "." not in _name and _name != "dtype constants":
        globals()[_name] = _enum(_name)
for _name, _value in _SNAPSHOT["dtype constants"].items():
    globals()[_name] = DataType(_value)  # noqa: F821 - made from the snapshot above

_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
       "INT8": np.int8, "UINT8": np.uint8}
_ONNX = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.INT64: "INT64",
         onnx.TensorProto.INT32: "INT32", onnx.TensorProto.BOOL: "BOOL"}


def _dtype(onnx_type) -> DataType:  # noqa: F821
    return DataType[_ONNX.get(onnx_type, "FLOAT")]  # noqa: F821


def nptype(trt_type):
    return _NP[DataType(trt_type).name]  # noqa: F821


class ILogger:
    Severity = _enum("ILogger.Severity")

    def __init__(self):
        pass


class ITensor:
    def __init__(self, name, dtype, shape=()):
        self._name, self._dtype, self._shape = name, dtype, tuple(shape)

    name = property(lambda self: self._name)
    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)


class ILayer:
    def __init__(self, node):
        self._name = node.name
        self._type = LayerType.PLUGIN_V3 if node.domain not in ("", "ai.onnx") else LayerType.IDENTITY  # noqa: F821

    name = property(lambda self: self._name)
    type = property(lambda self: self._type)


class INetworkDefinition:
    def __init__(self, flags):
        self._flags, self._layers, self._inputs = flags, [], []

    flags = property(lambda self: self._flags)
    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))

    def get_layer(self, index):
        return self._layers[index]

    def get_input(self, index):
        return self._inputs[index]


class ParserError:
    def __init__(self, index, node):
        self._index, self._node = index, node

    def node(self):
        return self._index

    def node_name(self):
        return self._node.name

    def node_operator(self):
        return self._node.op_type

    def desc(self):
        return "Plugin not found, are the plugin name, version, and namespace correct?"


class OnnxParser:
    """Every node becomes a layer; a custom-domain node is "not found" unless ``_registered_plugins`` has it."""

    _registered_plugins: set = set()

    def __init__(self, network, logger):
        self._network, self._errors = network, []

    def parse_from_file(self, model):
        proto = onnx.load(model)
        for value in proto.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
            self._network._inputs.append(ITensor(value.name, _dtype(value.type.tensor_type.elem_type), dims))
        for i, node in enumerate(proto.graph.node):
            if node.domain not in ("", "ai.onnx") and (node.domain, node.op_type) not in self._registered_plugins:
                self._errors.append(ParserError(i, node))
                continue
            self._network._layers.append(ILayer(node))
        return not self._errors

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index):
        return self._errors[index]


class ITimingCache:
    def __init__(self, data):
        self._data = bytes(data)

    def serialize(self):
        return self._data + b"+timed"


class IOptimizationProfile:
    def __init__(self):
        self._shapes = {}

    def set_shape(self, input, min, opt, max):
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))


class IBuilderConfig:
    _reject_caches = False  # a test sets it: create_timing_cache gives None, set_timing_cache False

    def __init__(self):
        self._flags, self._pools, self._profiles, self._cache = set(), {}, [], None
        self.builder_optimization_level = 3
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE  # noqa: F821

    def set_flag(self, flag):
        self._flags.add(flag)

    def set_memory_pool_limit(self, pool, pool_size):
        self._pools[pool] = pool_size

    def add_optimization_profile(self, profile):
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        return None if self._reject_caches == "create" else ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache, ignore_mismatch):
        if self._reject_caches == "set" or (self._reject_caches == "stale" and cache._data):
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class Builder:
    _last = None  # the last build's network and config, for tests to inspect
    _fail_build = False  # a test sets it: build_serialized_network returns None after logging an error

    def __init__(self, logger):
        self._logger = logger

    logger = property(lambda self: self._logger)

    def create_network(self, flags=0):
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        Builder._last = types.SimpleNamespace(network=network, config=config)
        if self._fail_build:
            self._logger.log(ILogger.Severity.ERROR, "IBuilder::buildSerializedNetwork: Error Code 4: Internal Error "
                                                     "(could not find any implementation for node conv)")
            return None
        description = {"layers": len(network._layers), "flags": sorted(int(f) for f in config._flags),
                       "profiles": [p._shapes for p in config._profiles]}
        return json.dumps(description).encode()


# --- run time: a "plan" is JSON naming the I/O; execution copies the input into the scores -------

class Runtime:
    def __init__(self, logger):
        self._logger, self.engine_host_code_allowed = logger, False

    def deserialize_cuda_engine(self, serialized_engine):
        try:
            desc = json.loads(bytes(serialized_engine))
        except ValueError:
            self._logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                     "(Serialization assertion magicTagRead == kMAGIC_TAG failed.)")
            return None
        if desc.get("needs_plugin"):
            self._logger.log(ILogger.Severity.ERROR, "IPluginRegistry::getCreator: Error Code 4: Cannot find plugin: "
                                                     f"{desc['needs_plugin']}, version: 1")
            return None
        return ICudaEngine(desc)


class ICudaEngine:
    """I/O of csrinfer's graphs: images [B, 3, H, W] -> scores [B, K], labels [B, K], masks [B, K, H/8, W/8]."""

    _names = ("images", "scores", "labels", "masks")

    def __init__(self, desc):
        self._k = int(desc.get("k", 4))

    num_io_tensors = property(lambda self: 4)

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT  # noqa: F821

    def get_tensor_dtype(self, name):
        return int64 if name == "labels" else float32  # noqa: F821

    def create_execution_context(self, strategy=None):
        return IExecutionContext(self)


class IExecutionContext:
    """execute_async_v3 enqueues: scores <- the first B*K input values, labels <- 0, masks <- 0 (cuda-python)."""

    def __init__(self, engine):
        self._engine, self._shape, self._addresses, self._runs = engine, None, {}, 0

    engine = property(lambda self: self._engine)

    def set_input_shape(self, name, shape):
        self._shape = tuple(shape)
        return name == "images" and len(self._shape) == 4

    def get_tensor_shape(self, name):
        b, _, h, w = self._shape
        k = self._engine._k
        return {"scores": (b, k), "labels": (b, k), "masks": (b, k, h // 8, w // 8)}[name]

    def set_tensor_address(self, name, memory):
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        from cuda.bindings import runtime as cudart

        stream = cudart.cudaStream_t(int(stream_handle))
        b, k = self.get_tensor_shape("scores")
        masks = int(np.prod(self.get_tensor_shape("masks")))
        a = self._addresses
        calls = [cudart.cudaMemcpyAsync(a["scores"], a["images"], b * k * 4,
                                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream),
                 cudart.cudaMemsetAsync(a["labels"], 0, b * k * 8, stream),
                 cudart.cudaMemsetAsync(a["masks"], 0, masks * 4, stream)]
        self._runs += 1
        return all(int(c[0]) == 0 for c in calls)
