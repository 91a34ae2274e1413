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

from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from nashc.passes.graph import (
    PassError,
    ensure_hybrid_domain,
    input_grid_scale,
    quant_bits,
    record_metadata,
    remove_quant_if_unused,
    select_nodes,
    weight_values,
)
from nashc.runtime.ops import DOMAIN, to_adder_weights, to_shift_weights

__all__ = [
    "ConvertConvToShift",
    "ConvertConvToAdder",
    "ConvertGemmToShift",
    "ConvertGemmToAdder",
]

DEFAULT_BITS = 8


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
        if bits is not None and bits < 2:
            raise PassError(f"{type(self).__name__}(bits={bits}): shift and adder layers "
                            "need 2 to 8 weight bits")
        self.selector = selector
        self.bits = bits

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        records: list[dict[str, Any]] = []
        for node in select_nodes(model, self.selector, self.source_ops):
            records.append(self._convert(model, node))
        if records:
            ensure_hybrid_domain(model)
            record_metadata(model, type(self).__name__, records)
        return model, False

    def _convert(self, model: ModelWrapper, node: NodeProto) -> dict[str, Any]:
        # have: X -> Conv/Gemm/MatMul(W [<- Quant(W_float)]) [+ bias] -> Y
        # want: X -> Shift*/Adder*(W_hybrid) [+ bias] -> Y, same node and output names
        sw = _conv_swap(model, node) if self.conv else _fc_swap(model, node)
        bits = self.bits or quant_bits(model, sw.quant) or DEFAULT_BITS
        if bits < 2:
            raise PassError(f"node {node.name!r}: shift and adder layers need 2 to 8 weight "
                            f"bits; its weights are {bits}-bit (give bits=2..8)")
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
        remove_quant_if_unused(model, sw.quant)
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
