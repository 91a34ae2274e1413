"""Hybrid swaps on inline QONNX graphs and Brevitas exports (tiny net, TFC, CNV)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from helpers.graphs import QD, quant_node
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from nashc.passes.graph import PassError
from nashc.passes.hybrid import (
    ConvertConvToAdder,
    ConvertConvToShift,
    ConvertGemmToAdder,
    ConvertGemmToShift,
)
from nashc.runtime.golden import compare_levels, to_standard_onnx
from nashc.runtime.ops import DOMAIN, is_shift_weights

SCALE = 0.125


def _ort(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    std = to_standard_onnx(model)
    onnx.checker.check_model(std.model)
    sess = ort.InferenceSession(std.model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _q(name, inp, out, scale, bits, inits):
    return quant_node(name, inp, out, scale, bits, inits, narrow=0)


def _net(kind: str, k: int, stride: int, bits: int, bias: bool, wquant: bool = True):
    """x -> Quant(act) -> layer(W [<- Quant]) -> y."""
    rng = np.random.default_rng(k * 7 + stride + bits)
    inits: list = []
    nodes = [_q("qa", "x", "xq", SCALE, bits, inits)]
    if kind == "conv":
        w = rng.normal(scale=0.4, size=(6, 4, k, k)).astype(np.float32)
        xs, ys = [1, 4, 9, 9], [1, 6, (9 + 2 * (k // 2) - k) // stride + 1] * 1
        ys = [1, 6, ys[2], ys[2]]
    else:
        w = rng.normal(scale=0.4, size=(5, 12)).astype(np.float32)  # Gemm transB=1: (N, K)
        xs, ys = [2, 12], [2, 5]
    inits.append(numpy_helper.from_array(w, "wf"))
    wt = "wf"
    if wquant:
        nodes.append(_q("qw", "wf", "wq", 2.0 ** -(bits - 1), bits, inits))
        wt = "wq"
    ins = ["xq", wt]
    if bias:
        b = rng.normal(size=(ys[1],)).astype(np.float32)
        inits.append(numpy_helper.from_array(b, "bias"))
        ins.append("bias")
    if kind == "conv":
        nodes.append(helper.make_node("Conv", ins, ["y"], name="layer", kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
    else:
        nodes.append(helper.make_node("Gemm", ins, ["y"], name="layer", transB=1, alpha=1.0,
                                      beta=0.5))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)],
                          initializer=inits)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                           helper.make_opsetid(QD, 1)]))


PASSES = {
    ("conv", "shift"): (ConvertConvToShift, "ShiftConv"),
    ("conv", "adder"): (ConvertConvToAdder, "AdderConv"),
    ("fc", "shift"): (ConvertGemmToShift, "ShiftMatMul"),
    ("fc", "adder"): (ConvertGemmToAdder, "AdderMatMul"),
}


def _expected(kind, hybrid, x, w, b, k, stride, bits):
    """Independent torch computation of the converted layer on the quantized input."""
    xq = torch.from_numpy(np.clip(np.round(x / SCALE), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * SCALE).double()
    wt = torch.from_numpy(w).double()
    if kind == "conv":
        if hybrid == "shift":
            y = F.conv2d(xq, wt, padding=k // 2, stride=stride)
        else:
            cols = F.unfold(xq, k, padding=k // 2, stride=stride)  # 1, C*k*k, L
            y = -(cols[:, None] - wt.reshape(wt.shape[0], -1, 1)[None]).abs().sum(2)
            oh = (xq.shape[2] + 2 * (k // 2) - k) // stride + 1
            y = y.reshape(1, wt.shape[0], oh, oh)
        if b is not None:
            y = y + torch.from_numpy(b).double().view(1, -1, 1, 1)
    else:
        y = xq @ wt if hybrid == "shift" else -torch.cdist(xq, wt.T, p=1)
        if b is not None:
            y = y + 0.5 * torch.from_numpy(b).double()
    return y.float().numpy()


GEOMETRY = [("conv", k, s) for k in (1, 3, 5) for s in (1, 2)] + [("fc", 1, 1)]


@pytest.mark.parametrize("kind,k,stride", GEOMETRY)
@pytest.mark.parametrize("hybrid", ["shift", "adder"])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("bias", [False, True])
def test_swap_inline(kind, hybrid, k, stride, bits, bias):
    model = _net(kind, k, stride, bits, bias)
    P, op = PASSES[(kind, hybrid)]
    model, changed = P("lay*").apply(model)
    ops = [n.op_type for n in model.graph.node]
    tail = [op] + (["Add"] if kind == "fc" and bias else [])
    assert ops == ["Quant"] + tail  # weight Quant folded and removed
    hyb = next(n for n in model.graph.node if n.op_type == op)
    assert hyb.name == "layer" and hyb.domain == DOMAIN
    assert model.graph.node[-1].output[0] == "y"
    w = model.get_initializer(hyb.input[1])
    bits_attr = next(a.i for a in hyb.attribute if a.name == "weight_bits")
    assert bits_attr == bits
    if hybrid == "shift":
        assert is_shift_weights(w, bits)
    else:
        q = w / SCALE  # on the input grid
        np.testing.assert_array_equal(q, np.round(q))
    onnx.checker.check_model(model.model)
    meta = json.loads(model.get_metadata_prop(f"nashc.{P.__name__}"))
    assert meta[0]["node"] == "layer" and meta[0]["to"] == op
    if hybrid == "adder":
        assert meta[0]["grid"] == "input" and meta[0]["scale"] == SCALE
    rng = np.random.default_rng(1)
    x = rng.normal(size=[d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
    x = x.astype(np.float32)
    b = model.get_initializer("bias") if bias else None
    got = _ort(model, x)
    np.testing.assert_array_equal(got, _expected(kind, hybrid, x, w, b, k, stride, bits))
    r = compare_levels(model)
    assert r.ok, r.to_json()
    # idempotent: nothing left to convert, metadata unchanged
    model2, _ = P("lay*").apply(model)
    assert [n.op_type for n in model2.graph.node] == ops
    assert json.loads(model2.get_metadata_prop(f"nashc.{P.__name__}")) == meta


def test_swap_plain_initializer_and_matmul():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [3, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
                          initializer=[numpy_helper.from_array(w, "w")])
    m = ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    m, _ = ConvertGemmToAdder("fc1", bits=4).apply(m)
    assert [n.op_type for n in m.graph.node] == ["AdderMatMul"]
    meta = json.loads(m.get_metadata_prop("nashc.ConvertGemmToAdder"))
    assert meta[0]["grid"] == "weights" and meta[0]["weight_bits"] == 4  # float input
    onnx.checker.check_model(m.model)
    # weights on their own (non power-of-two) grid and a float input: not bit-exact, only
    # up to float32 accumulation order -- level 2 honestly reports the difference
    r = compare_levels(m)
    assert 0 <= r.levels[0].max_abs_diff < 1e-5


def test_selector_errors_and_filters():
    m = _net("conv", 3, 1, 4, False)
    with pytest.raises(PassError, match="nope"):
        ConvertConvToShift("nope").apply(m)
    # matches a node name but of another op type: nothing changes
    m2, _ = ConvertGemmToShift("layer").apply(m)
    assert [n.op_type for n in m2.graph.node] == ["Quant", "Quant", "Conv"]
    assert m2.get_metadata_prop("nashc.ConvertGemmToShift") is None


def test_unsupported_weights_name_the_node():
    m = _net("conv", 3, 1, 4, False)
    # weight computed at run time from the input: not a constant
    m.graph.node[-1].input[1] = "xq"
    with pytest.raises(PassError, match="'layer' \\(Conv\\)"):
        ConvertConvToShift("layer").apply(m)


# -- Brevitas exports -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_brevitas(tmp_path_factory, brevitas_export):
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.c1 = QuantConv2d(3, 8, 3, padding=1, weight_bit_width=4)
            self.r1 = QuantReLU(bit_width=4, return_quant_tensor=True)
            self.c2 = QuantConv2d(8, 8, 3, stride=2, padding=1, weight_bit_width=4)
            self.r2 = QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = QuantLinear(8 * 4 * 4, 10, bias=True, weight_bit_width=4)

        def forward(self, x):
            x = self.r2(self.c2(self.r1(self.c1(self.inp(x)))))
            return self.fc(x.flatten(1))

    net = Net()
    return net, brevitas_export(net, (1, 3, 8, 8), tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("P,op", [(ConvertConvToShift, "ShiftConv"),
                                  (ConvertConvToAdder, "AdderConv")])
def test_tiny_brevitas(tiny_brevitas, P, op):
    net, model = tiny_brevitas
    model = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    r0 = compare_levels(model, torch_module=net)
    assert r0.ok, r0.to_json()
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2
    model, _ = P(convs[1]).apply(model)
    assert [n.op_type for n in model.graph.node].count(op) == 1
    assert [n.op_type for n in model.graph.node].count("Conv") == 1
    if op == "AdderConv":
        meta = json.loads(model.get_metadata_prop("nashc.ConvertConvToAdder"))
        assert meta[0]["grid"] == "input"
    onnx.checker.check_model(model.model)
    r = compare_levels(model)
    assert r.ok, r.to_json()


@pytest.mark.parametrize("P,op", [(ConvertGemmToShift, "ShiftMatMul"),
                                  (ConvertGemmToAdder, "AdderMatMul")])
def test_tfc_hidden_layers(tfc_factory, P, op):
    model = tfc_factory()
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 4
    model, _ = P(",".join(gemms[1:-1])).apply(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count(op) == 2 and ops.count("Gemm") == 2
    onnx.checker.check_model(model.model)
    r = compare_levels(model, seed=1)
    assert r.ok, r.to_json()
    model2, _ = P(",".join(gemms[1:-1])).apply(model)
    assert [n.op_type for n in model2.graph.node] == ops


@pytest.mark.parametrize("P,op", [(ConvertConvToShift, "ShiftConv"),
                                  (ConvertConvToAdder, "AdderConv")])
def test_cnv_middle_convs(cnv_factory, P, op):
    model = cnv_factory()
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 6
    model, _ = P(",".join(convs[1:-1])).apply(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count(op) == 4 and ops.count("Conv") == 2
    onnx.checker.check_model(model.model)
    r = compare_levels(model, seed=2)
    assert r.ok, r.to_json()
