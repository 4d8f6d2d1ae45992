"""Define csrinfer's plugin with the real ``tensorrt.plugin`` and report what TensorRT would see (JSON).

Run in the isolated subprocess of tests/tensorrt_bindings.py: ``python tests/plugins/qdp_probe.py
out.json``. Only the C++ plugin registry is stood in (``trt.get_plugin_registry``; its factory
returns null without libnvinfer); the decorators, their validation, the plugin creator, the
descriptors and shape expressions are NVIDIA's own code.

It then does what NVIDIA's ONNX parser does with a ``D2SFused`` node (onnx-tensorrt,
FallbackPluginImporter, importPluginCreator, loadFields, createPlugin): look the creator up by
(op_type, ``plugin_version`` or "1", ``plugin_namespace``), pass as plugin fields only the node
attributes the creator advertises in its field names, and ask for the ahead-of-time
implementation when the node's ``aot`` attribute is non-zero.
"""

from __future__ import annotations

import json
import sys


class Registry:
    """The C++ IPluginRegistry, reduced to the two calls tensorrt.plugin makes."""

    def __init__(self):
        self.creators = {}

    def register_creator(self, creator, namespace):
        self.creators[(creator.name, creator.plugin_version, namespace)] = creator
        return True

    def get_creator(self, name, version, namespace):
        return self.creators.get((name, version, namespace))


def fused_node():
    """A D2SFused node as csrinfer/export/plugin_graph.py writes it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from csrinfer.export.plugin_graph import fuse_d2s

    w = numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("DepthToSpace", ["x"], ["s"], blocksize=2, mode="CRD"),
         helper.make_node("Conv", ["s", "w", "b"], ["y"], group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w, b])
    fused, count = fuse_d2s(helper.make_model(graph))
    assert count == 1
    return next(n for n in fused.graph.node if n.op_type == "D2SFused")


def parser_fields(trt, node, creator):
    """onnx-tensorrt's loadFields: only attributes named in the creator's getFieldNames(), INT as kINT32."""
    import numpy as np
    from onnx import helper

    advertised = {f.name for f in creator.field_names}
    fields = []
    for a in node.attribute:
        if a.name not in advertised:
            continue
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            fields.append(trt.PluginField(a.name, value + b"\0", trt.PluginFieldType.CHAR))
        else:
            fields.append(trt.PluginField(a.name, np.array([value], np.int32), trt.PluginFieldType.INT32))
    return advertised, fields


def main(out_path: str) -> None:
    import tensorrt as trt
    import tensorrt.plugin as trtp
    from onnx import helper

    registry = Registry()
    trt.get_plugin_registry = lambda: registry  # the one C++ object stood in

    from csrinfer.plugins import tensorrt_plugin as tp

    tp.register(arch="compute_75")  # real decorators: their validation runs here
    report = {"registered": sorted("::".join((k[2], k[0], k[1])) for k in registry.creators)}

    node = fused_node()
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    namespace = attrs.get("plugin_namespace", b"").decode()
    version = attrs.get("plugin_version", b"1").decode()
    creator = registry.get_creator(node.op_type, version, namespace)
    report["lookup"] = [node.op_type, version, namespace, creator is not None]
    advertised, fields = parser_fields(trt, node, creator)
    report["advertised_fields"] = sorted(advertised)
    report["node_attributes"] = sorted(attrs)
    request = (trt.QuickPluginCreationRequest.STRICT_AOT if attrs.get("aot", 0)
               else trt.QuickPluginCreationRequest.STRICT_JIT) if "aot" in attrs else \
        trt.QuickPluginCreationRequest.UNKNOWN
    plugin = creator.create_plugin(node.op_type, namespace, trt.PluginFieldCollection(fields),
                                   trt.TensorRTPhase.BUILD, request)
    report["plugin"] = [type(plugin).__name__, plugin.plugin_name, plugin.plugin_namespace, plugin.plugin_version]

    # The decorated functions with the real descriptor and shape-expression types
    from tensorrt.plugin import _lib

    definition = _lib.QDP_REGISTRY[tp.PLUGIN_ID]
    results = {}
    for dtype_name in ("float32", "float16"):
        dtype = getattr(trt, dtype_name)
        # TensorRT's own first call into the plugin (the builder calls it): register_func with
        # descriptors whose shapes are fake expressions, as _TemplatePlugin.get_output_data_types makes them
        output_types = plugin.get_output_data_types([dtype] * 3, [4, 4, 1])

        def desc(rank):
            d = trtp.TensorDesc(trtp.ShapeExprs(rank, _is_dummy=True), dtype)
            d._immutable = True
            return d

        x, w, b = desc(4), desc(4), desc(1)
        y = definition.register_func(x, w, b)
        combos = definition.autotune_func(x, w, b, (y,))
        name, ptx, params, extra = definition.aot_impl_func(x, w, b, (y,), 0)
        results[dtype_name] = {
            "output_types": [str(t) for t in output_types],
            "output": [type(y).__name__, len(y.shape_expr), str(y.dtype)],
            "combinations": [type(c).__name__ for c in combos],
            # the checks _TemplateAOTPlugin.get_launch_params makes before TensorRT launches the kernel
            "name_type": type(name).__name__, "ptx_type": type(ptx).__name__,
            "launch_params": isinstance(params, trtp.KernelLaunchParams),
            "extra_args": isinstance(extra, trtp.SymIntExprs),
            "extra_arg_types": [type(a).__name__ for a in extra],
            "entry_in_ptx": f".entry {name}(" in ptx,
            "name": name,
        }
    report["calls"] = results
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
