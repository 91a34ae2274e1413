"""Small QONNX graphs for the pass tests, built node by node (`G`), and helpers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

__all__ = ["QD", "G", "conv_net", "fc_net", "expose", "quant_node"]

QD = "qonnx.custom_op.general"


class G:
    """A small QONNX graph under construction; all scales are powers of two so that the
    float arithmetic of onnxruntime is exact and results can be compared with ==."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def const(self, v, base: str = "c") -> str:
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(v, np.float32), nm))
        return nm

    def quant(self, x: str, scale: float, bits: int, signed: int = 1) -> str:
        out = self.name("q")
        self.nodes.append(helper.make_node(
            "Quant", [x, self.const(scale), self.const(0.0), self.const(float(bits))], [out],
            domain=QD, name=out + "_node", signed=signed, narrow=0, rounding_mode="ROUND"))
        return out

    def weights(self, shape, bits: int) -> str:
        w = self.rng.normal(scale=0.5, size=shape).astype(np.float32)
        return self.quant(self.const(w, "w"), 2.0 ** -(bits - 1), bits)

    def op(self, op_type: str, ins: list[str], name: str | None = None, **attrs) -> str:
        out = self.name("t")
        self.nodes.append(helper.make_node(op_type, ins, [out], name=name or out + "_n",
                                           **attrs))
        return out

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        ins = [x] + [self.const(v) for v in (2.0 ** r.integers(-1, 2, c),
                                             r.integers(-2, 3, c) / 4.0,
                                             r.integers(-2, 3, c) / 4.0, np.ones(c) - 1e-5)]
        return self.op("BatchNormalization", ins, epsilon=1e-5)

    def act(self, x: str, bits: int) -> str:
        return self.quant(self.op("Relu", [x]), 0.25, bits, signed=0)

    def model(self, x_shape, y: str) -> ModelWrapper:
        out = self.op("Identity", [y], name="out")
        g = helper.make_graph(self.nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              initializer=self.inits)
        m = ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                                            helper.make_opsetid(QD, 1)]))
        from qonnx.transformation.infer_shapes import InferShapes

        return m.transform(InferShapes())


def conv_net(k: int, stride: int, bits: int, residual: bool) -> ModelWrapper:
    """x -> c0 -> c1 (stride) -> [c2 + skip] -> c3 -> GAP -> Flatten -> head (MatMul)."""
    g = G(seed=k * 100 + stride * 10 + bits)
    x = g.quant("x", 0.125, 8)
    t = g.act(g.bn(g.op("Conv", [x, g.weights((8, 3, k, k), bits)], name="c0",
                       kernel_shape=[k, k], pads=[k // 2] * 4), 8), bits)
    t = g.act(g.bn(g.op("Conv", [t, g.weights((8, 8, k, k), bits)], name="c1",
                       kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride] * 2), 8), bits)
    if residual:
        u = g.quant(g.bn(g.op("Conv", [t, g.weights((8, 8, k, k), bits)], name="c2",
                              kernel_shape=[k, k], pads=[k // 2] * 4), 8), 0.25, 8)
        t = g.act(g.op("Add", [u, t]), bits)
    t = g.act(g.op("Conv", [t, g.weights((6, 8, 1, 1), bits)], name="c3",
                   kernel_shape=[1, 1]), bits)
    t = g.op("Flatten", [g.op("GlobalAveragePool", [t])])
    return g.model([1, 3, 8, 8], g.op("MatMul", [t, g.weights((6, 5), bits)], name="head"))


def fc_net(bits: int, residual: bool) -> ModelWrapper:
    """x -> Flatten -> f0 (Gemm + bias) -> f1 -> [f2 + skip] -> head."""
    g = G(seed=bits)
    x = g.quant(g.op("Flatten", ["x"]), 0.125, 8)
    t = g.act(g.bn(g.op("Gemm", [x, g.weights((8, 12), bits), g.const(np.arange(8) / 4.0)],
                        name="f0", transB=1), 8), bits)
    t = g.act(g.bn(g.op("MatMul", [t, g.weights((8, 8), bits)], name="f1"), 8), bits)
    if residual:
        u = g.quant(g.op("MatMul", [t, g.weights((8, 8), bits)], name="f2"), 0.25, 8)
        t = g.act(g.op("Add", [u, t]), bits)
    return g.model([1, 3, 2, 2], g.op("MatMul", [t, g.weights((8, 4), bits)], name="head"))


def expose(model: ModelWrapper, tensor: str) -> ModelWrapper:
    """A copy of ``model`` with the intermediate ``tensor`` as an extra graph output."""
    m = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    vi = next(v for v in m.graph.value_info if v.name == tensor)
    m.graph.value_info.remove(vi)
    m.graph.output.append(vi)
    return m


def quant_node(name: str, inp: str, out: str, scale: float, bits: int, inits: list,
               narrow: int = 0) -> onnx.NodeProto:
    """A signed QONNX ``Quant`` node ``name`` with its scale, zero point 0 and bit width
    appended to ``inits`` as ``NAME_s``, ``NAME_z``, ``NAME_b``."""
    for suffix, v in (("s", scale), ("z", 0.0), ("b", float(bits))):
        inits.append(numpy_helper.from_array(np.asarray(v, np.float32), f"{name}_{suffix}"))
    return helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out],
                            domain=QD, name=name, signed=1, narrow=narrow,
                            rounding_mode="ROUND")
