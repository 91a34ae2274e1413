"""Lowering of nashc hybrid custom ops to standard ONNX, so onnxruntime runs them.

- ``ShiftConv`` -> ``Conv`` and ``ShiftMatMul`` -> ``MatMul`` (the weights already are
  signed powers of two).
- ``AdderConv`` -> im2col as a grouped ``Conv`` with a fixed one-hot kernel (``C*kh*kw``
  output channels, one per window element; padding, stride and dilation stay on that
  Conv), then ``Reshape``, ``Sub`` of the weights, ``Abs``, ``ReduceSum``, ``Neg``,
  ``Reshape`` (+ ``Add`` of the bias).
- ``AdderMatMul`` -> ``Unsqueeze``, ``Sub``, ``Abs``, ``ReduceSum``, ``Neg``.

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

from nashc.runtime.ops import DOMAIN, HybridOpError

__all__ = ["LowerHybridOpsToONNX", "has_hybrid_ops"]


def has_hybrid_ops(model: ModelWrapper) -> bool:
    """True if the graph contains a node of the nashc hybrid-op domain."""
    return any(n.domain == DOMAIN for n in model.graph.node)


def _attrs(node: NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


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
        a = _attrs(node)
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

