"""Space choices on a graph: the `space` dimensions a QONNX graph can take without a
PyTorch module (``width``, ``wbits``, ``abits``, ``op``), applied with the graph passes.

`ApplyChoices` runs, for rules ``(dim, selector, value)`` in the order given within each
dimension (widths from the widest down, so layers that share channels through a residual
add end at the narrowest width chosen for any of them): `SetChannelWidth` first (slicing keeps the quantizers; with ``activations``,
the layer inputs of the unchanged graph on a calibration batch, removed channels are
compensated by their mean contribution), then `SetWeightBits`,
then `SetActivationBits`, then the hybrid swaps (adder weights go onto the grid of their
input, so they come after the activation bits). ``kernel`` is not a graph choice: a
different kernel is a different, untrained layer; declare the network in the language
to search kernels.
"""

from __future__ import annotations

from typing import Any

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from nashc.passes.graph import PassError, select_nodes
from nashc.passes.hybrid import (
    ConvertConvToAdder,
    ConvertConvToShift,
    ConvertGemmToAdder,
    ConvertGemmToShift,
)
from nashc.passes.quant import SetActivationBits, SetWeightBits
from nashc.passes.width import SetChannelWidth

__all__ = ["ApplyChoices", "GRAPH_DIMS", "layer_summary", "parse_rule"]

GRAPH_DIMS = ("width", "wbits", "abits", "op")
_SWAPS = {"shift": (ConvertConvToShift, ConvertGemmToShift),
          "adder": (ConvertConvToAdder, ConvertGemmToAdder)}


def parse_rule(dim: str, text: str) -> tuple[str, str, Any]:
    """``"SELECTOR=VALUE"`` -> ``(dim, selector, value)`` with the value checked."""
    if dim not in GRAPH_DIMS:
        raise PassError(f"unknown choice {dim!r}; a graph takes {', '.join(GRAPH_DIMS)}")
    sel, sep, raw = text.rpartition("=")
    if not sep or not sel.strip() or not raw.strip():
        raise PassError(f"--{dim} {text!r}: expected SELECTOR=VALUE, e.g. 'conv*={_eg(dim)}'")
    raw = raw.strip()
    value: Any
    if dim == "op":
        if raw not in ("conv", "shift", "adder"):
            raise PassError(f"--op {text!r}: the operator is conv, shift or adder")
        value = raw
    elif dim == "width":
        try:
            value = float(raw)
        except ValueError:
            raise PassError(f"--width {text!r}: the multiplier must be a number such as "
                            "0.5") from None
        if not 0 < value <= 1:
            raise PassError(f"--width {text!r}: a graph can only be narrowed; the "
                            "multiplier must be in (0, 1]")
    else:
        # a Quant node takes 2..8 bits here (`requantize_quant_node`)
        if not raw.isdigit() or not 2 <= int(raw) <= 8:
            raise PassError(f"--{dim} {text!r}: bits must be a whole number from 2 to 8")
        value = int(raw)
    return dim, sel.strip(), value


def _eg(dim: str) -> str:
    return {"op": "shift", "width": "0.5", "wbits": "4", "abits": "4"}[dim]


class ApplyChoices(Transformation):
    """Replaces the selected layers' width, bit widths and operator with the given
    choices, using SetChannelWidth, SetWeightBits, SetActivationBits and the hybrid
    swaps (in that order)."""

    def __init__(self, rules: list[tuple[str, str, Any]], rank: str = "l1",
                 activations: dict[str, Any] | None = None,
                 compensate: str = "affine") -> None:
        super().__init__()
        self.rank = rank
        self.activations = activations  # layer inputs for width compensation
        self.compensate = compensate
        for dim, _, _ in rules:
            if dim == "kernel":
                raise PassError("kernel choices need the network declared in the language "
                                "(a new kernel is an untrained layer); a graph takes "
                                + ", ".join(GRAPH_DIMS))
            if dim not in GRAPH_DIMS:
                raise PassError(f"unknown choice {dim!r}")
        self.rules = list(rules)

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for dim in GRAPH_DIMS:
            rules = [r for r in self.rules if r[0] == dim]
            if dim == "width":  # widest first: layers sharing channels (a residual
                # stream) then take the narrowest width any of them was given
                rules.sort(key=lambda r: -float(r[2]))
            for _, sel, value in rules:
                for p in self._passes(model, dim, sel, value):
                    model = model.transform(p)
        return model, False

    def _passes(self, model: ModelWrapper, dim: str, sel: str,
                value: Any) -> list[Transformation]:
        if dim == "width":
            return [SetChannelWidth(sel, float(value), rank=self.rank,
                                    activations=self.activations,
                                    compensate=self.compensate)]
        if dim == "wbits":
            return [SetWeightBits(sel, int(value))]
        if dim == "abits":
            return [SetActivationBits(sel, int(value))]
        if value == "conv":
            hybrid = [n.name for n in select_nodes(model, sel)
                      if n.op_type.startswith(("Shift", "Adder"))]
            if hybrid:
                raise PassError(f"--op {sel}=conv: {', '.join(hybrid)} are hybrid layers "
                                "already; swapping back to multiplications is not supported")
            return []
        conv, fc = _SWAPS[value]
        names = select_nodes(model, sel)  # raises if nothing matches
        out: list[Transformation] = []
        if any(n.op_type == "Conv" for n in names):
            out.append(conv(sel))
        if any(n.op_type in ("Gemm", "MatMul") for n in names):
            out.append(fc(sel))
        return out


def layer_summary(model: ModelWrapper) -> dict[str, tuple[str, int, int | None]]:
    """Layer name -> (op type, output channels, weight bits) for the graph's layers."""
    from nashc.passes.graph import quant_bits, weight_values
    from nashc.passes.width import _out_axis
    from nashc.runtime.load import COMPUTE_OP_TYPES

    out: dict[str, tuple[str, int, int | None]] = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OP_TYPES:
            continue
        w, quant = weight_values(model, node.input[1])
        bits = next((a.i for a in node.attribute if a.name == "weight_bits"), None)
        out[node.name] = (node.op_type, int(w.shape[_out_axis(node)]),
                          bits if bits is not None else quant_bits(model, quant))
    return out
