"""Lowering of nashc hybrid custom ops to standard ONNX, so onnxruntime runs them.

- ``ShiftConv`` -> ``Conv`` and ``ShiftMatMul`` -> ``MatMul`` (the weights already are
  signed powers of two).
- ``AdderConv`` -> im2col as a grouped ``Conv`` with a fixed one-hot kernel (``C*kh*kw``
  output channels, one per window element; padding, stride and dilation stay on that
  Conv), then ``Reshape``, ``Sub`` of the weights, ``Abs``, ``ReduceSum``, ``Neg``,
  ``Reshape`` (+ ``Add`` of the bias).
- ``AdderMatMul`` -> ``Unsqueeze``, ``Sub``, ``Abs``, ``ReduceSum``, ``Neg``.

And of QONNX quantizers (``LowerQonnxQuantToONNX``): ``Quant``, ``BipolarQuant``,
``Trunc`` and ``MultiThreshold`` have no onnxruntime kernel; they become standard ops that
compute exactly what qonnx's numpy code computes (Div, Add, Max/Min clipping, Round
half-to-even as ``np.round``, Sub, Mul). qonnx's ``QuantToQCDQ`` is not used: it only
handles 2..8-bit Quant with per-tensor/1D scales and no BipolarQuant.

The one-hot Conv multiplies by exactly 1 and adds exact zeros, so the patches are the
input values unchanged; on fixed-point inputs every result is exact in float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes

from nashc.dsl.errors import NashcError
from nashc.runtime.load import node_attrs
from nashc.runtime.ops import DOMAIN, HybridOpError

__all__ = ["LowerHybridOpsToONNX", "LowerQonnxQuantToONNX", "LoweringError", "has_hybrid_ops"]

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")


class LoweringError(NashcError):
    """A QONNX quantizer cannot be rewritten to standard ONNX (non-constant parameters,
    unknown rounding mode, opset too old)."""


def has_hybrid_ops(model: ModelWrapper) -> bool:
    """True if the graph contains a node of the nashc hybrid-op domain."""
    return any(n.domain == DOMAIN for n in model.graph.node)


class LowerHybridOpsToONNX(Transformation):
    """Replaces nashc hybrid custom ops with standard ONNX ops."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        changed = False
        opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")),
                     13)
        for node in list(graph.node):
            if node.domain != DOMAIN:
                continue
            pos = list(graph.node).index(node)
            new_nodes = self._lower(model, node, opset)
            graph.node.remove(node)
            for k, n in enumerate(new_nodes):
                graph.node.insert(pos + k, n)
            changed = True
        if changed:
            if not has_hybrid_ops(model):
                keep = [o for o in model.model.opset_import if o.domain != DOMAIN]
                del model.model.opset_import[:]
                model.model.opset_import.extend(keep)
            model = model.transform(InferShapes())
        return model, False

    # have: a hybrid node; want: the standard nodes computing the same function
    def _lower(self, model: ModelWrapper, node: NodeProto, opset: int) -> list[NodeProto]:
        a = node_attrs(node)
        a.pop("weight_bits", None)
        name = node.name or node.output[0]
        if node.op_type == "ShiftConv":
            return [helper.make_node("Conv", list(node.input), list(node.output), name=name, **a)]
        if node.op_type == "ShiftMatMul":
            return [helper.make_node("MatMul", list(node.input), list(node.output), name=name)]
        if node.op_type == "AdderMatMul":
            return self._adder_matmul(model, node, name, opset)
        if node.op_type == "AdderConv":
            return self._adder_conv(model, node, name, a, opset)
        raise HybridOpError(f"node {node.name!r} ({node.op_type}): no lowering to standard ONNX")

    @staticmethod
    def _const(model: ModelWrapper, name: str, value: np.ndarray) -> str:
        tname = model.make_new_valueinfo_name() + "_" + name
        model.set_initializer(tname, value)
        return tname

    def _reduce_sum(self, model: ModelWrapper, inp: str, out: str, axis: int, name: str,
                    opset: int) -> NodeProto:
        if opset >= 13:
            axes = self._const(model, "axes", np.array([axis], dtype=np.int64))
            return helper.make_node("ReduceSum", [inp, axes], [out], keepdims=0,
                                    name=name + "_sum")
        return helper.make_node("ReduceSum", [inp], [out], axes=[axis], keepdims=0,
                                name=name + "_sum")

    def _unsqueeze(self, model: ModelWrapper, inp: str, out: str, axis: int, name: str,
                   opset: int) -> NodeProto:
        if opset >= 13:
            axes = self._const(model, "axes", np.array([axis], dtype=np.int64))
            return helper.make_node("Unsqueeze", [inp, axes], [out], name=name + "_unsqueeze")
        return helper.make_node("Unsqueeze", [inp], [out], axes=[axis], name=name + "_unsqueeze")

    def _adder_matmul(self, model: ModelWrapper, node: NodeProto, name: str,
                      opset: int) -> list[NodeProto]:
        x, w = node.input[0], node.input[1]
        t = [model.make_new_valueinfo_name() for _ in range(4)]
        return [
            self._unsqueeze(model, x, t[0], -1, name, opset),          # (..., K, 1)
            helper.make_node("Sub", [t[0], w], [t[1]], name=name + "_sub"),  # (..., K, N)
            helper.make_node("Abs", [t[1]], [t[2]], name=name + "_abs"),
            self._reduce_sum(model, t[2], t[3], -2, name, opset),      # (..., N)
            helper.make_node("Neg", [t[3]], [node.output[0]], name=name),
        ]

    def _adder_conv(self, model: ModelWrapper, node: NodeProto, name: str, a: dict[str, Any],
                    opset: int) -> list[NodeProto]:
        x, wname = node.input[0], node.input[1]
        w = model.get_initializer(wname)
        xshape = model.get_tensor_shape(x)
        oshape = model.get_tensor_shape(node.output[0])
        if w is None:
            raise HybridOpError(f"node {node.name!r} (AdderConv): weight must be an initializer")
        if xshape is None or oshape is None or len(oshape) != 4:
            raise HybridOpError(f"node {node.name!r} (AdderConv): unknown input/output shape; "
                                "run InferShapes first")
        o, cg, kh, kw = (int(d) for d in w.shape)
        group = int(a.get("group", 1))
        c = int(xshape[1])
        og = o // group
        k = kh * kw
        oh, ow = int(oshape[2]), int(oshape[3])
        # one-hot patch kernel: output channel c*k + i*kw + j copies x[c] at window (i, j)
        onehot = np.zeros((c * k, 1, kh, kw), dtype=np.float32)
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    onehot[ch * k + i * kw + j, 0, i, j] = 1.0
        ker = self._const(model, "im2col_kernel", onehot)
        conv_attrs: dict[str, Any] = {
            "kernel_shape": [kh, kw],
            "strides": list(a.get("strides", [1, 1])),
            "pads": list(a.get("pads", [0, 0, 0, 0])),
            "dilations": list(a.get("dilations", [1, 1])),
            "group": c,
        }
        # weights (O, Cg, kh, kw) -> (1, G, Og, Cg*k, 1, 1); patches -> (N, G, 1, Cg*k, OH, OW)
        wr = self._const(model, "adder_w", w.astype(np.float32).reshape(1, group, og, cg * k,
                                                                         1, 1))
        s1 = self._const(model, "shape", np.array([-1, group, 1, cg * k, oh, ow], dtype=np.int64))
        s2 = self._const(model, "shape", np.array([-1, o, oh, ow], dtype=np.int64))
        t = [model.make_new_valueinfo_name() for _ in range(7)]
        nodes = [
            helper.make_node("Conv", [x, ker], [t[0]], name=name + "_im2col", **conv_attrs),
            helper.make_node("Reshape", [t[0], s1], [t[1]], name=name + "_patches"),
            helper.make_node("Sub", [t[1], wr], [t[2]], name=name + "_sub"),
            helper.make_node("Abs", [t[2]], [t[3]], name=name + "_abs"),
            self._reduce_sum(model, t[3], t[4], 3, name, opset),       # (N, G, Og, OH, OW)
            helper.make_node("Neg", [t[4]], [t[5]], name=name + "_neg"),
        ]
        has_bias = len(node.input) > 2 and node.input[2] != ""
        out = node.output[0]
        nodes.append(helper.make_node("Reshape", [t[5], s2], [t[6] if has_bias else out],
                                      name=name if not has_bias else name + "_reshape"))
        if has_bias:
            b = model.get_initializer(node.input[2])
            if b is None:
                raise HybridOpError(f"node {node.name!r} (AdderConv): bias must be an initializer")
            br = self._const(model, "adder_b", b.astype(np.float32).reshape(1, o, 1, 1))
            nodes.append(helper.make_node("Add", [t[6], br], [out], name=name))
        return nodes


# -- QONNX quantizers -> standard ONNX -------------------------------------------------


def _is_qonnx(node: NodeProto) -> bool:
    return node.domain in QONNX_DOMAINS


class LowerQonnxQuantToONNX(Transformation):
    """Replaces QONNX Quant, BipolarQuant and MultiThreshold nodes with standard ONNX ops."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")),
                     13)
        for node in list(graph.node):
            if not _is_qonnx(node):
                continue
            if node.op_type == "Quant":
                new = self._quant(model, node)
            elif node.op_type == "BipolarQuant":
                new = self._bipolar(model, node)
            elif node.op_type == "MultiThreshold":
                new = self._multithreshold(model, node, opset)
            elif node.op_type == "Trunc" and len(node.input) == 6:
                new = self._trunc(model, node)
            else:
                raise LoweringError(f"node {node.name!r} ({node.op_type}): no standard-ONNX "
                                  "lowering for onnxruntime")
            pos = list(graph.node).index(node)
            graph.node.remove(node)
            for k, n in enumerate(new):
                graph.node.insert(pos + k, n)
        return model, False

    @staticmethod
    def _c(model: ModelWrapper, value: Any) -> str:
        name = model.make_new_valueinfo_name()
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
        return name

    def _quant(self, model: ModelWrapper, node: NodeProto) -> list[NodeProto]:
        from qonnx.custom_op.general.quant import max_int, min_int

        x, scale, zeropt, bw = node.input
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        bits = model.get_initializer(bw)
        if bits is None:
            raise LoweringError(f"node {node.name!r} (Quant): bit width must be an initializer")
        bits = float(np.asarray(bits))
        nm = node.name or node.output[0]
        t = [model.make_new_valueinfo_name() for _ in range(8)]
        nodes = [helper.make_node("Div", [x, scale], [t[0]], name=nm + "_div"),
                 helper.make_node("Add", [t[0], zeropt], [t[1]], name=nm + "_addz")]
        if bits == 1 and signed:
            one, mone, zero = self._c(model, 1.0), self._c(model, -1.0), self._c(model, 0.0)
            nodes += [helper.make_node("GreaterOrEqual", [t[1], zero], [t[2]], name=nm + "_ge"),
                      helper.make_node("Where", [t[2], one, mone], [t[4]], name=nm + "_sign")]
        else:
            lo = float(min_int(signed, narrow, bits))
            hi = float(max_int(signed, narrow, bits))
            nodes += [
                helper.make_node("Min", [t[1], self._c(model, hi)], [t[2]], name=nm + "_min"),
                helper.make_node("Max", [t[2], self._c(model, lo)], [t[3]], name=nm + "_max"),
            ]
            nodes += self._round(model, t[3], t[4], mode, nm)
        nodes += [helper.make_node("Sub", [t[4], zeropt], [t[5]], name=nm + "_subz"),
                  helper.make_node("Mul", [t[5], scale], [node.output[0]], name=nm)]
        return nodes

    def _trunc(self, model: ModelWrapper, node: NodeProto) -> list[NodeProto]:
        """QONNX Trunc (v2, as Brevitas' TruncAvgPool exports it), step by step as
        `qonnx.custom_op.general.trunc.trunc_v2` computes it."""
        from qonnx.custom_op.general.quant import max_int, min_int

        x, scale, zeropt, _in_bw, out_scale, out_bw = node.input
        consts = [model.get_initializer(t) for t in (scale, zeropt, out_scale, out_bw)]
        if any(c is None for c in consts):
            raise LoweringError(f"node {node.name!r} (Trunc): scales, zero-point and bit widths "
                              "must be initializers")
        sc, zp, osc, obw = (np.asarray(c, dtype=np.float32) for c in consts)
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"FLOOR")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        trunc_scale = np.float32(2.0 ** np.round(np.log2(osc / sc)))
        lo = float(min_int(signed, narrow, float(obw)))
        hi = float(max_int(signed, narrow, float(obw)))
        nm = node.name or node.output[0]
        t = [model.make_new_valueinfo_name() for _ in range(8)]
        nodes = [
            helper.make_node("Div", [x, scale], [t[0]], name=nm + "_div"),
            helper.make_node("Add", [t[0], zeropt], [t[1]], name=nm + "_addz"),
            helper.make_node("Round", [t[1]], [t[2]], name=nm + "_round_in"),
            helper.make_node("Div", [t[2], self._c(model, trunc_scale)], [t[3]],
                             name=nm + "_shift"),
            helper.make_node("Min", [t[3], self._c(model, hi)], [t[4]], name=nm + "_min"),
            helper.make_node("Max", [t[4], self._c(model, lo)], [t[5]], name=nm + "_max"),
        ]
        nodes += self._round(model, t[5], t[6], mode, nm)
        nodes += [
            helper.make_node("Sub", [t[6], self._c(model, zp / trunc_scale)], [t[7]],
                             name=nm + "_subz"),
            helper.make_node("Mul", [t[7], out_scale], [node.output[0]], name=nm),
        ]
        return nodes

    def _round(self, model: ModelWrapper, x: str, out: str, mode: str,
               nm: str) -> list[NodeProto]:
        if mode in ("ROUND", "HALF_EVEN"):
            return [helper.make_node("Round", [x], [out], name=nm + "_round")]
        if mode in ("FLOOR", "CEIL"):
            return [helper.make_node(mode.capitalize(), [x], [out], name=nm + "_round")]
        # sign(x) * f(|x|) forms, as qonnx's resolve_rounding_mode
        t = [model.make_new_valueinfo_name() for _ in range(4)]
        nodes = [helper.make_node("Sign", [x], [t[0]], name=nm + "_sign"),
                 helper.make_node("Abs", [x], [t[1]], name=nm + "_abs")]
        if mode == "UP":
            nodes.append(helper.make_node("Ceil", [t[1]], [t[3]], name=nm + "_f"))
        elif mode == "DOWN":
            nodes.append(helper.make_node("Floor", [t[1]], [t[3]], name=nm + "_f"))
        elif mode in ("HALF_UP", "HALF_DOWN"):
            op = "Add" if mode == "HALF_UP" else "Sub"
            fn = "Floor" if mode == "HALF_UP" else "Ceil"
            nodes += [helper.make_node(op, [t[1], self._c(model, 0.5)], [t[2]], name=nm + "_h"),
                      helper.make_node(fn, [t[2]], [t[3]], name=nm + "_f")]
        else:
            raise LoweringError(f"node {nm!r} (Quant): unknown rounding_mode {mode!r}")
        nodes.append(helper.make_node("Mul", [t[0], t[3]], [out], name=nm + "_round"))
        return nodes

    def _bipolar(self, model: ModelWrapper, node: NodeProto) -> list[NodeProto]:
        x, scale = node.input[0], node.input[1]
        nm = node.name or node.output[0]
        t = [model.make_new_valueinfo_name() for _ in range(2)]
        return [
            helper.make_node("GreaterOrEqual", [x, self._c(model, 0.0)], [t[0]], name=nm + "_ge"),
            helper.make_node("Where", [t[0], self._c(model, 1.0), self._c(model, -1.0)], [t[1]],
                             name=nm + "_sign"),
            helper.make_node("Mul", [t[1], scale], [node.output[0]], name=nm),
        ]

    def _multithreshold(self, model: ModelWrapper, node: NodeProto,
                        opset: int) -> list[NodeProto]:
        # y = out_scale * #{t : x >= thr[c, t]} + out_bias, NCHW or channels-last
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        layout = a.get("data_layout", b"NCHW")
        layout = layout.decode() if isinstance(layout, bytes) else str(layout)
        thr = model.get_initializer(node.input[1])
        ishape = model.get_tensor_shape(node.input[0])
        if thr is None or ishape is None:
            raise LoweringError(f"node {node.name!r} (MultiThreshold): needs constant thresholds "
                              "and a known input shape")
        nm = node.name or node.output[0]
        rank = len(ishape)
        c_axis = rank - 1 if layout.upper() in ("NHWC", "NWC", "NC") else 1
        # thresholds (C or 1, T) -> broadcastable over x with a trailing T axis
        tshape = [1] * rank + [thr.shape[1]]
        tshape[c_axis] = thr.shape[0]
        thr_b = thr.astype(np.float32).reshape(tshape)
        axes = model.make_new_valueinfo_name()
        model.set_initializer(axes, np.array([-1], dtype=np.int64))
        t = [model.make_new_valueinfo_name() for _ in range(5)]
        nodes = [
            helper.make_node("Unsqueeze", [node.input[0], axes], [t[0]], name=nm + "_unsq"),
            helper.make_node("GreaterOrEqual", [t[0], self._c(model, thr_b)], [t[1]],
                             name=nm + "_ge"),
            helper.make_node("Cast", [t[1]], [t[2]], to=1, name=nm + "_cast"),
            helper.make_node("ReduceSum", [t[2], axes], [t[3]], keepdims=0, name=nm + "_sum"),
            helper.make_node("Mul", [t[3], self._c(model, float(a.get("out_scale", 1.0)))],
                             [t[4]], name=nm + "_scale"),
            helper.make_node("Add", [t[4], self._c(model, float(a.get("out_bias", 0.0)))],
                             [node.output[0]], name=nm),
        ]
        if opset < 13:
            raise LoweringError(f"node {node.name!r} (MultiThreshold): needs ONNX opset >= 13")
        return nodes
