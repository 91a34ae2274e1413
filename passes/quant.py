"""Bit-width passes over QONNX Quant nodes and hybrid layers.

Re-quantizing keeps a quantizer's range and changes its resolution: the ``Quant`` bit
width becomes ``bits`` and its scale is multiplied by ``max_int(old) / max_int(new)``
(so ``max_int * scale``, the largest representable value, stays the same). Shift layers
get ``weight_bits`` set and their weights re-rounded with `to_shift_weights` (weights
already clamped to a narrower exponent range cannot regain precision). Adder layers get
their weights re-rounded onto the (possibly new) grid of their input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.quant import max_int
from qonnx.transformation.base import Transformation

from nashc.passes.graph import (
    PassError,
    input_grid_scale,
    quant_bits,
    record_metadata,
    select_nodes,
)
from nashc.runtime.load import COMPUTE_OP_TYPES, node_attrs
from nashc.runtime.ops import DOMAIN, to_adder_weights, to_shift_weights

__all__ = ["SetWeightBits", "SetActivationBits", "requantize_quant_node"]

# ops between a layer and the Quant of its output activation
ACT_PATH = ("BatchNormalization", "Relu", "Add", "Mul", "Sub", "Div", "Identity", "MaxPool")


def requantize_quant_node(model: ModelWrapper, quant: NodeProto, bits: int) -> dict[str, Any]:
    """Sets a Quant node's bit width to ``bits`` keeping its range. Returns a record."""
    if quant.op_type != "Quant":
        raise PassError(f"node {quant.name!r} ({quant.op_type}): only Quant nodes have a "
                        "bit width to change")
    if bits < 2:
        raise PassError(f"node {quant.name!r} (Quant): bits must be >= 2, got {bits}")
    old_bw = model.get_initializer(quant.input[3])
    scale = model.get_initializer(quant.input[1])
    if old_bw is None or scale is None:
        raise PassError(f"node {quant.name!r} (Quant): scale and bit width must be constant")
    old = int(np.asarray(old_bw))
    a = node_attrs(quant)
    signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
    ratio = float(max_int(signed, narrow, old)) / float(max_int(signed, narrow, bits))
    new_scale = (np.asarray(scale, dtype=np.float32) * np.float32(ratio)).astype(np.float32)
    # fresh initializers: the old ones may be shared with other Quant nodes
    s_name = model.make_new_valueinfo_name()
    b_name = model.make_new_valueinfo_name()
    model.set_initializer(s_name, new_scale)
    model.set_initializer(b_name, np.array(float(bits), dtype=np.float32))
    olds = (quant.input[1], quant.input[3])
    quant.input[1] = s_name
    quant.input[3] = b_name
    for t in olds:
        if not model.find_consumers(t):
            model.del_initializer(t)
    return {"node": quant.name, "from_bits": old, "to_bits": bits}


def _requantize_hybrid(model: ModelWrapper, node: NodeProto, bits: int) -> dict[str, Any]:
    w = model.get_initializer(node.input[1])
    if w is None:
        raise PassError(f"node {node.name!r} ({node.op_type}): weight must be an initializer")
    if node.op_type.startswith("Shift"):
        wn = to_shift_weights(w, bits)
        rec: dict[str, Any] = {}
    else:
        scale = input_grid_scale(model, node.input[0])
        if scale is None:
            m = float(np.abs(w).max()) if w.size else 0.0
            scale = m / (2 ** (bits - 1) - 1) if m > 0 else 1.0
            rec = {"grid": "weights", "scale": scale}
        else:
            rec = {"grid": "input", "scale": scale}
        wn = to_adder_weights(w, scale, bits)
    for a in node.attribute:
        if a.name == "weight_bits":
            old = a.i
            a.i = bits
            break
    else:
        old = None
        node.attribute.append(helper.make_attribute("weight_bits", bits))
    model.set_initializer(node.input[1], wn)
    return {"node": node.name, "from_bits": old, "to_bits": bits, **rec}


class SetWeightBits(Transformation):
    """Replaces the weight bit width of selected layers with ``bits`` (re-quantizing)."""

    def __init__(self, selector: str, bits: int) -> None:
        super().__init__()
        self.selector = selector
        self.bits = int(bits)

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        records = []
        for node in select_nodes(model, self.selector, COMPUTE_OP_TYPES):
            if node.domain == DOMAIN:
                cur = next((a.i for a in node.attribute if a.name == "weight_bits"), None)
                if cur != self.bits:
                    records.append(_requantize_hybrid(model, node, self.bits))
                continue
            prod = model.find_producer(node.input[1])
            if prod is not None and prod.op_type == "Quant":
                bw = model.get_initializer(prod.input[3])
                if bw is not None and int(np.asarray(bw)) != self.bits:
                    records.append(requantize_quant_node(model, prod, self.bits))
            elif model.get_initializer(node.input[1]) is not None:
                raise PassError(f"node {node.name!r} ({node.op_type}): weights are not "
                                "quantized (no Quant node); cannot set their bit width")
        if records:
            record_metadata(model, "SetWeightBits", records)
        return model, False


def _output_quant(model: ModelWrapper, node: NodeProto) -> NodeProto | None:
    tensor = node.output[0]
    for _ in range(8):
        cons = model.find_consumers(tensor)
        if not cons or len(cons) != 1:
            return None
        c = cons[0]
        if c.op_type == "Quant":
            return c
        if c.op_type not in ACT_PATH:
            return None
        tensor = c.output[0]
    return None


def activation_bits(model: ModelWrapper) -> dict[str, int | None]:
    """Layer (compute node) name -> the bit width of the activation quantizer after it
    (the Quant `SetActivationBits` changes: through BatchNorm/ReLU-like nodes), None
    where there is none (e.g. the last layer)."""
    out: dict[str, int | None] = {}
    for node in model.graph.node:
        if node.op_type in COMPUTE_OP_TYPES:
            q = _output_quant(model, node)
            out[node.name] = quant_bits(model, q) if q is not None else None
    return out


class SetActivationBits(Transformation):
    """Replaces the bit width of the Quant after each selected layer with ``bits`` and
    re-grids the weights of adder layers reading that activation."""

    def __init__(self, selector: str, bits: int) -> None:
        super().__init__()
        self.selector = selector
        self.bits = int(bits)

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        records = []
        for node in select_nodes(model, self.selector, COMPUTE_OP_TYPES):
            q = _output_quant(model, node)
            if q is None:
                raise PassError(f"node {node.name!r} ({node.op_type}): no Quant node follows "
                                "its output")
            bw = model.get_initializer(q.input[3])
            if bw is not None and int(np.asarray(bw)) == self.bits:
                continue
            rec = requantize_quant_node(model, q, self.bits)
            rec["layer"] = node.name
            records.append(rec)
            # adder layers fed by this activation must follow the new grid
            for n in model.graph.node:
                if n.domain == DOMAIN and n.op_type.startswith("Adder"):
                    wb = next((a.i for a in n.attribute if a.name == "weight_bits"), 8)
                    if _reads(model, n, q.output[0]):
                        _requantize_hybrid(model, n, wb)
        if records:
            record_metadata(model, "SetActivationBits", records)
        return model, False


def _reads(model: ModelWrapper, node: NodeProto, tensor: str) -> bool:
    t = node.input[0]
    for _ in range(16):
        if t == tensor:
            return True
        prod = model.find_producer(t)
        if prod is None or prod.op_type not in ("Reshape", "Flatten", "MaxPool", "Transpose",
                                                 "Identity", "Squeeze", "Unsqueeze"):
            return False
        t = prod.input[0]
    return False
