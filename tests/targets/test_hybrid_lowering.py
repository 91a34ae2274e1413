"""Lowering of hybrid graphs through FINN and the level-3 golden check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from nashc.targets.hybrid_lowering import (
    MoveScalarMulPastAdderMatMul,
    MoveScalarMulPastShiftMatMul,
    hybrid_extra_steps,
)
from nashc.targets.verify import verify_dataflow

PART_BOARD = "u250"


def export_brevitas(module, shape, path: Path) -> Path:  # type: ignore[no-untyped-def]
    import torch
    from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup

    module.eval()
    export_qonnx(module, torch.randn(*shape), export_path=str(path))
    cleanup(str(path), out_file=str(path))
    return path


def _mul_then(op: str, w: np.ndarray, s: float) -> ModelWrapper:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, w.shape[1]])
    nodes = [helper.make_node("Mul", ["x", "s"], ["xs"], name="Mul_0"),
             helper.make_node(op, ["xs", "w"], ["y"], name="H_0",
                              domain="nashc.runtime.ops", weight_bits=4)]
    m = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [x], [y])))
    m.set_initializer("s", np.asarray(s, np.float32))
    m.set_initializer("w", w.astype(np.float32))
    m.set_tensor_datatype("x", DataType["UINT4"])
    return m


@pytest.mark.parametrize("s", [0.25, -0.5])
def test_move_scalar_mul_past_adder(s):
    from nashc.runtime.golden import random_inputs, run_qonnx

    w = np.array([[1, -2, 3], [0, 2, -1]], np.float64) * abs(s)
    m = _mul_then("AdderMatMul", w, s)
    inp = random_inputs(m, 0)
    ref = run_qonnx(m, inp)["y"]
    m2 = m.transform(MoveScalarMulPastAdderMatMul())
    assert [n.op_type for n in m2.graph.node] == ["AdderMatMul", "Mul"]
    w2 = m2.get_initializer(m2.graph.node[0].input[1])
    assert np.all(w2 == np.round(w2))
    np.testing.assert_array_equal(run_qonnx(m2, inp)["y"], ref)


def test_move_scalar_mul_past_adder_needs_integer_weights():
    w = np.array([[0.3, -0.2], [0.1, 0.7]])
    m = _mul_then("AdderMatMul", w, 0.25)
    m2 = m.transform(MoveScalarMulPastAdderMatMul())
    assert [n.op_type for n in m2.graph.node] == ["Mul", "AdderMatMul"]


@pytest.mark.parametrize("op, move", [("AdderMatMul", MoveScalarMulPastAdderMatMul),
                                      ("ShiftMatMul", MoveScalarMulPastShiftMatMul)])
def test_move_scalar_mul_leaves_a_computed_bias_alone(op, move):
    """A bias that is not an initializer cannot be rescaled: the node, its weights and
    the Mul stay as they were (the weights were divided before the check, the outputs off
    by the scale)."""
    from nashc.runtime.golden import random_inputs, run_qonnx

    s = 0.25
    w = np.array([[1, -2, 4], [0, 2, -1]], np.float64) * s  # integers / s, powers of two
    m = _mul_then(op, w, s)
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [w.shape[1]])
    m.graph.input.append(b)
    m.graph.node[1].input.append("b")
    inp = random_inputs(m, 0)
    ref = run_qonnx(m, inp)["y"]
    m2 = m.transform(move())
    assert [n.op_type for n in m2.graph.node] == ["Mul", op]
    np.testing.assert_array_equal(m2.get_initializer("w"), w.astype(np.float32))
    np.testing.assert_array_equal(run_qonnx(m2, inp)["y"], ref)


def test_move_scalar_mul_past_shift():
    from nashc.runtime.golden import random_inputs, run_qonnx

    w = np.array([[0.5, -0.25], [1.0, 0.0]])
    m = _mul_then("ShiftMatMul", w, 0.125)
    inp = random_inputs(m, 0)
    ref = run_qonnx(m, inp)["y"]
    m2 = m.transform(MoveScalarMulPastShiftMatMul())
    assert [n.op_type for n in m2.graph.node] == ["ShiftMatMul", "Mul"]
    np.testing.assert_array_equal(run_qonnx(m2, inp)["y"], ref)


def small_conv_net():  # type: ignore[no-untyped-def]
    """QuantIdentity -> conv-BN-ReLU -> conv-BN-ReLU -> maxpool -> flatten -> linear, with
    random BN statistics (so thresholds are not exactly on rounding ties)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv0 = qnn.QuantConv2d(3, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn0 = nn.BatchNorm2d(8)
            self.relu0 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn1 = nn.BatchNorm2d(8)
            self.relu1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.fc = qnn.QuantLinear(8 * 4 * 4, 10, bias=False, weight_bit_width=4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self.relu0(self.bn0(self.conv0(self.inp(x))))
            x = self.relu1(self.bn1(self.conv1(x)))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    net = Small()
    for bn in (net.bn0, net.bn1):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_brevitas(small_conv_net(), (1, 3, 8, 8),
                           tmp_path_factory.mktemp("small") / "small.onnx")


def _load(path: Path) -> ModelWrapper:
    from nashc.runtime.golden import load_model

    return load_model(path)


def _lower(model: ModelWrapper):  # type: ignore[no-untyped-def]
    from nashc.targets.boards import get_board
    from nashc.targets.lower import lower_to_hw

    return lower_to_hw(model, get_board(PART_BOARD), 200.0, hybrid_extra_steps())


def _check_hw_only(lowered, expect: str | None) -> None:  # type: ignore[no-untyped-def]
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node

    ops = [n.op_type for n in lowered.dataflow.graph.node]
    assert all(is_hls_node(n) or is_rtl_node(n) for n in lowered.dataflow.graph.node), ops
    assert not any(n.domain == "nashc.runtime.ops" for n in lowered.parent.graph.node)
    if expect is not None:
        assert expect in ops, ops


def _corrupt_and_fail(level2: ModelWrapper, lowered, op: str) -> None:  # type: ignore
    """The check can fail: flipping the hybrid layer's weights breaks bit-exactness."""
    node = next(n for n in lowered.dataflow.graph.node if n.op_type == op)
    w = lowered.dataflow.get_initializer(node.input[1])
    lowered.dataflow.set_initializer(node.input[1], -w)
    _, ok = verify_dataflow(level2, lowered, seed=0)
    lowered.dataflow.set_initializer(node.input[1], w)
    assert not ok


def _calibrate_bn(model: ModelWrapper, layer: str) -> None:
    """Sets the BatchNormalization after `layer` to the statistics of its output on
    random inputs, as training would (an untrained adder layer's -sum|x - w| is far
    below the ReLU's range, which would make every later activation 0)."""
    from qonnx.core.onnx_exec import execute_onnx

    from nashc.runtime.golden import random_inputs

    node = next(n for n in model.graph.node if n.name == layer)
    bn = model.find_consumer(node.output[0])
    assert bn.op_type == "BatchNormalization"
    ys = []
    for seed in range(4):
        ctx = execute_onnx(model, random_inputs(model, seed), return_full_exec_context=True)
        ys.append(ctx[node.output[0]])
    y = np.concatenate(ys)
    axes = tuple(i for i in range(y.ndim) if i != 1)
    model.set_initializer(bn.input[3], y.mean(axis=axes).astype(np.float32))
    model.set_initializer(bn.input[4], y.var(axis=axes).astype(np.float32) + 1e-3)


@pytest.mark.finn
@pytest.mark.parametrize("kind", ["adder", "shift"])
def test_small_conv_net_hybrid(small_onnx, kind):
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    from nashc.passes.hybrid import ConvertConvToAdder, ConvertConvToShift

    model = _load(small_onnx)
    conv1 = [n for n in model.graph.node if n.op_type == "Conv"][1].name
    pas = ConvertConvToAdder if kind == "adder" else ConvertConvToShift
    model = model.transform(pas(conv1))
    _calibrate_bn(model, conv1)
    op = "AdderMVAU_rtl" if kind == "adder" else "ShiftMVAU_rtl"
    lowered = _lower(model)
    _check_hw_only(lowered, op)
    for seed in (0, 1):
        diff, ok = verify_dataflow(model, lowered, seed=seed)
        assert ok, diff
    _corrupt_and_fail(model, lowered, op)
    hyb_node = next(n for n in lowered.dataflow.graph.node if n.op_type == op)
    from qonnx.custom_op.registry import getCustomOp

    assert getCustomOp(hyb_node).get_nodeattr("accDataType") != "INT32"
    res = res_estimation(lowered.dataflow, lowered.fpga_part)
    hyb = [n.name for n in lowered.dataflow.graph.node if n.op_type == op]
    assert res[hyb[0]]["DSP"] == 0 and res[hyb[0]]["LUT"] > 300
    cycles = lowered.dataflow.analysis(exp_cycles_per_layer)
    assert cycles[hyb[0]] == 8 * 8 * 72 * 8  # OFM pixels * MW * MH at PE = SIMD = 1


@pytest.mark.finn
def test_tfc_plain_level3(tfc_onnx):
    model = _load(tfc_onnx)
    lowered = _lower(model)
    _check_hw_only(lowered, None)
    diff, ok = verify_dataflow(model, lowered, seed=0)
    assert ok, diff
    _corrupt_and_fail(model, lowered, lowered.dataflow.graph.node[1].op_type
                      if lowered.dataflow.graph.node[1].op_type.startswith("MVAU")
                      else next(n.op_type for n in lowered.dataflow.graph.node
                                if n.op_type.startswith("MVAU")))


@pytest.mark.finn
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["adder", "shift"])
def test_tfc_hybrid_level3(tfc_onnx, kind):
    from nashc.passes.hybrid import ConvertGemmToAdder, ConvertGemmToShift

    model = _load(tfc_onnx)
    gemms = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    pas = ConvertGemmToAdder if kind == "adder" else ConvertGemmToShift
    model = model.transform(pas(",".join(gemms[1:-1])))
    for g in gemms[1:-1]:
        _calibrate_bn(model, g)
    op = "AdderMVAU_rtl" if kind == "adder" else "ShiftMVAU_rtl"
    lowered = _lower(model)
    _check_hw_only(lowered, op)
    assert [n.op_type for n in lowered.dataflow.graph.node].count(op) == len(gemms) - 2
    diff, ok = verify_dataflow(model, lowered, seed=0)
    assert ok, diff
    _corrupt_and_fail(model, lowered, op)


def _lower_declared(source: str, choices: dict, tmp_path):  # type: ignore[no-untyped-def]
    """Builds the network of a `.nash` source with `choices` (seed 0, BatchNorm
    calibrated on random 8-bit images), exports it and lowers it for a u250 at 200 MHz:
    (QONNX model, lowered model)."""
    import torch

    from nashc.dsl import parse
    from nashc.dsl.check import check_program
    from nashc.runtime.build import build_module, calibrate_batchnorm, export_qonnx_model
    from nashc.targets.boards import get_board
    from nashc.targets.hybrid_lowering import hybrid_extra_steps
    from nashc.targets.lower import lower_to_hw

    net = check_program(parse(source, "t.nash")).network
    torch.manual_seed(0)
    module = build_module(net, choices)
    calibrate_batchnorm(module, torch.randint(0, 256, (16, *net.input_shape)).float())
    model = export_qonnx_model(module, net, tmp_path / "t.onnx")
    return model, lower_to_hw(model, get_board("u250"), 200.0, hybrid_extra_steps())


def test_fc_only_network_with_a_hybrid_hidden_layer_lowers(tmp_path):
    """A hybrid fc layer must not trigger the conv layout pass (it stranded a Transpose
    in front of the first MVAU of fc networks)."""
    from nashc.runtime.build import LayerChoice
    from nashc.targets.verify import verify_dataflow

    model, lowered = _lower_declared(
        "network t {\n input 1x8x8 uint8\n weights int4\n activations uint4\n"
        " fc fc0 out 16\n fc fc1 out 16\n fc head out 10 weights int8\n}\n",
        {"fc1": LayerChoice(op="shift")}, tmp_path)
    assert "ShiftMVAU_rtl" in {n.op_type for n in lowered.dataflow.graph.node}
    _, ok = verify_dataflow(model, lowered, 0)
    assert ok


def test_conv_to_fc_flatten_is_absorbed_into_a_hybrid_fc_unit(tmp_path):
    """FINN folds the NHWC Transpose + Flatten before the first fc layer into its weights
    only for op types starting with MVAU; nashc's units must get the same treatment."""
    from nashc.runtime.build import LayerChoice
    from nashc.targets.verify import verify_dataflow

    model, lowered = _lower_declared(
        "network c {\n input 1x8x8 uint8\n weights int4\n activations uint4\n"
        " conv c0 out 8 kernel 3 pad 0\n conv c1 out 8 kernel 3 pad 0\n"
        " fc fc0 out 16\n fc head out 10 weights int8\n}\n",
        {"fc0": LayerChoice(op="adder")}, tmp_path)
    ops = {n.op_type for n in lowered.dataflow.graph.node}
    assert "AdderMVAU_rtl" in ops and not any(o.startswith("Shuffle") for o in ops)
    _, ok = verify_dataflow(model, lowered, 0)
    assert ok
