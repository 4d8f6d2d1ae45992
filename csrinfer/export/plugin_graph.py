"""The plugin graph: each D2S pixel-shuffle + depthwise pair as one ``D2SFused`` node (design.md §3).

The standard export writes the first half of every D2S block (paper §III-B) as two ONNX nodes,
``DepthToSpace(mode="CRD", blocksize=2)`` followed by a depthwise ``Conv`` (group = channels,
3x3, pads 1, stride 1, with bias). :func:`fuse_d2s` rewrites each such pair into one custom
node that TensorRT maps onto the plugin ``csrinfer::D2SFused`` (csrinfer/plugins/tensorrt_plugin.py)
and that ONNX Runtime runs through a custom op backed by the reference (csrinfer/plugins/ort_op.py).

We rewrite the standard graph rather than emitting the node from the exporter: the rewrite needs
no TensorRT and no custom exporter hook, matches one exact pattern and leaves everything else
alone, and a graph exported by any means can be converted (``csrinfer export --plugin`` calls it).

The ``D2SFused`` node::

    domain      "csrinfer" (opset_import csrinfer:1)
    inputs      X      float32|float16 [N, C, H, W], C divisible by 4
                W      same dtype [C/4, 1, 3, 3]  depthwise filters (an initializer)
                B      same dtype [C/4]           bias (an initializer)
    output      Y      same dtype [N, C/4, 2H, 2W]
                Y = depthwise_conv3x3(pixel_shuffle(X, 2), W, pad=1) + B
    attributes  plugin_namespace "csrinfer"  the creator's namespace (the parser's default is "")
                plugin_version   "1"         the creator's version (also the parser's default)
                aot              1           the parser asks the creator for STRICT_AOT: the
                                             ahead-of-time implementation, no Python at run time
                blocksize        2           documentation only: the creator advertises no
                                             fields, so the parser passes it nowhere

What NVIDIA's ONNX parser does with such a node (onnx-tensorrt, ``FallbackPluginImporter``,
``loadFields`` and ``createPlugin``): it looks the creator up by (op_type, ``plugin_version``,
``plugin_namespace``); it hands the creator, as plugin fields, only the node attributes named
in the creator's ``getFieldNames()`` (INT as kINT32, STRING as kCHAR) and ignores the rest; and
for a Quick (tensorrt.plugin) creator an ``aot`` attribute picks STRICT_AOT (non-zero) or
STRICT_JIT, else the network's PREFER_*_PYTHON_PLUGINS flags decide. tensorrt.plugin's creator
refuses a field its ``register`` function does not declare, so the node's attributes must be
these four and ``register`` must declare none (:data:`PARSER_ATTRIBUTES`; checked against the
real tensorrt.plugin in tests/plugins/test_tensorrt_plugin.py).

Weights and bias are node *inputs*, not attributes: an ahead-of-time TensorRT plugin serializes
no attributes into the engine (tensorrt.plugin.aot_impl docs), so constants must reach the
kernel as tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csrinfer.contract.graph import DOMAIN, OP_TYPE, PLUGIN_VERSION

if TYPE_CHECKING:
    import onnx

__all__ = ["DOMAIN", "OP_TYPE", "PLUGIN_VERSION", "fuse_d2s", "fused_nodes", "custom_ops"]

BLOCKSIZE = 2
STANDARD_DOMAINS = ("", "ai.onnx")
#: attributes NVIDIA's ONNX parser reads itself (creator lookup, AOT request); none reaches the plugin
PARSER_ATTRIBUTES = ("plugin_namespace", "plugin_version", "aot")


def fuse_d2s(model: onnx.ModelProto, domain: str = DOMAIN) -> tuple[onnx.ModelProto, int]:
    """Rewrite every DepthToSpace(CRD, 2) -> depthwise 3x3 Conv pair into one ``D2SFused`` node.

    Returns (a rewritten copy of ``model``, number of pairs fused). Pairs that do not match the
    pattern exactly (another mode or blocksize, padding, stride, dilation, a second consumer of
    the shuffled tensor, weights that are not initializers) are left as they are.
    """
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    replace: dict[int, onnx.NodeProto] = {}  # id(conv node) -> fused node
    drop: set[int] = set()
    new_inits = []
    for node in graph.node:
        if not _is_d2s(node) or node.output[0] in graph_outputs:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or not _is_depthwise_3x3(users[0], node.output[0], inits):
            continue
        conv = users[0]
        weight = inits[conv.input[1]]
        bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else ""
        if not bias_name:  # the kernel always adds a bias: give it zeros
            bias_name = f"{conv.output[0]}_zero_bias"
            new_inits.append(helper.make_tensor(bias_name, weight.data_type, [weight.dims[0]],
                                                [0] * weight.dims[0]))
        fused = helper.make_node(
            OP_TYPE, [node.input[0], conv.input[1], bias_name], [conv.output[0]],
            name=f"{conv.name or conv.output[0]}_d2s_fused", domain=domain,
            plugin_namespace=DOMAIN, plugin_version=PLUGIN_VERSION, aot=1, blocksize=BLOCKSIZE)
        replace[id(conv)] = fused
        drop.add(id(node))

    if not replace:
        return out, 0
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    removed_tensors = {n.output[0] for n in graph.node if id(n) in drop}
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    kept_info = [v for v in graph.value_info if v.name not in removed_tensors]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    if all(op.domain != domain for op in out.opset_import):
        out.opset_import.append(helper.make_opsetid(domain, 1))
    return out, len(replace)


def fused_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The ``D2SFused`` nodes of a graph, whatever their domain."""
    return [n for n in model.graph.node if n.op_type == OP_TYPE]


def custom_ops(model: onnx.ModelProto) -> list[dict]:
    """Nodes outside the standard ONNX domain, grouped: [{op, domain, count}] (the sidecar's plugin list)."""
    counts: dict[tuple[str, str], int] = {}
    for n in model.graph.node:
        if n.domain not in STANDARD_DOMAINS:
            counts[(n.op_type, n.domain)] = counts.get((n.op_type, n.domain), 0) + 1
    return [{"op": op, "domain": domain, "count": c} for (op, domain), c in sorted(counts.items())]


def _attr(node: onnx.NodeProto, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _is_d2s(node: onnx.NodeProto) -> bool:
    mode = _attr(node, "mode", b"DCR")  # ONNX's default mode is DCR, which is not pixel shuffle
    return (node.op_type == "DepthToSpace" and node.domain in STANDARD_DOMAINS
            and _attr(node, "blocksize") == BLOCKSIZE and mode in (b"CRD", "CRD"))


def _is_depthwise_3x3(conv: onnx.NodeProto, x_name: str, inits: dict) -> bool:
    if conv.op_type != "Conv" or conv.domain not in STANDARD_DOMAINS or not conv.input or conv.input[0] != x_name:
        return False
    weight = inits.get(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or list(weight.dims[1:]) != [1, 3, 3]:
        return False
    if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
        return False
    channels = weight.dims[0]
    return (_attr(conv, "group", 1) == channels
            and list(_attr(conv, "kernel_shape", [3, 3])) == [3, 3]
            and list(_attr(conv, "pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and list(_attr(conv, "strides", [1, 1])) == [1, 1]
            and list(_attr(conv, "dilations", [1, 1])) == [1, 1]
            and _attr(conv, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))
