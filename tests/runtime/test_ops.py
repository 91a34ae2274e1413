"""Hybrid custom ops: weight rules, numpy references vs torch, qonnx integration."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from nashc.runtime.ops import (
    DOMAIN,
    HybridOpError,
    is_shift_weights,
    to_adder_weights,
    to_shift_weights,
)


def _grid_input(rng: np.random.Generator, shape: tuple[int, ...], bits: int = 4) -> np.ndarray:
    return rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=shape).astype(np.float32) * 0.25


def _torch_adder_conv(x, w, b, stride, pad, group, dil):
    # independent: unfold -> broadcast |x - w| over groups
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xt = torch.from_numpy(x).double()
    cols = F.unfold(xt, (kh, kw), dilation=dil, padding=pad, stride=stride)  # N, C*k, L
    L = cols.shape[-1]
    cols = cols.view(n, group, cg * kh * kw, L)
    wt = torch.from_numpy(w).double().view(group, o // group, cg * kh * kw)
    y = -(cols[:, :, None, :, :] - wt[None, :, :, :, None]).abs().sum(3)  # N, G, Og, L
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    y = y.reshape(n, o, oh, -1)
    if b is not None:
        y = y + torch.from_numpy(b).double().view(1, -1, 1, 1)
    return y.float().numpy()


def _conv_model(op, x_shape, w, b, k, stride, pad, group, bits, dil=1):
    ins = ["x", "w"] + (["b"] if b is not None else [])
    node = helper.make_node(op, ins, ["y"], domain=DOMAIN, name="layer", kernel_shape=[k, k],
                            strides=[stride, stride], pads=[pad] * 4, group=group,
                            dilations=[dil, dil], weight_bits=bits)
    inits = [numpy_helper.from_array(w, "w")]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=inits)
    m = qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                           helper.make_opsetid(DOMAIN, 1)])
    return ModelWrapper(m)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_to_shift_weights_rule(bits):
    rng = np.random.default_rng(bits)
    w = rng.normal(scale=0.5, size=(200,)).astype(np.float32)
    w[:5] = 0
    s = to_shift_weights(w, bits)
    assert is_shift_weights(s, bits)
    assert np.all(s[:5] == 0)
    nz = w != 0
    assert np.all(np.sign(s[nz]) == np.sign(w[nz]))
    lo = -(2 ** (bits - 1) - 1)
    e = np.clip(np.round(np.log2(np.abs(w[nz].astype(np.float64)))), lo, 0)
    np.testing.assert_array_equal(np.abs(s[nz]), np.exp2(e).astype(np.float32))


def test_to_shift_weights_examples():
    w = np.array([0.0, 0.3, -0.7, 5.0, -1e-6, 0.75], dtype=np.float32)
    # log2: -1.74->-2, -0.51->-1, clamp 1->0, clamp -20->-3, -0.415->0
    np.testing.assert_array_equal(to_shift_weights(w, 3),
                                  [0.0, 0.25, -0.5, 1.0, -0.125, 1.0])
    assert not is_shift_weights(np.array([0.3]), 4)
    assert not is_shift_weights(np.array([2.0]), 4)
    assert not is_shift_weights(np.array([2.0 ** -8]), 4)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_to_adder_weights_grid(bits):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(100,)).astype(np.float32)
    s = 0.125
    a = to_adder_weights(w, s, bits)
    q = a / s
    np.testing.assert_array_equal(q, np.round(q))
    assert q.min() >= -(2 ** (bits - 1)) and q.max() <= 2 ** (bits - 1) - 1
    inside = np.abs(w / s) < 2 ** (bits - 1) - 1
    assert np.all(np.abs(a[inside] - w[inside]) <= s / 2 + 1e-7)
    with pytest.raises(HybridOpError):
        to_adder_weights(w, 0.0, bits)


@pytest.mark.parametrize("op", ["ShiftConv", "AdderConv"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_conv_reference_vs_torch(op, k, stride, group, bits):
    rng = np.random.default_rng(k * 100 + stride * 10 + bits)
    c, o, pad = 4, 6, k // 2
    x = _grid_input(rng, (2, c, 9, 8))
    wf = rng.normal(scale=0.5, size=(o, c // group, k, k)).astype(np.float32)
    w = to_shift_weights(wf, bits) if op == "ShiftConv" else to_adder_weights(wf, 0.25, bits)
    b = rng.integers(-4, 4, size=(o,)).astype(np.float32)
    m = _conv_model(op, x.shape, w, b, k, stride, pad, group, bits)
    y = execute_onnx(m, {"x": x})["y"]
    if op == "ShiftConv":
        ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                       torch.from_numpy(b).double(), stride=stride, padding=pad,
                       groups=group).float().numpy()
    else:
        ref = _torch_adder_conv(x, w, b, stride, pad, group, 1)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ref)


def test_adder_conv_padding_contributes():
    # a 1x1 input of 0 with 3x3 kernel, pad 1: every output sums |0 - w| over all taps
    w = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) - 4
    m = _conv_model("AdderConv", (1, 1, 1, 1), w, None, 3, 1, 1, 1, 4)
    y = execute_onnx(m, {"x": np.zeros((1, 1, 1, 1), np.float32)})["y"]
    assert y.shape == (1, 1, 1, 1) and y.item() == -np.abs(w).sum()


def test_adder_conv_dilation_vs_torch():
    rng = np.random.default_rng(3)
    x = _grid_input(rng, (1, 2, 9, 9))
    w = to_adder_weights(rng.normal(size=(3, 2, 3, 3)), 0.25, 4)
    m = _conv_model("AdderConv", x.shape, w, None, 3, 1, 2, 1, 4, dil=2)
    y = execute_onnx(m, {"x": x})["y"]
    np.testing.assert_array_equal(y, _torch_adder_conv(x, w, None, 1, 2, 1, 2))


def _mm_model(op, x_shape, w, bits):
    node = helper.make_node(op, ["x", "w"], ["y"], domain=DOMAIN, name="fc", weight_bits=bits)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(w, "w")])
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                           helper.make_opsetid(DOMAIN, 1)]))


@pytest.mark.parametrize("op", ["ShiftMatMul", "AdderMatMul"])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("xshape", [(3, 16), (2, 3, 16)])
def test_matmul_reference_vs_torch(op, bits, xshape):
    rng = np.random.default_rng(bits)
    x = _grid_input(rng, xshape)
    wf = rng.normal(scale=0.5, size=(16, 5)).astype(np.float32)
    w = to_shift_weights(wf, bits) if op == "ShiftMatMul" else to_adder_weights(wf, 0.25, bits)
    y = execute_onnx(_mm_model(op, x.shape, w, bits), {"x": x})["y"]
    xt, wt = torch.from_numpy(x).double(), torch.from_numpy(w).double()
    if op == "ShiftMatMul":
        ref = (xt @ wt).float().numpy()
    else:
        ref = -torch.cdist(xt.reshape(-1, 16), wt.T, p=1).reshape(*xshape[:-1], 5)
        ref = ref.float().numpy()
    np.testing.assert_array_equal(y, ref)


def test_shift_rejects_non_power_of_two_weights():
    w = np.full((2, 2, 1, 1), 0.3, np.float32)
    m = _conv_model("ShiftConv", (1, 2, 3, 3), w, None, 1, 1, 0, 1, 4)
    with pytest.raises(HybridOpError, match="layer"):
        execute_onnx(m, {"x": np.zeros((1, 2, 3, 3), np.float32)})


def test_verify_node_rejects_bad_attributes():
    node = helper.make_node("AdderConv", ["x", "w"], ["y"], domain=DOMAIN, name="bad",
                            kernel_shape=[3], weight_bits=4)
    with pytest.raises(HybridOpError, match="bad"):
        getCustomOp(node).verify_node()
    node = helper.make_node("ShiftMatMul", ["x", "w"], ["y"], domain=DOMAIN, name="b2",
                            weight_bits=1)
    with pytest.raises(HybridOpError):
        getCustomOp(node).verify_node()
    ok = helper.make_node("ShiftConv", ["x", "w"], ["y"], domain=DOMAIN, name="ok",
                          kernel_shape=[3, 3], weight_bits=4)
    getCustomOp(ok).verify_node()


@pytest.mark.parametrize("op", ["ShiftConv", "AdderConv"])
@pytest.mark.parametrize("stride", [1, 2])
def test_shape_and_datatype_inference(op, stride):
    w = np.ones((6, 3, 3, 3), np.float32)
    m = _conv_model(op, (1, 3, 8, 8), w, None, 3, stride, 1, 1, 4)
    m.set_tensor_datatype("x", DataType["INT4"])
    m = m.transform(InferShapes()).transform(InferDataTypes())
    oh = 8 if stride == 1 else 4
    assert m.get_tensor_shape("y") == [1, 6, oh, oh]
    dt = m.get_tensor_datatype("y")
    assert dt.is_integer()
    # worst case: 27 taps of |x - w| up to 9 (adder) or |x * w| up to 8 (shift)
    bound = 27 * (9 if op == "AdderConv" else 8)
    assert dt.min() <= -bound
    assert [n.op_type for n in m.graph.node] == [op]
    onnx.checker.check_model(m.model)


def test_datatype_float_for_fractional_weights():
    w = np.full((2, 3, 1, 1), 0.5, np.float32)
    m = _conv_model("ShiftConv", (1, 3, 4, 4), w, None, 1, 1, 0, 1, 4)
    m.set_tensor_datatype("x", DataType["INT4"])
    m = m.transform(InferShapes()).transform(InferDataTypes())
    assert m.get_tensor_datatype("y") == DataType["FLOAT32"]
