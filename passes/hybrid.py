"""Hybrid swaps: multiplication layers (Conv, Gemm, MatMul) to shift or adder layers.

The passes take QONNX graphs as Brevitas exports them: the weight input of a layer is an
initializer or the output of a QONNX ``Quant``/``BipolarQuant`` whose inputs are all
initializers; that Quant is folded into the converted weights (and removed when nothing
else uses it).

Weights:
- shift: ``to_shift_weights`` (sign(w) * 2^round(log2|w|), magnitude clamped to
  ``[2^-(2^(b-1)-1), 1]``).
- adder: ``to_adder_weights`` on the grid of the layer's input activations. The grid is
  the per-tensor scale of the producing ``Quant``/``BipolarQuant`` (with zero point 0),
  ``MultiThreshold`` (``out_scale``) or an integer graph input (scale 1), looked for
  through shape-only ops (Reshape, Flatten, MaxPool, Transpose, Identity). When it is
  unknown (float input, per-channel scale, nonzero zero point) the weights' own grid
  ``max|w| / (2^(b-1)-1)`` is used and the metadata says ``"grid": "weights"``: the layer
  is then still correct in float but hardware would need the input rescaled.

``weight_bits`` is the pass argument ``bits`` if given, else the weight Quant's bit width,
else 8 (shift) / 8 (adder).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from nashc.dsl.errors import NashcError
from nashc.runtime.load import COMPUTE_OP_TYPES
from nashc.runtime.ops import DOMAIN, to_adder_weights, to_shift_weights

__all__ = [
    "PassError",
    "ConvertConvToShift",
    "ConvertConvToAdder",
    "ConvertGemmToShift",
    "ConvertGemmToAdder",
    "select_nodes",
    "input_grid_scale",
    "record_metadata",
    "weight_values",
]

QUANT_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
PASS_THROUGH = ("Reshape", "Flatten", "MaxPool", "Transpose", "Identity", "Squeeze",
                "Unsqueeze")
DEFAULT_BITS = 8


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


def _is_quant(node: NodeProto | None) -> bool:
    return node is not None and node.op_type in ("Quant", "BipolarQuant") and \
        node.domain in QUANT_DOMAINS


def weight_values(model: ModelWrapper, tensor: str) -> tuple[np.ndarray, NodeProto | None]:
    """The constant value of a weight tensor: an initializer, or a Quant/BipolarQuant over
    initializers (executed with qonnx). Returns the values and the Quant node (or None)."""
    init = model.get_initializer(tensor)
    if init is not None:
        return np.asarray(init, dtype=np.float32), None
    prod = model.find_producer(tensor)
    if _is_quant(prod) and prod is not None and \
            all(model.get_initializer(i) is not None for i in prod.input):
        from qonnx.custom_op.registry import getCustomOp

        ctx = {i: model.get_initializer(i) for i in prod.input}
        getCustomOp(prod).execute_node(ctx, model.graph)
        return np.asarray(ctx[prod.output[0]], dtype=np.float32), prod
    raise PassError(f"tensor {tensor!r} is not a constant weight (initializer or Quant over "
                    "initializers)")


def quant_bits(model: ModelWrapper, quant: NodeProto | None) -> int | None:
    if quant is None:
        return None
    if quant.op_type == "BipolarQuant":
        return 1
    bw = model.get_initializer(quant.input[3])
    return int(np.asarray(bw)) if bw is not None else None


def input_grid_scale(model: ModelWrapper, tensor: str) -> float | None:
    """The per-tensor quantization scale of ``tensor`` (see module docstring), or None."""
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
        if _is_quant(prod):
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


def _ensure_domain(model: ModelWrapper) -> None:
    if not any(o.domain == DOMAIN for o in model.model.opset_import):
        model.model.opset_import.append(helper.make_opsetid(DOMAIN, 1))


def _remove_if_unused(model: ModelWrapper, quant: NodeProto | None) -> None:
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


@dataclass
class _Swap:
    x: str
    w: np.ndarray  # OIHW (conv) or (K, N) (fc), float, before conversion
    quant: NodeProto | None
    bias: str | None  # conv: B input; fc: tensor added after the product
    bias_scale: float  # Gemm beta
    attrs: dict[str, Any]


def _conv_attrs(node: NodeProto, w: np.ndarray) -> dict[str, Any]:
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    auto_pad = a.pop("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", ""):
        raise PassError(f"node {node.name!r} ({node.op_type}): auto_pad={auto_pad} is not "
                        "supported; use explicit pads")
    ks = list(a.get("kernel_shape", list(w.shape[2:])))
    if len(ks) != 2:
        raise PassError(f"node {node.name!r} ({node.op_type}): only 2D convolutions are "
                        "supported")
    return {
        "kernel_shape": ks,
        "strides": list(a.get("strides", [1, 1])),
        "pads": list(a.get("pads", [0, 0, 0, 0])),
        "group": int(a.get("group", 1)),
        "dilations": list(a.get("dilations", [1, 1])),
    }


def _conv_swap(model: ModelWrapper, node: NodeProto) -> _Swap:
    w, quant = _weights_or_error(model, node)
    if w.ndim != 4:
        raise PassError(f"node {node.name!r} (Conv): only 2D convolutions are supported")
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    return _Swap(node.input[0], w, quant, bias, 1.0, _conv_attrs(node, w))


def _weights_or_error(model: ModelWrapper, node: NodeProto) -> tuple[np.ndarray, Any]:
    try:
        return weight_values(model, node.input[1])
    except PassError as err:
        raise PassError(f"node {node.name!r} ({node.op_type}): {err}") from None


def _fc_swap(model: ModelWrapper, node: NodeProto) -> _Swap:
    w, quant = _weights_or_error(model, node)
    if node.op_type == "MatMul":
        if w.ndim != 2:
            raise PassError(f"node {node.name!r} (MatMul): weight must be 2D, got {w.shape}")
        return _Swap(node.input[0], w, quant, None, 1.0, {})
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    if int(a.get("transA", 0)):
        raise PassError(f"node {node.name!r} (Gemm): transA=1 is not supported")
    if int(a.get("transB", 0)):
        w = w.T
    w = w * np.float32(a.get("alpha", 1.0))
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    return _Swap(node.input[0], np.ascontiguousarray(w), quant, bias,
                 float(a.get("beta", 1.0)), {})


class _ConvertToHybrid(Transformation):
    """Base of the four swaps."""

    source_ops: tuple[str, ...] = ()
    kind = "shift"
    conv = True

    def __init__(self, selector: str, bits: int | None = None) -> None:
        super().__init__()
        self.selector = selector
        self.bits = bits

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        records: list[dict[str, Any]] = []
        for node in select_nodes(model, self.selector, self.source_ops):
            records.append(self._convert(model, node))
        if records:
            _ensure_domain(model)
            record_metadata(model, type(self).__name__, records)
        return model, False

    def _convert(self, model: ModelWrapper, node: NodeProto) -> dict[str, Any]:
        # have: X -> Conv/Gemm/MatMul(W [<- Quant(W_float)]) [+ bias] -> Y
        # want: X -> Shift*/Adder*(W_hybrid) [+ bias] -> Y, same node and output names
        sw = _conv_swap(model, node) if self.conv else _fc_swap(model, node)
        bits = self.bits or quant_bits(model, sw.quant) or DEFAULT_BITS
        bits = max(bits, 2)
        rec: dict[str, Any] = {"node": node.name, "from": node.op_type, "weight_bits": bits}
        if self.kind == "shift":
            wh = to_shift_weights(sw.w, bits)
            dt = DataType["INT2"] if np.all(np.abs(wh) == np.round(np.abs(wh))) else \
                DataType["FLOAT32"]
        else:
            scale = input_grid_scale(model, sw.x)
            if scale is None:
                m = float(np.abs(sw.w).max()) if sw.w.size else 0.0
                scale = m / (2 ** (bits - 1) - 1) if m > 0 else 1.0
                rec["grid"] = "weights"
            else:
                rec["grid"] = "input"
            rec["scale"] = scale
            wh = to_adder_weights(sw.w, scale, bits)
            dt = DataType[f"INT{bits}"] if scale == 1.0 else DataType["FLOAT32"]
        wname = model.make_new_valueinfo_name() + f"_{node.name}_{self.kind}_w"
        model.set_initializer(wname, wh.astype(np.float32))
        model.set_tensor_datatype(wname, dt)
        op_type = ("Shift" if self.kind == "shift" else "Adder") + ("Conv" if self.conv
                                                                     else "MatMul")
        out = node.output[0]
        pos = list(model.graph.node).index(node)
        new: list[NodeProto] = []
        if self.conv:
            ins = [sw.x, wname] + ([sw.bias] if sw.bias else [])
            new.append(helper.make_node(op_type, ins, [out], name=node.name, domain=DOMAIN,
                                        weight_bits=bits, **sw.attrs))
        elif sw.bias is None:
            new.append(helper.make_node(op_type, [sw.x, wname], [out], name=node.name,
                                        domain=DOMAIN, weight_bits=bits))
        else:
            mid = model.make_new_valueinfo_name()
            bias = sw.bias
            if sw.bias_scale != 1.0:
                bval = model.get_initializer(sw.bias)
                if bval is None:
                    raise PassError(f"node {node.name!r} (Gemm): beta != 1 needs a constant C")
                bias = model.make_new_valueinfo_name()
                model.set_initializer(bias, (bval * np.float32(sw.bias_scale)).astype(
                    np.float32))
            new.append(helper.make_node(op_type, [sw.x, wname], [mid], name=node.name,
                                        domain=DOMAIN, weight_bits=bits))
            new.append(helper.make_node("Add", [mid, bias], [out], name=node.name + "_bias"))
            rec["bias"] = "Add"
        model.graph.node.remove(node)
        for k, n in enumerate(new):
            model.graph.node.insert(pos + k, n)
        _remove_if_unused(model, sw.quant)
        rec["to"] = op_type
        return rec


class ConvertConvToShift(_ConvertToHybrid):
    """Replaces selected Conv nodes with ShiftConv (power-of-two weights)."""

    source_ops = ("Conv",)
    kind = "shift"
    conv = True


class ConvertConvToAdder(_ConvertToHybrid):
    """Replaces selected Conv nodes with AdderConv (weights on the input's grid)."""

    source_ops = ("Conv",)
    kind = "adder"
    conv = True


class ConvertGemmToShift(_ConvertToHybrid):
    """Replaces selected Gemm/MatMul nodes with ShiftMatMul (+ Add for a Gemm bias)."""

    source_ops = ("Gemm", "MatMul")
    kind = "shift"
    conv = False


class ConvertGemmToAdder(_ConvertToHybrid):
    """Replaces selected Gemm/MatMul nodes with AdderMatMul (+ Add for a Gemm bias)."""

    source_ops = ("Gemm", "MatMul")
    kind = "adder"
    conv = False
