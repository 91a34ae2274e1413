"""Graph helpers shared by nashc's passes: node selection, pass metadata, constant
weights behind their quantizers, quantizer bit widths and input grids.

Errors: `PassError` (a `NashcError`) when a selector matches nothing or a tensor is not a
constant weight.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from nashc.dsl.errors import NashcError
from nashc.runtime.load import COMPUTE_OP_TYPES
from nashc.runtime.ops import DOMAIN

__all__ = [
    "PassError",
    "QUANT_DOMAINS",
    "PASS_THROUGH",
    "select_nodes",
    "record_metadata",
    "is_quant_node",
    "weight_values",
    "quant_bits",
    "input_grid_scale",
    "ensure_hybrid_domain",
    "remove_quant_if_unused",
]

QUANT_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
PASS_THROUGH = ("Reshape", "Flatten", "MaxPool", "Transpose", "Identity", "Squeeze",
                "Unsqueeze")


class PassError(NashcError):
    """A pass cannot apply to the graph as given (selector, op or weights)."""


def select_nodes(model: ModelWrapper, selector: str,
                 op_types: tuple[str, ...] | None = None) -> list[NodeProto]:
    """Nodes whose name equals ``selector`` or matches one of its comma-separated fnmatch
    globs, optionally restricted to ``op_types``. Raises `PassError` if no node name matches
    at all (whatever its op type), so a typo is reported."""
    pats = [p.strip() for p in selector.split(",") if p.strip()]
    if not pats:
        raise PassError(f"empty node selector {selector!r}")
    named = [n for n in model.graph.node
             if n.name == selector or any(fnmatch.fnmatchcase(n.name, p) for p in pats)]
    if not named:
        layers = [n.name for n in model.graph.node if n.op_type in COMPUTE_OP_TYPES]
        shown = ", ".join(layers[:12]) + (", ..." if len(layers) > 12 else "")
        raise PassError(f"selector {selector!r} matches no node name in the graph "
                        f"(its layers: {shown or 'none'})")
    if op_types is None:
        return named
    return [n for n in named if n.op_type in op_types]


def record_metadata(model: ModelWrapper, pass_name: str, entries: list[dict[str, Any]]) -> None:
    """Appends ``entries`` to the JSON list under ``nashc.<pass_name>``."""
    key = f"nashc.{pass_name}"
    old = model.get_metadata_prop(key)
    data = json.loads(old) if old else []
    if not isinstance(data, list):
        data = [data]
    data.extend(entries)
    model.set_metadata_prop(key, json.dumps(data))


def is_quant_node(node: NodeProto | None) -> bool:
    return node is not None and node.op_type in ("Quant", "BipolarQuant") and \
        node.domain in QUANT_DOMAINS


def weight_values(model: ModelWrapper, tensor: str) -> tuple[np.ndarray, NodeProto | None]:
    """The constant value of a weight tensor: an initializer, or a Quant/BipolarQuant over
    initializers (executed with qonnx). Returns the values and the Quant node (or None)."""
    init = model.get_initializer(tensor)
    if init is not None:
        return np.asarray(init, dtype=np.float32), None
    prod = model.find_producer(tensor)
    if is_quant_node(prod) and prod is not None and \
            all(model.get_initializer(i) is not None for i in prod.input):
        from qonnx.custom_op.registry import getCustomOp

        ctx = {i: model.get_initializer(i) for i in prod.input}
        getCustomOp(prod).execute_node(ctx, model.graph)
        return np.asarray(ctx[prod.output[0]], dtype=np.float32), prod
    raise PassError(f"tensor {tensor!r} is not a constant weight (initializer or Quant over "
                    "initializers)")


def quant_bits(model: ModelWrapper, quant: NodeProto | None) -> int | None:
    """The bit width of a ``Quant`` (its constant bit-width input) or ``BipolarQuant`` (1);
    None for no node or a non-constant bit width."""
    if quant is None:
        return None
    if quant.op_type == "BipolarQuant":
        return 1
    bw = model.get_initializer(quant.input[3])
    return int(np.asarray(bw)) if bw is not None else None


def input_grid_scale(model: ModelWrapper, tensor: str) -> float | None:
    """The per-tensor quantization scale of ``tensor``, or None: the scale of the producing
    ``Quant``/``BipolarQuant`` (zero point 0), ``MultiThreshold``'s ``out_scale``, or 1 for an
    integer graph input, looked for through shape-only ops (`PASS_THROUGH`). None when
    unknown (float input, per-channel scale, nonzero zero point)."""
    seen = 0
    while seen < 16:
        seen += 1
        prod = model.find_producer(tensor)
        if prod is None:
            if tensor in [i.name for i in model.graph.input]:
                dt = model.get_tensor_datatype(tensor)
                return 1.0 if dt.is_integer() else None
            return None
        if prod.op_type in PASS_THROUGH:
            tensor = prod.input[0]
            continue
        if is_quant_node(prod):
            s = model.get_initializer(prod.input[1])
            if s is None or np.asarray(s).size != 1:
                return None
            if prod.op_type == "Quant":
                z = model.get_initializer(prod.input[2])
                if z is None or np.any(np.asarray(z) != 0):
                    return None
            return float(np.asarray(s).reshape(()))
        if prod.op_type == "MultiThreshold":
            for a in prod.attribute:
                if a.name == "out_scale":
                    return float(helper.get_attribute_value(a))
            return 1.0
        return None
    return None


def ensure_hybrid_domain(model: ModelWrapper) -> None:
    if not any(o.domain == DOMAIN for o in model.model.opset_import):
        model.model.opset_import.append(helper.make_opsetid(DOMAIN, 1))


def remove_quant_if_unused(model: ModelWrapper, quant: NodeProto | None) -> None:
    if quant is None:
        return
    if model.find_consumers(quant.output[0]):
        return
    model.graph.node.remove(quant)
    for i in quant.input:
        if not model.find_consumers(i) and model.get_initializer(i) is not None:
            model.del_initializer(i)
    for vi in list(model.graph.value_info):
        if vi.name == quant.output[0]:
            model.graph.value_info.remove(vi)
