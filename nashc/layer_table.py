"""The per-layer table of a design: the user's layers beside FINN's folding of them.

`layer_rows` gives one row per compute layer (conv/fc, hybrid ones included) with the
network's side (layer name, operator, output channels, weight/activation bits, kernel)
and FINN's side read from the folded dataflow graph (the matrix-vector node of that
layer: its name, PE, SIMD, memory mode, RAM style, resource type). FINN renames nodes
when it lowers a graph, so a layer is matched to the first unused MVAU/VVAU-like node (in
graph order) whose weight matrix has the same shape: MH = output channels and MW = the
weights per output channel (Cin x k x k; for a VVAU, Channels and k x k). A layer without
such a node gets None in FINN's columns rather than a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["layer_rows", "hw_matrix_nodes"]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def hw_matrix_nodes(dataflow: Any) -> list[dict[str, Any]]:
    """Matrix/vector hardware layers of a folded FINN graph in graph order: node name, op
    type, (out, per_out) weight-matrix shape and the folding attributes."""
    nodes = []
    for node in dataflow.graph.node:
        a = _attrs(node)
        if "MW" in a and "MH" in a:
            shape = (int(a["MH"]), int(a["MW"]))
        elif "Channels" in a and "Kernel" in a and node.op_type.startswith("VVAU"):
            shape = (int(a["Channels"]), int(np.prod(a["Kernel"])))
        else:
            continue
        nodes.append({"node": node.name, "op_type": node.op_type, "shape": shape,
                      "pe": a.get("PE"), "simd": a.get("SIMD"), "mem_mode": a.get("mem_mode"),
                      "ram_style": a.get("ram_style"), "res_type": a.get("resType")})
    return nodes


def _match(layers: list[dict[str, Any]], shapes: list[tuple[int, int]],
           dataflow: Any) -> None:
    hw = hw_matrix_nodes(dataflow) if dataflow is not None else []
    used: set[int] = set()
    for row, shape in zip(layers, shapes):
        hit = next((i for i, h in enumerate(hw) if i not in used and h["shape"] == shape), None)
        if hit is None:
            row.update({"finn_node": None, "pe": None, "simd": None, "mem_mode": None,
                        "ram_style": None, "res_type": None})
            continue
        used.add(hit)
        h = hw[hit]
        row.update({"finn_node": h["node"], "pe": h["pe"], "simd": h["simd"],
                    "mem_mode": h["mem_mode"], "ram_style": h["ram_style"],
                    "res_type": h["res_type"]})


def _declared_rows(program: Any, choice: dict[tuple[str, str], Any],
                   module: Any) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Rows of a network declared in the language: bits as `nashc.runtime.build` resolves
    them (the choice, else the layer's declaration, else int8/uint8), shapes from the
    built module's weights."""
    declared = {layer.name: layer for layer in program.network.layers}
    compute = [ly for ly in program.network.layers if ly.kind in ("conv", "fc")
               and ly.parent is None]
    last = compute[-1].name if compute else None
    rows, shapes = [], []
    for name, mod in module.compute_layers().items():
        layer = declared.get(name)
        w = mod.weight
        op = str(choice.get((name, "op"), "conv"))
        kind = layer.kind if layer is not None else ("conv" if w.dim() == 4 else "fc")
        wb = choice.get((name, "wbits"))
        if wb is None:
            wb = layer.weights.bits if layer is not None and layer.weights else 8
        ab: Any = choice.get((name, "abits"))
        if ab is None:
            ab = (layer.activations.bits if layer is not None and layer.activations else 8)
        if name == last:
            ab = None  # the last layer has no activation quantizer after it
        rows.append({"layer": name, "op": kind if op == "conv" else f"{op} {kind}",
                     "width": int(w.shape[0]), "wbits": int(wb),
                     "abits": None if ab is None else int(ab),
                     "kernel": int(w.shape[-1]) if w.dim() == 4 else None})
        shapes.append((int(w.shape[0]), int(np.prod(w.shape[1:]))))
    return rows, shapes


def _output_bits(model: Any, tensor: str) -> int | None:
    """Bits of the quantizer that follows `tensor` through channel-wise ops, if any."""
    from nashc.passes.graph import quant_bits
    from nashc.passes.width import CHANNELWISE

    for _ in range(16):
        consumers = model.find_consumers(tensor) or []
        if len(consumers) != 1:
            return None
        node = consumers[0]
        if node.op_type in ("Quant", "BipolarQuant"):
            return quant_bits(model, node)
        if node.op_type == "MultiThreshold":
            return int(model.get_tensor_datatype(node.output[0]).bitwidth())
        if node.op_type not in CHANNELWISE and node.op_type not in ("Mul", "Add", "Div", "Sub"):
            return None
        tensor = node.output[0]
    return None


def _graph_rows(model: Any, choice: dict[tuple[str, str], Any]
                ) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Rows of a graph loaded with `from` (its node names are the layer names)."""
    from nashc.passes.choices import layer_summary
    from nashc.passes.graph import weight_values
    from nashc.passes.width import _out_axis
    from nashc.runtime.load import COMPUTE_OP_TYPES

    summary = layer_summary(model)
    rows, shapes = [], []
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OP_TYPES:
            continue
        w, _ = weight_values(model, node.input[1])
        op_type, out, wbits = summary[node.name]
        axis = _out_axis(node)
        per_out = int(w.size // w.shape[axis])
        op = str(choice.get((node.name, "op"), "conv"))
        kind = "conv" if w.ndim == 4 else "fc"
        rows.append({"layer": node.name, "op": kind if op == "conv" else f"{op} {kind}",
                     "width": int(out), "wbits": wbits,
                     "abits": _output_bits(model, node.output[0]),
                     "kernel": int(w.shape[-1]) if w.ndim == 4 else None})
        shapes.append((int(out), per_out))
    return rows, shapes


def layer_rows(program: Any, choice: dict[tuple[str, str], Any], dataflow: Any = None, *,
               module: Any = None, graph_model: Any = None) -> list[dict[str, Any]]:
    """One dict per compute layer: layer, op ("conv", "fc", "shift conv", "adder fc"...),
    width (output channels), wbits, abits (bits of the activation after the layer; None
    where no quantizer follows), kernel (None for fc), and FINN's finn_node, pe, simd,
    mem_mode, ram_style, res_type from the folded `dataflow` (None where unmatched).

    Give `module` (the built PyTorch module of a declared network) or `graph_model` (the
    rewritten QONNX graph of a network loaded with `from`)."""
    if graph_model is not None:
        rows, shapes = _graph_rows(graph_model, choice)
    elif module is not None:
        rows, shapes = _declared_rows(program, choice, module)
    else:
        raise ValueError("layer_rows needs the module or the graph of the design")
    _match(rows, shapes, dataflow)
    return rows
