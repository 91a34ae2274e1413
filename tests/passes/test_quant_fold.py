"""SetWeightBits / SetActivationBits / FoldBatchNormIntoConv / FoldWeightQuantToFloat."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from helpers.graphs import QD, quant_node
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from nashc.passes.fold_weights import FoldBatchNormIntoConv, FoldWeightQuantToFloat
from nashc.passes.hybrid import ConvertConvToShift
from nashc.passes.quant import SetActivationBits, SetWeightBits
from nashc.runtime.golden import compare_levels, run_onnxruntime, run_qonnx
from nashc.runtime.ops import is_shift_weights


def _q(name, inp, out, scale, bits, inits):
    return quant_node(name, inp, out, scale, bits, inits, narrow=1)


def _net(k=3, bits=4, bn=True):
    rng = np.random.default_rng(k)
    inits: list = []
    nodes = [_q("qa", "x", "xq", 0.25, bits, inits),
             _q("qw", "wf", "wq", 2.0 ** -(bits - 1), bits, inits)]
    inits.append(numpy_helper.from_array(rng.normal(size=(4, 3, k, k)).astype(np.float32), "wf"))
    nodes.append(helper.make_node("Conv", ["xq", "wq"], ["c"], name="conv", kernel_shape=[k, k],
                                  pads=[k // 2] * 4))
    t = "c"
    if bn:
        for n, v in (("g", rng.uniform(0.5, 2, 4)), ("be", rng.normal(size=4)),
                     ("mu", rng.normal(size=4)), ("var", rng.uniform(0.5, 2, 4))):
            inits.append(numpy_helper.from_array(v.astype(np.float32), n))
        nodes.append(helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"],
                                      ["bn"], name="bn"))
        t = "bn"
    nodes.append(_q("qo", t, "y", 0.5, bits, inits))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
                          initializer=inits)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                           helper.make_opsetid(QD, 1)]))


def _x(seed=0):
    return np.random.default_rng(seed).normal(size=(1, 3, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("old,new", [(4, 2), (4, 8), (8, 4)])
def test_set_weight_bits_keeps_range(old, new):
    m = _net(bits=old)
    s_old = float(m.get_initializer("qw_s"))
    m, _ = SetWeightBits("conv", new).apply(m)
    q = m.find_producer("wq")
    assert int(m.get_initializer(q.input[3])) == new
    # narrow signed: max_int = 2^(b-1)-1; range max_int * scale kept
    s_new = float(m.get_initializer(q.input[1]))
    assert s_new * (2 ** (new - 1) - 1) == pytest.approx(s_old * (2 ** (old - 1) - 1))
    wq = run_qonnx(m, {"x": _x()})  # runs
    assert wq["y"].shape == (1, 4, 6, 6)
    vals = np.unique(np.round(m.get_initializer("wf") / s_new))
    assert len(vals) > 2
    onnx.checker.check_model(m.model)
    assert compare_levels(m).ok
    meta = json.loads(m.get_metadata_prop("nashc.SetWeightBits"))
    assert meta == [{"node": "qw", "from_bits": old, "to_bits": new}]
    m2, _ = SetWeightBits("conv", new).apply(m)  # idempotent
    assert json.loads(m2.get_metadata_prop("nashc.SetWeightBits")) == meta


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_set_weight_bits_on_shift_layer(bits):
    m, _ = ConvertConvToShift("conv").apply(_net(bits=4))
    m, _ = SetWeightBits("conv", bits).apply(m)
    node = next(n for n in m.graph.node if n.name == "conv")
    assert next(a.i for a in node.attribute if a.name == "weight_bits") == bits
    assert is_shift_weights(m.get_initializer(node.input[1]), bits)
    assert compare_levels(m).ok


def test_set_activation_bits_through_batchnorm():
    m = _net(bits=4)
    m, _ = SetActivationBits("conv", 2).apply(m)
    q = next(n for n in m.graph.node if n.name == "qo")
    assert int(m.get_initializer(q.input[3])) == 2
    y = run_onnxruntime(m, {"x": _x()})["y"] / float(m.get_initializer(q.input[1]))
    assert set(np.unique(y)) <= {-1.0, 0.0, 1.0}
    assert compare_levels(m).ok


@pytest.mark.parametrize("k", [1, 3])
def test_fold_quant_then_batchnorm(k):
    m = _net(k=k)
    x = _x(1)
    ref = run_onnxruntime(m, {"x": x})["y"]
    m, _ = FoldWeightQuantToFloat().apply(m)
    assert [n.op_type for n in m.graph.node] == ["Quant", "Conv", "BatchNormalization", "Quant"]
    assert m.get_tensor_datatype("wq") == DataType["SCALEDINT<4>"]
    m, _ = FoldBatchNormIntoConv().apply(m)
    assert [n.op_type for n in m.graph.node] == ["Quant", "Conv", "Quant"]
    conv = m.graph.node[1]
    assert len(conv.input) == 3 and conv.output[0] == "bn"
    onnx.checker.check_model(m.model)
    got = run_onnxruntime(m, {"x": x})["y"]
    # BN folded into float weights: equal up to float rounding before the output Quant
    assert np.mean(got == ref) > 0.95 and np.max(np.abs(got - ref)) <= 0.5
    m2, _ = FoldBatchNormIntoConv().apply(m)
    assert [n.op_type for n in m2.graph.node] == ["Quant", "Conv", "Quant"]


def test_fold_batchnorm_skips_quantized_weights():
    m, _ = FoldBatchNormIntoConv().apply(_net())
    assert "BatchNormalization" in [n.op_type for n in m.graph.node]
    assert m.get_metadata_prop("nashc.FoldBatchNormIntoConv") is None
