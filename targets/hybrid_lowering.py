"""Lowering of nashc's hybrid ops through FINN, and the level-3 golden check.

FINN's streamlining does not know ``AdderConv``/``ShiftConv``/``AdderMatMul``/
``ShiftMatMul``: it leaves the scalar input scale (a ``Mul`` from the previous
activation's quantizer) in front of them and the convolution in NCHW. The extra steps
(`hybrid_extra_steps`, run by `lower_to_hw` after FINN's streamlining):

1. ``hybrid_streamline``: moves scalar ``Mul`` past the hybrid ops
   (`MoveScalarMulPastAdderMatMul`, `MoveScalarMulPastShiftMatMul`), lowers hybrid
   convolutions to ``Transpose -> Im2Col -> *MatMul -> Transpose`` exactly as qonnx's
   ``LowerConvsToMatMul`` does for ``Conv`` (`LowerHybridConvsToMatMul`), then repeats the
   part of FINN's streamlining that follows ``LowerConvsToMatMul`` (transposes absorbed
   into thresholds, ``Streamline``, ``RoundAndClipThresholds``).
2. ``infer_hybrid_mvau``: `InferHybridMVAU` turns ``AdderMatMul``/``ShiftMatMul`` (+ a
   following ``MultiThreshold``) into nashc's ``AdderMVAU``/``ShiftMVAU`` hardware
   layers, which FINN's ``SpecializeLayers`` turns into ``*_rtl`` (generated RTL).

Level 3 (FINN's dataflow graph against level 2) is `nashc.targets.verify`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from nashc.dsl.errors import NashcError
from nashc.runtime.ops import is_shift_weights
from nashc.targets import hw_layers
from nashc.targets.lower import (
    ExtraStep,
    absorb_layout_transposes,
    has_residual_forks,
)

__all__ = [
    "HybridLoweringError",
    "MoveScalarMulPastAdderMatMul",
    "MoveScalarMulPastShiftMatMul",
    "LowerHybridConvsToMatMul",
    "InferHybridMVAU",
    "step_hybrid_streamline",
    "hybrid_extra_steps",
]

NASHC_DOMAIN = "nashc.runtime.ops"
_INT_TOL = 1e-3  # relative tolerance when checking that w / s lands on integers


class HybridLoweringError(NashcError):
    """A hybrid op cannot be lowered to FINN hardware layers (names node and op type)."""


def _where(node: Any) -> str:
    return f"node {node.name!r} ({node.op_type})"


def _scalar_mul_const(model: ModelWrapper, node: Any) -> float | None:
    """The scalar of ``Mul(x, c)`` with a constant c of one element, else None."""
    if node is None or node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
        return None
    c = model.get_initializer(node.input[1])
    if c is None or c.size != 1:
        return None
    return float(np.asarray(c).flatten()[0])


class _MoveScalarMulPastHybrid(Transformation):
    """Base: have ``x -> Mul(s) -> Hybrid(W[, b]) -> y``; want
    ``x -> Hybrid(W', b') -> Mul(m) -> y``."""

    op_types: tuple[str, ...] = ()

    def _rescale(self, node: Any, w: np.ndarray, s: float) -> tuple[np.ndarray, float] | None:
        raise NotImplementedError

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        for node in list(graph.node):
            if node.domain != NASHC_DOMAIN or node.op_type not in self.op_types:
                continue
            prod = model.find_producer(node.input[0])
            s = _scalar_mul_const(model, prod)
            if s is None or s == 0.0 or model.is_fork_node(prod):
                continue
            w = model.get_initializer(node.input[1])
            if w is None:
                continue
            has_bias = len(node.input) > 2 and bool(node.input[2])
            b = model.get_initializer(node.input[2]) if has_bias else None
            if has_bias and b is None:
                continue  # a computed bias cannot be rescaled: leave the node as it is
            res = self._rescale(node, np.asarray(w, dtype=np.float64), s)
            if res is None:
                continue
            new_w, m = res
            # have: x -> Mul(s) -> H(W, b) -> y ; want: x -> H(W', b/m) -> Mul(m) -> y
            model.set_initializer(node.input[1], new_w.astype(np.float32))
            if b is not None:
                model.set_initializer(node.input[2], (np.asarray(b, np.float64) / m)
                                      .astype(np.float32))
            x = prod.input[0]
            y = node.output[0]
            mid = model.make_new_valueinfo_name()
            node.input[0] = x
            node.output[0] = mid
            cname = model.make_new_valueinfo_name()
            model.set_initializer(cname, np.asarray(m, dtype=np.float32))
            mul = helper.make_node("Mul", [mid, cname], [y], name=prod.name)
            graph.node.remove(prod)
            graph.node.insert(list(graph.node).index(node) + 1, mul)
            model.set_tensor_datatype(mid, DataType["FLOAT32"])
            from qonnx.transformation.infer_datatypes import InferDataTypes
            from qonnx.transformation.infer_shapes import InferShapes

            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
            return model, True
        return model, False


class MoveScalarMulPastAdderMatMul(_MoveScalarMulPastHybrid):
    """Moves a scalar input ``Mul(s)`` past an ``AdderMatMul``/``AdderConv``.

    ``-sum|s x - w| = |s| * (-sum|x - w/s|)``: the weights become ``w / s`` (and a bias
    ``b / |s|``), a ``Mul(|s|)`` follows. Applies only when ``w / s`` are integers (the
    adder datapath works on the integer codes); otherwise the node is left as it is.
    """

    op_types = ("AdderMatMul", "AdderConv")

    def _rescale(self, node: Any, w: np.ndarray, s: float) -> tuple[np.ndarray, float] | None:
        q = w / s
        r = np.round(q)
        if np.any(np.abs(q - r) > _INT_TOL * np.maximum(1.0, np.abs(r))):
            return None
        return r, abs(s)


class MoveScalarMulPastShiftMatMul(_MoveScalarMulPastHybrid):
    """Moves a scalar input ``Mul(s)`` past a ``ShiftMatMul``/``ShiftConv``:
    ``(s x) @ W = s (x @ W)``; the power-of-two weights are unchanged."""

    op_types = ("ShiftMatMul", "ShiftConv")

    def _rescale(self, node: Any, w: np.ndarray, s: float) -> tuple[np.ndarray, float] | None:
        return w, s


class LowerHybridConvsToMatMul(Transformation):
    """Replaces AdderConv/ShiftConv with Transpose -> Im2Col -> AdderMatMul/ShiftMatMul ->
    Transpose (NHWC in between), as qonnx's ``LowerConvsToMatMul`` does for Conv: weights
    OIHW -> (kh*kw*I, O) in [kh][kw][I] order, Im2Col zero-padding (``|0 - w|`` for
    adder), a bias as an ``Add`` after. Grouped/depthwise hybrid convs are rejected."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        changed = False
        for node in list(graph.node):
            if node.domain != NASHC_DOMAIN or node.op_type not in ("AdderConv", "ShiftConv"):
                continue
            inst = getCustomOp(node)
            group = int(inst.get_nodeattr("group"))
            if group != 1:
                raise HybridLoweringError(f"{_where(node)}: group={group}: grouped hybrid "
                                          "convolutions have no FINN lowering yet")
            w = model.get_initializer(node.input[1])
            if w is None:
                raise HybridLoweringError(f"{_where(node)}: weights must be an initializer")
            ks = list(inst.get_nodeattr("kernel_shape"))
            strides = list(inst.get_nodeattr("strides")) or [1, 1]
            pads = list(inst.get_nodeattr("pads")) or [0, 0, 0, 0]
            dil = list(inst.get_nodeattr("dilations")) or [1, 1]
            ishape = model.get_tensor_shape(node.input[0])
            oshape = model.get_tensor_shape(node.output[0])
            if ishape is None or oshape is None or len(ishape) != 4:
                raise HybridLoweringError(f"{_where(node)}: needs 4D NCHW shapes")
            n, ci, ih, iw = (int(d) for d in ishape)
            co, oh, ow = int(oshape[1]), int(oshape[2]), int(oshape[3])
            kh, kw = int(ks[0]), int(ks[1])
            idt = model.get_tensor_datatype(node.input[0])
            odt = model.get_tensor_datatype(node.output[0])
            wm = np.asarray(w).transpose(0, 2, 3, 1).reshape(co, ci * kh * kw).T
            wname = model.make_new_valueinfo_name()
            model.set_initializer(wname, np.ascontiguousarray(wm).astype(np.float32))
            model.set_tensor_datatype(wname, model.get_tensor_datatype(node.input[1]))

            def vi(shape: tuple[int, ...], dt: DataType) -> str:
                t = helper.make_tensor_value_info(model.make_new_valueinfo_name(),
                                                  TensorProto.FLOAT, shape)
                graph.value_info.append(t)
                model.set_tensor_datatype(t.name, dt)
                return t.name

            # have: x(NCHW) -> HybridConv(W[, b]) -> y
            # want: x -> Transpose -> Im2Col -> HybridMatMul(W') -> Transpose [-> Add b] -> y
            nhwc = vi((n, ih, iw, ci), idt)
            new = [helper.make_node("Transpose", [node.input[0]], [nhwc], perm=[0, 2, 3, 1])]
            need_im2col = any(p != 0 for p in pads) or (kh, kw) != (1, 1) or \
                tuple(strides) != (1, 1)
            mm_in = nhwc
            if need_im2col:
                mm_in = vi((n, oh, ow, ci * kh * kw), idt)
                new.append(helper.make_node(
                    "Im2Col", [nhwc], [mm_in], domain="qonnx.custom_op.general",
                    stride=[int(s) for s in strides], kernel_size=[kh, kw],
                    pad_amount=[int(p) for p in pads],
                    input_shape=f"({n},{ih},{iw},{ci})", depthwise=0,
                    dilations=[int(d) for d in dil]))
            mm_out = vi((n, oh, ow, co), odt)
            mm_type = node.op_type.replace("Conv", "MatMul")
            new.append(helper.make_node(mm_type, [mm_in, wname], [mm_out], name=node.name,
                                        domain=NASHC_DOMAIN,
                                        weight_bits=int(inst.get_nodeattr("weight_bits"))))
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if bias is None:
                new.append(helper.make_node("Transpose", [mm_out], [node.output[0]],
                                            perm=[0, 3, 1, 2]))
            else:
                b = model.get_initializer(bias)
                if b is None:
                    raise HybridLoweringError(f"{_where(node)}: bias must be an initializer")
                nchw = vi((n, co, oh, ow), DataType["FLOAT32"])
                bname = model.make_new_valueinfo_name()
                model.set_initializer(bname, np.asarray(b, np.float32).reshape(1, co, 1, 1))
                new.append(helper.make_node("Transpose", [mm_out], [nchw], perm=[0, 3, 1, 2]))
                new.append(helper.make_node("Add", [nchw, bname], [node.output[0]]))
            pos = list(graph.node).index(node)
            graph.node.remove(node)
            for k, nn in enumerate(new):
                graph.node.insert(pos + k, nn)
            changed = True
        if changed:
            from qonnx.transformation.infer_shapes import InferShapes

            model = model.transform(InferShapes())
        return model, False


def _int_dtype(lo: float, hi: float) -> DataType:
    if lo >= 0:
        return DataType.get_smallest_possible(hi)
    return DataType.get_smallest_possible(min(lo, -hi - 1))


class InferHybridMVAU(Transformation):
    """Replaces AdderMatMul/ShiftMatMul (+ a following MultiThreshold) with AdderMVAU/
    ShiftMVAU, as FINN's InferQuantizedMatrixVectorActivation does for MatMul.

    Needs integer input codes; adder weights must be integers (after
    `MoveScalarMulPastAdderMatMul`), shift weights ``0``/``±2^e``, stored integer-coded
    ``W * 2^-e_min`` with thresholds scaled alike (see `nashc.targets.hw_layers`).
    Thresholds are rounded up to integers (exact for the integer accumulator). A node
    that does not qualify is left alone (the lowering then reports it by name)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        hw_layers.register_hw_layers()
        graph = model.graph
        for node in list(graph.node):
            if node.domain != NASHC_DOMAIN or node.op_type not in ("AdderMatMul",
                                                                    "ShiftMatMul"):
                continue
            if self._convert(model, node):
                from qonnx.transformation.infer_datatypes import InferDataTypes
                from qonnx.transformation.infer_shapes import InferShapes

                model = model.transform(InferShapes())
                model = model.transform(InferDataTypes())
                return model, True
        return model, False

    def _convert(self, model: ModelWrapper, n: Any) -> bool:
        kind = "adder" if n.op_type == "AdderMatMul" else "shift"
        idt = model.get_tensor_datatype(n.input[0])
        w = model.get_initializer(n.input[1])
        ishape = model.get_tensor_shape(n.input[0])
        if w is None or ishape is None or not idt.is_integer():
            return False
        w = np.asarray(w, dtype=np.float64)
        bits = int(getCustomOp(n).get_nodeattr("weight_bits"))
        attrs: dict[str, Any] = {"weightBits": bits}
        scale = 1.0
        if kind == "adder":
            if np.any(w != np.round(w)):
                return False
            w_int = w
            wdt = _int_dtype(float(w.min()), float(w.max()))
        else:
            if not is_shift_weights(w, bits) and not is_shift_weights(
                    w / max(float(np.abs(w).max()), 1e-300), bits):
                return False
            nz = np.abs(w[w != 0])
            e_min = int(np.min(np.log2(nz))) if nz.size else 0
            scale = 2.0 ** (-e_min)
            w_int = w * scale
            if np.any(w_int != np.round(w_int)):
                return False
            attrs["shiftExpMin"] = e_min
            wdt = DataType[f"INT{hw_layers.shift_word_bits(w_int)}"]
        mw, mh = int(w.shape[0]), int(w.shape[1])
        wname = model.make_new_valueinfo_name()
        model.set_initializer(wname, w_int.astype(np.float32))
        model.set_tensor_datatype(wname, wdt)
        consumers = model.find_consumers(n.output[0]) or []
        mt = consumers[0] if len(consumers) == 1 and \
            consumers[0].op_type == "MultiThreshold" else None
        op_type = "AdderMVAU" if kind == "adder" else "ShiftMVAU"
        common = dict(domain=hw_layers.HW_DOMAIN, backend="fpgadataflow", MW=mw, MH=mh,
                      SIMD=1, PE=1, inputDataType=idt.name, weightDataType=wdt.name,
                      binaryXnorMode=0, numInputVectors=[int(d) for d in ishape[:-1]],
                      name=f"{op_type}_{n.name}", mem_mode="internal_decoupled",
                      resType="lut", **attrs)
        pos = list(model.graph.node).index(n)
        if mt is not None:
            mti = getCustomOp(mt)
            t = model.get_initializer(mt.input[1])
            if t is None or t.shape[0] not in (1, mh):
                return False
            if mti.get_nodeattr("out_scale") != 1.0:
                return False
            actval = float(mti.get_nodeattr("out_bias"))
            odt = model.get_tensor_datatype(mt.output[0])
            if actval != int(actval) or (odt.signed() and actval >= 0):
                return False
            t_int = np.ceil(np.asarray(t, np.float64) * scale)
            tname = model.make_new_valueinfo_name()
            model.set_initializer(tname, t_int.astype(np.float32))
            new = helper.make_node(op_type, [n.input[0], wname, tname], [mt.output[0]],
                                   outputDataType=odt.name, ActVal=int(actval),
                                   noActivation=0, **common)
            model.graph.node.insert(pos, new)
            model.graph.node.remove(n)
            model.graph.node.remove(mt)
        else:
            out = n.output[0]
            acc_out = out if scale == 1.0 else model.make_new_valueinfo_name()
            new = helper.make_node(op_type, [n.input[0], wname], [acc_out],
                                   outputDataType="INT32", ActVal=0, noActivation=1,
                                   **common)
            model.graph.node.insert(pos, new)
            model.graph.node.remove(n)
            if scale != 1.0:
                # the integer accumulator is the QONNX value times 2^-e_min: undo it
                cname = model.make_new_valueinfo_name()
                model.set_initializer(cname, np.asarray(1.0 / scale, dtype=np.float32))
                model.graph.node.insert(pos + 1, helper.make_node(
                    "Mul", [acc_out, cname], [out], name=f"{op_type}_{n.name}_scale"))
        new = model.graph.node[pos]  # the inserted copy
        inst = getCustomOp(new)
        adt = inst.minimize_accumulator_width(model)
        if mt is not None:
            lo, hi = float(adt.min()), float(adt.max())
            tname = new.input[2]
            t_int = np.clip(model.get_initializer(tname), lo - 1, hi + 1)
            model.set_initializer(tname, t_int.astype(np.float32))
            model.set_tensor_datatype(tname, _int_dtype(float(t_int.min()),
                                                         float(t_int.max())))
        model.set_tensor_datatype(new.output[0],
                                  DataType[inst.get_nodeattr("outputDataType")])
        return True


def step_hybrid_streamline(model: ModelWrapper) -> ModelWrapper:
    """Moves scalar Muls past hybrid ops, lowers hybrid convs to Im2Col + matmul in NHWC
    and repeats the tail of FINN's streamlining (as `lower.step_streamline` runs it)."""
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes

    if not any(n.domain == NASHC_DOMAIN for n in model.graph.node):
        return model
    for _ in range(3):
        model = model.transform(MoveScalarMulPastAdderMatMul())
        model = model.transform(MoveScalarMulPastShiftMatMul())
        model = model.transform(Streamline())
    had_convs = any(n.op_type in ("ShiftConv", "AdderConv") for n in model.graph.node)
    model = model.transform(LowerHybridConvsToMatMul())
    if had_convs:
        # only conv lowering inserts layout transposes; on fc-only graphs FINN's transpose
        # absorption would move the input thresholds to NHWC and strand a Transpose
        model = absorb_layout_transposes(model, has_residual_forks(model))
    model = model.transform(Streamline())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(InferDataTypes())
    model = model.transform(InferDataLayouts())
    return model.transform(RemoveUnusedTensors())


def hybrid_extra_steps() -> list[ExtraStep]:
    """The extra steps `lower_to_hw` needs for graphs with nashc hybrid ops."""
    return [
        ExtraStep("hybrid_streamline", step_hybrid_streamline, after="streamline"),
        ExtraStep("infer_hybrid_mvau", InferHybridMVAU(), after="streamline"),
    ]
