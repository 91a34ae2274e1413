"""LowerHybridOpsToONNX: structure, onnx.checker, bit-exact in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from nashc.runtime.lowering import LowerHybridOpsToONNX, has_hybrid_ops
from nashc.runtime.ops import DOMAIN, to_adder_weights, to_shift_weights


def _ort(model: ModelWrapper, feed: dict[str, np.ndarray]) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


def _model(op, x_shape, w, b, attrs, opset=17):
    ins = ["x", "w"] + (["b"] if b is not None else [])
    node = helper.make_node(op, ins, ["y"], domain=DOMAIN, name="layer", **attrs)
    inits = [numpy_helper.from_array(w, "w")]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=inits)
    m = ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                                        helper.make_opsetid(DOMAIN, 1)]))
    return m.transform(InferShapes())


EXPECTED = {
    "ShiftConv": ["Conv"],
    "ShiftMatMul": ["MatMul"],
    "AdderMatMul": ["Unsqueeze", "Sub", "Abs", "ReduceSum", "Neg"],
    "AdderConv": ["Conv", "Reshape", "Sub", "Abs", "ReduceSum", "Neg", "Reshape"],
}


def _grid(rng, shape, bits, scale):
    return (rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=shape) * scale).astype(
        np.float32)


@pytest.mark.parametrize("op", ["ShiftConv", "AdderConv"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("bias", [False, True])
def test_lower_conv_bit_exact(op, k, stride, bits, bias):
    rng = np.random.default_rng(k + 10 * stride + 100 * bits)
    c, o, group = 4, 6, 2 if k == 3 else 1
    scale = 2.0 ** -3
    x = _grid(rng, (2, c, 10, 9), bits, scale)
    wf = rng.normal(size=(o, c // group, k, k))
    w = to_shift_weights(wf, bits) if op == "ShiftConv" else to_adder_weights(wf, scale, bits)
    b = _grid(rng, (o,), 4, scale) if bias else None
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2, k // 2, 0, k // 2],
                 group=group, dilations=[1, 1], weight_bits=bits)
    m = _model(op, x.shape, w, b, attrs)
    ref = execute_onnx(m, {"x": x})["y"]
    low = m.transform(LowerHybridOpsToONNX())
    ops = [n.op_type for n in low.graph.node]
    assert ops == EXPECTED[op] + (["Add"] if bias and op == "AdderConv" else [])
    assert not has_hybrid_ops(low)
    assert all(o.domain != DOMAIN for o in low.model.opset_import)
    assert low.graph.node[-1].output[0] == "y"
    onnx.checker.check_model(low.model)
    got = _ort(low, {"x": x})
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("op", ["ShiftMatMul", "AdderMatMul"])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("xshape", [(1, 32), (3, 32), (2, 2, 32)])
@pytest.mark.parametrize("opset", [11, 17])
def test_lower_matmul_bit_exact(op, bits, xshape, opset):
    rng = np.random.default_rng(bits)
    scale = 2.0 ** -2
    x = _grid(rng, xshape, bits, scale)
    wf = rng.normal(size=(32, 7))
    w = to_shift_weights(wf, bits) if op == "ShiftMatMul" else to_adder_weights(wf, scale, bits)
    m = _model(op, x.shape, w, None, {"weight_bits": bits}, opset=opset)
    ref = execute_onnx(m, {"x": x})["y"]
    low = m.transform(LowerHybridOpsToONNX())
    assert [n.op_type for n in low.graph.node] == EXPECTED[op]
    onnx.checker.check_model(low.model)
    np.testing.assert_array_equal(_ort(low, {"x": x}), ref)


def test_lower_adder_conv_dilation_and_asymmetric_pads():
    rng = np.random.default_rng(7)
    x = _grid(rng, (1, 3, 11, 9), 4, 0.5)
    w = to_adder_weights(rng.normal(size=(5, 3, 3, 3)), 0.5, 4)
    attrs = dict(kernel_shape=[3, 3], strides=[2, 1], pads=[0, 2, 1, 0], group=1,
                 dilations=[2, 1], weight_bits=4)
    m = _model("AdderConv", x.shape, w, None, attrs)
    ref = execute_onnx(m, {"x": x})["y"]
    low = m.transform(LowerHybridOpsToONNX())
    onnx.checker.check_model(low.model)
    np.testing.assert_array_equal(_ort(low, {"x": x}), ref)


def test_lowering_leaves_standard_graph_unchanged():
    rng = np.random.default_rng(0)
    w = to_shift_weights(rng.normal(size=(2, 3, 1, 1)), 4)
    m = _model("ShiftConv", (1, 3, 4, 4), w, None, dict(kernel_shape=[1, 1], weight_bits=4))
    low = m.transform(LowerHybridOpsToONNX())
    again = low.transform(LowerHybridOpsToONNX())
    assert [n.op_type for n in again.graph.node] == ["Conv"]
    # the lowered Conv has no leftover weight_bits attribute
    assert all(a.name != "weight_bits" for a in again.graph.node[0].attribute)
