"""A stand-in for the ``tensorrt`` module that records what csrinfer's builder asks of it.

It lets CI walk every line of csrinfer/export/tensorrt.py without TensorRT: ONNX nodes become
"layers", flags and precisions are recorded, the "engine" is a JSON description of the build.
It proves nothing about TensorRT itself; its names follow the TensorRT 10.x Python API
(python/src/infer/pyCore.cpp, pyGraph.cpp and parsers/pyOnnx.cpp of NVIDIA/TensorRT), so a
misspelt call in the builder fails here as it would there.
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np
import onnx

__version__ = "10.13.0.35"


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 8
    BOOL = 4


float32, float16, int32, int64, bool = DataType.FLOAT, DataType.HALF, DataType.INT32, DataType.INT64, DataType.BOOL
_NP = {float32: np.float32, float16: np.float16, int32: np.int32, int64: np.int64, bool: np.bool_}
_ONNX = {onnx.TensorProto.FLOAT: float32, onnx.TensorProto.FLOAT16: float16, onnx.TensorProto.INT64: int64,
         onnx.TensorProto.INT32: int32, onnx.TensorProto.BOOL: bool}


def nptype(t):
    return _NP[t]


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        pass


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    OBEY_PRECISION_CONSTRAINTS = 11
    VERSION_COMPATIBLE = 14
    TF32 = 7


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1


class LayerType(enum.Enum):
    CONVOLUTION, DECONVOLUTION, MATRIX_MULTIPLY, PLUGIN_V2, PLUGIN_V3, SHAPE, TOPK, NORMALIZATION, ACTIVATION, \
        OTHER = range(10)


class ActivationType(enum.Enum):
    RELU = 0
    SIGMOID = 1


_LAYER_OF_OP = {"Conv": LayerType.CONVOLUTION, "MatMul": LayerType.MATRIX_MULTIPLY, "TopK": LayerType.TOPK,
                "InstanceNormalization": LayerType.NORMALIZATION, "Shape": LayerType.SHAPE,
                "Sigmoid": LayerType.ACTIVATION, "Relu": LayerType.ACTIVATION, "D2SFused": LayerType.PLUGIN_V3}


class ITensor:
    def __init__(self, name, dtype, shape=()):
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)


class ILayer:
    def __init__(self, node, tensors, types):
        self.name = node.name
        self.type = _LAYER_OF_OP.get(node.op_type, LayerType.OTHER)
        self._activation = ActivationType.SIGMOID if node.op_type == "Sigmoid" else ActivationType.RELU
        self._inputs = [tensors.get(i) for i in node.input]
        self._outputs = [tensors.setdefault(o, ITensor(o, _ONNX.get(types.get(o), float32))) for o in node.output]
        self.precision, self.output_types = None, {}

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, i):
        return self._inputs[i]

    def get_output(self, i):
        return self._outputs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class IActivationLayer(ILayer):
    type = property(lambda self: self._activation)


class INetworkDefinition:
    def __init__(self, flags):
        self.flags, self.layers, self.inputs = flags, [], []

    num_layers = property(lambda self: len(self.layers))
    num_inputs = property(lambda self: len(self.inputs))

    def get_layer(self, i):
        layer = self.layers[i]
        copy = ILayer.__new__(ILayer)  # a fresh Python wrapper each call, as pybind11 gives
        copy.__dict__ = layer.__dict__
        return copy

    def get_input(self, i):
        return self.inputs[i]


class IParserError:
    def __init__(self, node_index, node):
        self._i, self._node = node_index, node

    def node(self):
        return self._i

    def node_name(self):
        return self._node.name

    def node_operator(self):
        return self._node.op_type

    def desc(self):
        return "Plugin not found, are the plugin name, version, and namespace correct?"


class OnnxParser:
    """Every node becomes a layer; a custom-domain node is "not found" unless ``registered_plugins`` has it."""

    registered_plugins: set = set()

    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse_from_file(self, path):
        model = onnx.load(path)
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except onnx.shape_inference.InferenceError:  # unknown custom ops: outputs stay float32
            inferred = model.graph
        types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.value_info) + list(inferred.output)}
        tensors = {}
        for value in model.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
            tensor = ITensor(value.name, _ONNX[value.type.tensor_type.elem_type], dims)
            tensors[value.name] = tensor
            self.network.inputs.append(tensor)
        for t in model.graph.initializer:
            tensors[t.name] = ITensor(t.name, _ONNX.get(t.data_type, float32), t.dims)
        for i, node in enumerate(model.graph.node):
            if node.domain not in ("", "ai.onnx") and (node.domain, node.op_type) not in self.registered_plugins:
                self.errors.append(IParserError(i, node))
                continue
            self.network.layers.append(ILayer(node, tensors, types))
        return not self.errors

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, i):
        return self.errors[i]


class ITimingCache:
    def __init__(self, data):
        self.data = bytes(data)

    def serialize(self):
        return self.data + b"+timed"


class IOptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class IBuilderConfig:
    def __init__(self):
        self.flags, self.pools, self.profiles, self.cache = set(), {}, [], None
        self.builder_optimization_level = 3
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE

    def set_flag(self, flag):
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        return ITimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class Builder:
    last = None  # the last build's network and config, for tests to inspect

    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        Builder.last = types.SimpleNamespace(network=network, config=config)
        description = {"layers": len(network.layers), "flags": sorted(int(f) for f in config.flags),
                       "profiles": [p.shapes for p in config.profiles]}
        return json.dumps(description).encode()


# --- run time: a "plan" is JSON naming the I/O; execution copies the input into the scores -------

class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class Runtime:
    def __init__(self, logger):
        self.logger, self.engine_host_code_allowed = logger, False

    def deserialize_cuda_engine(self, data):
        try:
            desc = json.loads(bytes(data))
        except ValueError:
            self.logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                    "(Serialization assertion magicTagRead == kMAGIC_TAG failed.)")
            return None
        if desc.get("needs_plugin"):
            self.logger.log(ILogger.Severity.ERROR, "IPluginRegistry::getCreator: Error Code 4: Cannot find plugin: "
                                                    f"{desc['needs_plugin']}, version: 1")
            return None
        return ICudaEngine(desc)


class ICudaEngine:
    """I/O of csrinfer's graphs: images [B, 3, H, W] -> scores [B, K], labels [B, K], masks [B, K, H/8, W/8]."""

    names = ("images", "scores", "labels", "masks")

    def __init__(self, desc):
        self.k = int(desc.get("k", 4))

    num_io_tensors = property(lambda self: 4)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return int64 if name == "labels" else float32

    def create_execution_context(self):
        return IExecutionContext(self)


class IExecutionContext:
    """execute_async_v3 enqueues: scores <- the first B*K input values, labels <- 0, masks <- 0 (cuda-python)."""

    def __init__(self, engine):
        self.engine, self.shape, self.addresses, self.runs = engine, None, {}, 0

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return name == "images" and len(self.shape) == 4

    def get_tensor_shape(self, name):
        b, _, h, w = self.shape
        k = self.engine.k
        return {"scores": (b, k), "labels": (b, k), "masks": (b, k, h // 8, w // 8)}[name]

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle):
        from cuda.bindings import runtime as cudart

        stream = cudart.cudaStream_t(int(stream_handle))
        b, k = self.get_tensor_shape("scores")
        masks = int(np.prod(self.get_tensor_shape("masks")))
        a = self.addresses
        calls = [cudart.cudaMemcpyAsync(a["scores"], a["images"], b * k * 4,
                                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream),
                 cudart.cudaMemsetAsync(a["labels"], 0, b * k * 8, stream),
                 cudart.cudaMemsetAsync(a["masks"], 0, masks * 4, stream)]
        self.runs += 1
        return all(int(c[0]) == 0 for c in calls)
