"""Hybrid (multiplication-reduced) layers as QONNX custom ops.

The domain of these ops is ``nashc.runtime.ops``: qonnx's registry imports this module
when it meets a node of that domain and finds the classes through ``__all__``.

- ``ShiftConv`` / ``ShiftMatMul``: an ordinary convolution / matrix product whose weights
  are 0 or signed powers of two ``±2^e`` with ``e`` in ``[-(2^(b-1)-1), 0]`` for
  ``b = weight_bits`` (DeepShift).
- ``AdderConv`` / ``AdderMatMul``: ``y = -sum |x - w|`` over the receptive field /
  the reduction axis (AdderNet). Zero padding contributes ``|0 - w|``.

The numpy references accumulate in float64 and round once to float32, so they are the
exact result whenever the inputs lie on a power-of-two grid (fixed point), as they do
in hardware.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from nashc.dsl.errors import NashcError

__all__ = [
    "DOMAIN",
    "HYBRID_OP_TYPES",
    "HybridOpError",
    "ShiftConv",
    "AdderConv",
    "ShiftMatMul",
    "AdderMatMul",
    "to_shift_weights",
    "to_adder_weights",
    "shift_exponent_range",
    "is_shift_weights",
    "conv_reference",
    "adder_conv_reference",
    "adder_matmul_reference",
]

DOMAIN = "nashc.runtime.ops"
HYBRID_OP_TYPES = ("ShiftConv", "AdderConv", "ShiftMatMul", "AdderMatMul")


class HybridOpError(NashcError):
    """A hybrid op node is malformed (attributes, inputs or weights)."""


# -- weight rules ---------------------------------------------------------------------


def shift_exponent_range(bits: int) -> tuple[int, int]:
    """The exponents ``(lo, hi)`` a ``bits``-bit shift weight may use: ``[-(2^(b-1)-1), 0]``."""
    if bits < 2:
        raise HybridOpError(f"shift weights need at least 2 bits, got {bits}")
    return -(2 ** (bits - 1) - 1), 0


def to_shift_weights(w: np.ndarray, bits: int) -> np.ndarray:
    """Rounds ``w`` to ``sign(w) * 2^round(log2|w|)``, magnitude clamped to
    ``[2^-(2^(b-1)-1), 1]``; zeros stay zero. Returns float32."""
    lo, hi = shift_exponent_range(bits)
    w = np.asarray(w, dtype=np.float64)
    mag = np.abs(w)
    nz = mag > 0
    e = np.zeros_like(w)
    e[nz] = np.clip(np.round(np.log2(mag[nz])), lo, hi)
    out = np.where(nz, np.sign(w) * np.exp2(e), 0.0)
    return out.astype(np.float32)


def to_adder_weights(w: np.ndarray, scale: float | np.ndarray, bits: int) -> np.ndarray:
    """Rounds ``w / scale`` to a signed ``bits``-bit integer (half to even, clipped to
    ``[-2^(b-1), 2^(b-1)-1]``) times ``scale``: the weights then lie on the grid of the
    layer's input activations. Returns float32."""
    if bits < 2:
        raise HybridOpError(f"adder weights need at least 2 bits, got {bits}")
    s = np.asarray(scale, dtype=np.float64)
    if np.any(s <= 0):
        raise HybridOpError("adder weight scale must be positive")
    q = np.clip(np.round(np.asarray(w, dtype=np.float64) / s), -(2 ** (bits - 1)),
                2 ** (bits - 1) - 1)
    return (q * s).astype(np.float32)


def is_shift_weights(w: np.ndarray, bits: int) -> bool:
    """True if every entry of ``w`` is 0 or ``±2^e`` with ``e`` in the exponent range."""
    lo, hi = shift_exponent_range(bits)
    mag = np.abs(np.asarray(w, dtype=np.float64))
    nz = mag[mag > 0]
    if nz.size == 0:
        return True
    mant, ex = np.frexp(nz)  # nz = mant * 2^ex with mant in [0.5, 1)
    return bool(np.all(mant == 0.5) and np.all(ex - 1 >= lo) and np.all(ex - 1 <= hi))


# -- numpy references ----------------------------------------------------------------


def _conv_geometry(x: np.ndarray, w: np.ndarray, kernel_shape: list[int], strides: list[int],
                   pads: list[int], dilations: list[int]) -> tuple[np.ndarray, int, int]:
    kh, kw = kernel_shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return xp, oh, ow


def _windows(xp: np.ndarray, kernel_shape: list[int], strides: list[int],
             dilations: list[int], oh: int, ow: int):
    kh, kw = kernel_shape
    sh, sw = strides
    dh, dw = dilations
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield i, j, xp[:, :, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw]


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, kernel_shape: list[int],
                   strides: list[int], pads: list[int], group: int,
                   dilations: list[int]) -> np.ndarray:
    """Grouped 2D convolution (NCHW, OIHW) in float64, returned as float32."""
    xp, oh, ow = _conv_geometry(x, w, kernel_shape, strides, pads, dilations)
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    og = o // group
    wd = w.astype(np.float64).reshape(group, og, cg, *w.shape[2:])
    y = np.zeros((n, group, og, oh, ow))
    for i, j, win in _windows(xp, kernel_shape, strides, dilations, oh, ow):
        win = win.reshape(n, group, cg, oh, ow)
        y += np.einsum("ngchw,goc->ngohw", win, wd[:, :, :, i, j])
    y = y.reshape(n, o, oh, ow)
    if b is not None:
        y += b.astype(np.float64).reshape(1, o, 1, 1)
    return y.astype(np.float32)


def adder_conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                         kernel_shape: list[int], strides: list[int], pads: list[int],
                         group: int, dilations: list[int]) -> np.ndarray:
    """``y[n,o,i,j] = -sum_{c,kh,kw} |xpad[n,c,i*s+kh,j*s+kw] - w[o,c,kh,kw]|`` (+ bias)."""
    xp, oh, ow = _conv_geometry(x, w, kernel_shape, strides, pads, dilations)
    n = x.shape[0]
    o, cg = w.shape[:2]
    og = o // group
    wd = w.astype(np.float64).reshape(group, og, cg, *w.shape[2:])
    y = np.zeros((n, group, og, oh, ow))
    for i, j, win in _windows(xp, kernel_shape, strides, dilations, oh, ow):
        win = win.reshape(n, group, 1, cg, oh, ow)
        wk = wd[:, :, :, i, j].reshape(1, group, og, cg, 1, 1)
        y -= np.abs(win - wk).sum(axis=3)
    y = y.reshape(n, o, oh, ow)
    if b is not None:
        y += b.astype(np.float64).reshape(1, o, 1, 1)
    return y.astype(np.float32)


def adder_matmul_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``y[..., n] = -sum_k |x[..., k] - w[k, n]|``."""
    xd = x.astype(np.float64)[..., :, None]
    return (-np.abs(xd - w.astype(np.float64)).sum(axis=-2)).astype(np.float32)


# -- custom ops ----------------------------------------------------------------------


def _int_range(dt: DataType) -> tuple[float, float] | None:
    if dt.is_integer():
        return float(dt.min()), float(dt.max())
    return None


def _output_int_dtype(lo: float, hi: float) -> DataType:
    """The smallest qonnx integer datatype holding ``[lo, hi]``."""
    if lo >= 0:
        return DataType.get_smallest_possible(hi)
    return DataType.get_smallest_possible(min(lo, -hi - 1))


class _HybridOp(CustomOp):
    """Common attributes and checks of the hybrid ops."""

    is_conv = True
    kind = "shift"

    def get_nodeattr_types(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"weight_bits": ("i", True, 8)}
        if self.is_conv:
            attrs.update({
                "kernel_shape": ("ints", True, []),
                "strides": ("ints", False, [1, 1]),
                "pads": ("ints", False, [0, 0, 0, 0]),
                "group": ("i", False, 1),
                "dilations": ("ints", False, [1, 1]),
            })
        return attrs

    def _conv_attrs(self) -> dict[str, Any]:
        ks = list(self.get_nodeattr("kernel_shape"))
        return {
            "kernel_shape": ks,
            "strides": list(self.get_nodeattr("strides")) or [1, 1],
            "pads": list(self.get_nodeattr("pads")) or [0, 0, 0, 0],
            "group": int(self.get_nodeattr("group")),
            "dilations": list(self.get_nodeattr("dilations")) or [1, 1],
        }

    def _where(self) -> str:
        return f"node {self.onnx_node.name!r} ({self.onnx_node.op_type})"

    def make_shape_compatible_op(self, model: Any) -> NodeProto:
        node = self.onnx_node
        if self.is_conv:
            return helper.make_node("Conv", list(node.input), [node.output[0]],
                                    **self._conv_attrs())
        return helper.make_node("MatMul", list(node.input[:2]), [node.output[0]])

    def verify_node(self) -> None:
        node = self.onnx_node
        n_in = len(node.input)
        if self.is_conv and n_in not in (2, 3):
            raise HybridOpError(f"{self._where()}: expected inputs X, W[, B], got {n_in}")
        if not self.is_conv and n_in != 2:
            raise HybridOpError(f"{self._where()}: expected inputs X, W, got {n_in}")
        if len(node.output) != 1:
            raise HybridOpError(f"{self._where()}: expected one output")
        bits = self.get_nodeattr("weight_bits")
        if bits < 2 or bits > 32:
            raise HybridOpError(f"{self._where()}: weight_bits must be in [2, 32], got {bits}")
        if self.is_conv:
            a = self._conv_attrs()
            if len(a["kernel_shape"]) != 2 or len(a["strides"]) != 2 or \
                    len(a["dilations"]) != 2 or len(a["pads"]) != 4:
                raise HybridOpError(f"{self._where()}: only 2D convolutions are supported")
            if a["group"] < 1:
                raise HybridOpError(f"{self._where()}: group must be >= 1")

    def check_weights(self, w: np.ndarray) -> None:
        """Raises `HybridOpError` if ``w`` is not a valid weight tensor for this node."""
        if self.kind == "shift":
            bits = self.get_nodeattr("weight_bits")
            if not is_shift_weights(w, bits):
                raise HybridOpError(
                    f"{self._where()}: weights are not 0 or ±2^e with e in "
                    f"{list(shift_exponent_range(bits))}")
        if self.is_conv and w.ndim != 4:
            raise HybridOpError(f"{self._where()}: weight must be OIHW, got shape {w.shape}")
        if not self.is_conv and w.ndim != 2:
            raise HybridOpError(f"{self._where()}: weight must be (K, N), got shape {w.shape}")

    def infer_node_datatype(self, model: Any) -> None:
        node = self.onnx_node
        idt = model.get_tensor_datatype(node.input[0])
        w = model.get_initializer(node.input[1])
        b = model.get_initializer(node.input[2]) if len(node.input) > 2 else None
        out = DataType["FLOAT32"]
        rng = _int_range(idt)
        if rng is not None and w is not None and np.all(w == np.round(w)) and \
                (b is None or np.all(b == np.round(b))):
            xlo, xhi = rng
            # terms per output and their worst-case range
            k = int(np.prod(w.shape[1:])) if self.is_conv else int(w.shape[0])
            if self.kind == "shift":
                wmax = float(np.abs(w).max()) if w.size else 0.0
                m = max(abs(xlo), abs(xhi)) * wmax * k
                lo, hi = -m, m
            else:
                m = max(abs(xlo - float(w.min())), abs(xhi - float(w.max())),
                        abs(xlo - float(w.max())), abs(xhi - float(w.min()))) * k
                lo, hi = -m, 0.0
            if b is not None and b.size:
                lo, hi = lo + float(b.min()), hi + float(b.max())
            out = _output_int_dtype(lo, hi)
        model.set_tensor_datatype(node.output[0], out)

    def _compute(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def execute_node(self, context: dict[str, np.ndarray], graph: Any) -> None:
        node = self.onnx_node
        x = np.asarray(context[node.input[0]])
        w = np.asarray(context[node.input[1]])
        b = np.asarray(context[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        self.check_weights(w)
        if self.is_conv:
            g = int(self.get_nodeattr("group"))
            if x.ndim != 4 or w.shape[0] % g or x.shape[1] != w.shape[1] * g:
                raise HybridOpError(f"{self._where()}: input {x.shape} and weight {w.shape} "
                                    f"do not match for group={g}")
        elif x.shape[-1] != w.shape[0]:
            raise HybridOpError(f"{self._where()}: input {x.shape} and weight {w.shape} "
                                "do not match")
        context[node.output[0]] = self._compute(x, w, b)


class ShiftConv(_HybridOp):
    """Convolution whose weights are 0 or signed powers of two (DeepShift)."""

    is_conv = True
    kind = "shift"

    def _compute(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return conv_reference(x, w, b, **self._conv_attrs())


class AdderConv(_HybridOp):
    """AdderNet convolution: ``y = -sum |x - w|`` over each (zero-padded) window."""

    is_conv = True
    kind = "adder"

    def _compute(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return adder_conv_reference(x, w, b, **self._conv_attrs())


class ShiftMatMul(_HybridOp):
    """``X @ W`` with power-of-two weights ``W`` of shape (K, N)."""

    is_conv = False
    kind = "shift"

    def _compute(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)


class AdderMatMul(_HybridOp):
    """``y[..., n] = -sum_k |x[..., k] - W[k, n]|`` with ``W`` of shape (K, N)."""

    is_conv = False
    kind = "adder"

    def _compute(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return adder_matmul_reference(x, w)
