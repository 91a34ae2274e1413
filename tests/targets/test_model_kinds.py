"""The model kinds FINN users bring (issue 12, kinds 1-7), each built here with Brevitas'
`export_qonnx` or written in the language, lowered through FINN and verified through
level 3: integer tensors bit-exact, float tails within their tolerance, labels equal.

The CI-run cases are small; larger members of each family are marked slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import brevitas_models as bm
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from nashc.runtime.golden import compare_levels, load_model
from nashc.targets.boards import get_board
from nashc.targets.hybrid_lowering import hybrid_extra_steps
from nashc.targets.lower import (
    BrokenGraphError,
    MoveLinearPastEltwiseAddKeepForks,
    MoveTransposeToGraphEnd,
    UnsupportedNodesError,
    _apply,
    dangling_inputs,
    lower_to_hw,
)
from nashc.targets.verify import verify_level3

pytestmark = pytest.mark.finn
U250 = get_board("u250")


def _lower(path: Path):  # type: ignore[no-untyped-def]
    return lower_to_hw(load_model(path), U250, 200.0, hybrid_extra_steps())


def _hw_ops(lowered) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.op_type for n in lowered.dataflow.graph.node]


def _verified(path: Path, seeds=(0, 1)):  # type: ignore[no-untyped-def]
    """Lowers the model at `path` and checks levels 2 and 3 on `seeds`; returns the
    lowered model and the level-3 results."""
    lowered = _lower(path)
    results = []
    for seed in seeds:
        level2 = compare_levels(load_model(path), seed=seed)
        assert level2.ok, level2.dumps()
        res = verify_level3(load_model(path), lowered, seed)
        assert res.ok, res
        results.append(res)
    return lowered, results


def _joins(lowered) -> int:  # type: ignore[no-untyped-def]
    """ElementwiseAdd layers adding two streams (residual adds, not biases)."""
    df = lowered.dataflow
    return sum(1 for n in df.graph.node if n.op_type.startswith("ElementwiseAdd")
               and all(df.get_initializer(i) is None for i in n.input))


def _nash_model(source: str, tmp_path: Path, seed: int = 0) -> Path:
    """Builds the network of a `.nash` source (seed `seed`, BatchNorm calibrated on
    random 8-bit images) and exports it."""
    import torch

    from nashc.dsl import parse
    from nashc.dsl.check import check_program
    from nashc.runtime.build import build_module, calibrate_batchnorm, export_qonnx_model

    net = check_program(parse(source, "t.nash")).network
    torch.manual_seed(seed)
    module = build_module(net, {})
    gen = torch.Generator().manual_seed(seed)
    calibrate_batchnorm(module, torch.randint(0, 256, (32, *net.input_shape),
                                              generator=gen).float())
    path = tmp_path / f"{net.name}.onnx"
    export_qonnx_model(module, net, path)
    return path


# --- 1. binarized networks ------------------------------------------------------------


@pytest.mark.parametrize("name", ["TFC_1W1A", pytest.param("TFC_1W2A", marks=pytest.mark.slow)])
def test_binarized_tfc_is_bit_exact_on_codes(name, tmp_path):
    """TFC-1w1a ends in XNOR-popcount and a float scale/bias (TensorNorm): the popcounts
    are compared bit-exactly, the float output within its tolerance (the 3.8e-6 that was
    reported as a mismatch is float rounding of the tail)."""
    path = bm.export(bm.bnn_pynq(name), (1, 1, 28, 28), tmp_path / "tfc.onnx")
    lowered, results = _verified(path)
    assert _hw_ops(lowered).count("MVAU_hls") == 4
    for res in results:
        assert res.comparison == "integer codes + tolerance"
        codes, out = res.tensors
        assert codes.kind == "integer codes" and codes.max_abs_diff == 0.0
        assert out.kind == "tolerance" and 0.0 <= out.max_abs_diff <= out.tolerance
        assert out.tolerance < 1e-3  # a few float32 ulps of values ~10, not a loose check


BNN_CNV = """
network bcnv {
  input 3x32x32 uint8
  weights bipolar
  activations bipolar
  conv c0 out 16 kernel 3 pad 0 weights int8
  conv c1 out 16 kernel 3 pad 0
  pool p0 max kernel 2
  conv c2 out 32 kernel 3 pad 0
  conv c3 out 32 kernel 3 pad 0
  pool p1 max kernel 2
  conv c4 out 32 kernel 3 pad 0
  fc f0 out 64
  fc f1 out 64
  fc f2 out 10
}
"""


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_binarized_cnv_in_the_language(seed, tmp_path):
    """A binarized CNV written in the language (8-bit first conv, bipolar elsewhere,
    unpadded 3x3 convs, 2x2 max pools, 3 fc): XNOR layers, bit-exact codes."""
    path = _nash_model(BNN_CNV, tmp_path, seed)
    lowered, results = _verified(path, seeds=(0, 1, 2))
    ops = _hw_ops(lowered)
    assert ops.count("MVAU_hls") + ops.count("MVAU_rtl") == 8
    assert sum(1 for n in lowered.dataflow.graph.node
               if n.op_type.startswith("MVAU") and
               any(a.name == "binaryXnorMode" and a.i == 1 for a in n.attribute)) == 7
    assert all("integer codes" in r.comparison for r in results)


def test_a_wrong_threshold_is_a_level3_mismatch(tmp_path):
    """The comparison is not loose: one threshold moved by one step in the hardware
    graph changes an integer code and fails level 3."""
    path = bm.export(bm.fc_tail_net("none"), (1, 1, 8, 8), tmp_path / "fc.onnx")
    lowered = _lower(path)
    mvau = next(n for n in lowered.dataflow.graph.node if n.op_type.startswith("MVAU")
                and len(n.input) > 2)
    thr = lowered.dataflow.get_initializer(mvau.input[2]).copy()
    assert verify_level3(load_model(path), lowered, 0).ok
    found = False
    for seed in range(4):
        for c in range(thr.shape[0]):
            bad = thr.copy()
            bad[c] += 1
            lowered.dataflow.set_initializer(mvau.input[2], bad)
            res = verify_level3(load_model(path), lowered, seed)
            if not res.ok:
                codes = res.tensors[0]
                assert codes.kind == "integer codes" and codes.max_abs_diff >= 1
                found = True
                break
        if found:
            break
    assert found


# --- 2. comparisons ---------------------------------------------------------------------


def _float_tail_graph(tail: str) -> ModelWrapper:
    """Quant(x) -> MatMul -> {Softmax | ArgMax | GlobalAveragePool-like ReduceMean | Mul}."""
    from helpers.graphs import QD

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], domain=QD, name="q",
                              signed=1, narrow=0, rounding_mode="ROUND"),
             helper.make_node("MatMul", ["xq", "w"], ["h"], name="mm")]
    if tail == "softmax":
        nodes.append(helper.make_node("Softmax", ["h"], ["y"], axis=1, name="sm"))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    elif tail == "argmax":
        nodes.append(helper.make_node("ArgMax", ["h"], ["y"], axis=1, keepdims=0, name="am"))
        y = helper.make_tensor_value_info("y", TensorProto.INT64, [1])
    elif tail == "mean":
        nodes.append(helper.make_node("ReduceMean", ["h"], ["y"], axes=[1], keepdims=1,
                                      name="gap"))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    else:
        nodes.append(helper.make_node("Mul", ["h", "c"], ["y"], name="scale"))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    rng = np.random.default_rng(0)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, v.shape, v.flatten()) for n, v in (
        ("s", np.array(0.0371, np.float32)), ("z", np.array(0.0, np.float32)),
        ("b", np.array(8.0, np.float32)), ("c", np.array(0.173, np.float32)),
        ("w", rng.normal(size=(16, 10)).astype(np.float32)))]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                                           helper.make_opsetid(QD, 1)]))


@pytest.mark.parametrize("tail,kind", [("softmax", "tolerance"), ("argmax", "labels"),
                                       ("mean", "tolerance"), ("scale", "tolerance")])
def test_level2_compares_by_kind(tail, kind):
    """Level 2: the output by its kind, and the quantized input of the float tail
    bit-exactly; the result says which comparison was used."""
    res = compare_levels(_float_tail_graph(tail), seed=0)
    lv = res.levels[0]
    assert res.ok, res.dumps()
    got = {t.tensor: (t.kind, t.tolerance) for t in lv.tensors}
    assert got["y"][0] == kind and got["xq"] == ("bit-exact", 0.0)
    assert (got["y"][1] > 0) == (kind == "tolerance")
    assert lv.comparison == f"{kind} + bit-exact"
    assert res.to_json()["levels"][0]["tensors"][0]["kind"] == kind


def test_compare_tensor_kinds():
    from nashc.runtime.golden import FLOAT_TOL_ULPS, compare_tensor, float_tolerance

    a = np.array([1.0, -4.0, 2.5], np.float32)
    assert float_tolerance(a) == pytest.approx(FLOAT_TOL_ULPS * 2.0 ** -23 * 4.0)
    assert float_tolerance(np.zeros(3, np.float32)) > 0
    near = a + np.float32(2e-6)
    assert compare_tensor("t", a, near, "tolerance").ok
    assert not compare_tensor("t", a, a + np.float32(1e-4), "tolerance").ok
    assert not compare_tensor("t", a, near, "bit-exact").ok
    assert compare_tensor("t", a, a.copy(), "bit-exact").ok
    labels = np.array([3, 1])
    assert compare_tensor("t", labels, labels.copy(), "labels").ok
    assert not compare_tensor("t", labels, np.array([3, 2]), "labels").ok


@pytest.mark.parametrize("tail", ["none", "softmax", "argmax"])
def test_level3_float_and_label_tails(tail, tmp_path):
    """Logits (integer codes + a float scale), Softmax (float, in FINN's HWSoftmax) and
    ArgMax (labels) outputs: level 3 passes and says which comparison it used."""
    path = bm.export(bm.fc_tail_net(tail), (1, 1, 8, 8), tmp_path / f"{tail}.onnx")
    _, results = _verified(path)
    expected = {"none": "integer codes + tolerance", "softmax": "tolerance",
                "argmax": "labels"}[tail]
    for res in results:
        assert res.comparison == expected, res


# --- 3./4. residual networks --------------------------------------------------------------


def _fork_add_graph() -> ModelWrapper:
    """x -> Mul(c) -> {Conv-like MatMul, Add}; MatMul -> Mul(c) -> Add: the stem scale
    forks to the first block's layer and to the identity shortcut (QuantBasicBlock)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Mul", ["x", "c0"], ["s"], name="stem_scale"),
             helper.make_node("MatMul", ["s", "w"], ["h"], name="conv1"),
             helper.make_node("Mul", ["h", "c1"], ["hs"], name="branch_scale"),
             helper.make_node("Add", ["hs", "s"], ["y"], name="residual_add")]
    rng = np.random.default_rng(1)
    inits = [helper.make_tensor("c0", TensorProto.FLOAT, [], [0.5]),
             helper.make_tensor("c1", TensorProto.FLOAT, [], [0.5]),
             helper.make_tensor("w", TensorProto.FLOAT, [4, 4],
                                rng.normal(size=16).astype(np.float32))]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_finn_move_linear_past_add_disconnects_a_fork_and_is_named():
    """FINN's MoveLinearPastEltwiseAdd deletes the stem Mul that also feeds conv1: the
    connectivity check names the step and the transformation."""
    from finn.transformation.streamline.reorder import MoveLinearPastEltwiseAdd

    with pytest.raises(BrokenGraphError) as info:
        _apply(_fork_add_graph(), MoveLinearPastEltwiseAdd(), "streamline")
    assert "streamline (MoveLinearPastEltwiseAdd)" in str(info.value)
    assert "conv1" in str(info.value)


def test_keep_forks_variant_leaves_a_connected_equal_graph():
    from finn.transformation.streamline.reorder import MoveLinearPastFork

    from nashc.runtime.golden import run_onnxruntime

    model = _fork_add_graph()
    x = {"x": np.random.default_rng(0).normal(size=(1, 4)).astype(np.float32)}
    before = run_onnxruntime(model, x)["y"]
    m = _apply(model, MoveLinearPastEltwiseAddKeepForks(), "t")
    assert [n.op_type for n in m.graph.node].count("Mul") == 2  # fork: left alone
    m = _apply(m, MoveLinearPastFork(), "t")
    m = _apply(m, MoveLinearPastEltwiseAddKeepForks(), "t")
    assert dangling_inputs(m) == []
    assert m.graph.node[-1].op_type == "Mul"  # moved past the add
    import onnx

    onnx.checker.check_model(m.model)
    np.testing.assert_allclose(run_onnxruntime(m, x)["y"], before, rtol=1e-6)


@pytest.mark.parametrize("planes,blocks,wbits,abits", [
    ((8, 16), (1, 1), 4, 4),
    pytest.param((8, 16), (2, 2), 4, 4, marks=pytest.mark.slow),
    pytest.param((8, 8, 16), (1, 1, 1), 2, 2, marks=pytest.mark.slow),
    pytest.param((16, 16), (2, 1), 8, 8, marks=pytest.mark.slow),
])
def test_brevitas_quant_basic_block_resnet(planes, blocks, wbits, abits, tmp_path):
    """brevitas_examples' QuantBasicBlock ResNet (resnet18_4w4a in small form): lowers to
    hardware layers (ElementwiseAdd, DuplicateStreams) and is bit-exact."""
    model = bm.small_resnet(planes, blocks, wbits, abits)
    path = bm.export(model, (1, 3, 8, 8), tmp_path / "resnet.onnx")
    lowered, _ = _verified(path)
    ops = _hw_ops(lowered)
    assert _joins(lowered) == sum(blocks)
    assert any(op.startswith("DuplicateStreams") for op in ops)
    assert not any(op.startswith("Shuffle") for op in ops)


def test_brevitas_resnet_without_input_quantizer(tmp_path):
    """As shipped, QuantResNet has no input quantizer: refused naming the stem conv and
    what to do; with the input annotated UINT8 (as FINN's ResNet-50 flow does) it lowers."""
    model = bm.small_resnet(input_quant=False)
    path = bm.export(model, (1, 3, 8, 8), tmp_path / "float_in.onnx")
    with pytest.raises(UnsupportedNodesError) as info:
        _lower(path)
    assert "Conv_0" in str(info.value)
    annotated = bm.export(model, (1, 3, 8, 8), tmp_path / "u8_in.onnx", input_dtype="UINT8")
    _verified(annotated, seeds=(0,))


RESIDUAL = """
network r {
  input 3x8x8 uint8
  weights int4
  activations uint4
  conv stem out 16 kernel 3
BLOCKS
  pool gap global avg
  fc head out 10 weights int8
}
"""


@pytest.mark.parametrize("n_blocks", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_consecutive_identity_blocks_in_the_language(n_blocks, tmp_path):
    """`block b1 residual out 16` then `block b2 residual out 16`: the layout transposes
    of every block move past its add (no Shuffle left); bit-exact."""
    blocks = "\n".join(f"  block b{i} residual out 16" for i in range(1, n_blocks + 1))
    path = _nash_model(RESIDUAL.replace("BLOCKS", blocks), tmp_path)
    lowered, _ = _verified(path)
    ops = _hw_ops(lowered)
    assert _joins(lowered) == n_blocks
    assert not any(op.startswith("Shuffle") for op in ops)


# --- 5. feature-map outputs -------------------------------------------------------------


def test_move_transpose_to_graph_end_permutes_constants():
    """Transpose -> Mul(per-channel) -> Add(per-channel) -> output becomes Mul -> Add ->
    Transpose with the constants permuted; onnxruntime gives the same output."""
    import onnx

    from nashc.runtime.golden import run_onnxruntime

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3, 4])  # NHWC
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2], name="tr"),
             helper.make_node("Mul", ["t", "m"], ["u"], name="scale"),
             helper.make_node("Add", ["u", "a"], ["y"], name="bias")]
    inits = [helper.make_tensor("m", TensorProto.FLOAT, [1, 4, 1, 1], rng.normal(size=4)),
             helper.make_tensor("a", TensorProto.FLOAT, [4, 1, 1], rng.normal(size=4))]
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [x], [y],
                                                            initializer=inits)))
    feed = {"x": rng.normal(size=(1, 3, 3, 4)).astype(np.float32)}
    before = run_onnxruntime(model, feed)["y"]
    moved = model.transform(MoveTransposeToGraphEnd())
    assert [n.op_type for n in moved.graph.node] == ["Mul", "Add", "Transpose"]
    assert moved.graph.node[-1].output[0] == "y"
    onnx.checker.check_model(moved.model)
    np.testing.assert_allclose(run_onnxruntime(moved, feed)["y"], before, rtol=1e-6)


def test_feature_map_output_in_the_language(tmp_path):
    """Last layer a conv: the final NHWC -> NCHW Transpose stays on the host."""
    src = ("network seg {\n input 3x8x8 uint8\n weights int4\n activations uint4\n"
           " conv c0 out 8 kernel 3\n conv c1 out 8 kernel 3\n"
           " conv head out 4 kernel 1 weights int8\n}\n")
    lowered, results = _verified(_nash_model(src, tmp_path))
    assert not any(op.startswith("Shuffle") for op in _hw_ops(lowered))
    assert lowered.parent.graph.node[-1].op_type == "Transpose"
    assert ("Transpose" in [op for _, op in lowered.host_nodes])
    assert all(r.comparison == "integer codes + tolerance" for r in results)


@pytest.mark.parametrize("per_channel", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_feature_map_output_from_brevitas(per_channel, tmp_path):
    path = bm.export(bm.conv_feature_map_net(per_channel=per_channel), (1, 3, 8, 8),
                     tmp_path / "seg.onnx")
    lowered, _ = _verified(path)
    assert not any(op.startswith("Shuffle") for op in _hw_ops(lowered))
    assert lowered.parent.graph.node[-1].op_type == "Transpose"


# --- 6. 1-D convolutions ----------------------------------------------------------------


@pytest.mark.parametrize("channels,stages,length,wbits,abits", [
    (8, 2, 32, 4, 4),
    pytest.param(16, 3, 128, 2, 2, marks=pytest.mark.slow),
    pytest.param(8, 2, 64, 8, 8, marks=pytest.mark.slow),
])
def test_radioml_style_conv1d(channels, stages, length, wbits, abits, tmp_path):
    """QuantConv1d/BN/ReLU/MaxPool1d stages and an fc head on a 2 x L I/Q input: FINN's
    1-D flow (Change3DTo4DTensors) makes them k x 1 convolutions; bit-exact."""
    model = bm.vgg1d(channels, stages, length, wbits, abits)
    path = bm.export(model, (1, 2, length), tmp_path / "vgg1d.onnx")
    lowered, _ = _verified(path)
    ops = _hw_ops(lowered)
    assert sum(op.startswith("ConvolutionInputGenerator") for op in ops) >= stages
    assert sum(op.startswith("Pool") for op in ops) == stages
    assert not any(op.startswith("Shuffle") for op in ops)
    assert [op for _, op in lowered.host_nodes] == ["Transpose"]


# --- 7. Int32Bias -------------------------------------------------------------------------


@pytest.mark.parametrize("wbits,abits", [(4, 4), pytest.param(8, 2, marks=pytest.mark.slow)])
def test_int32_bias_convolutions(wbits, abits, tmp_path):
    """Brevitas' Int32Bias exports 0-d bias scales; FINN's bias extraction needs (1,)."""
    path = bm.export(bm.int32_bias_net(wbits, abits), (1, 3, 8, 8), tmp_path / "bias.onnx")
    lowered, _ = _verified(path)
    assert sum(op.startswith("MVAU") for op in _hw_ops(lowered)) == 3


# --- found while testing the families ----------------------------------------------------


BNN_MNIST = """
network bmnist {
  input 1x28x28 uint8
  weights bipolar
  activations bipolar
  conv c0 out 16 kernel 3 pad 0 weights int8
  pool p0 max kernel 2
  conv c2 out 32 kernel 3 pad 0
  pool p1 max kernel 3
  fc f0 out 64
  fc f1 out 64
  fc f2 out 10
}
"""


def test_bipolar_thresholds_next_to_an_integer_stay_exact(tmp_path):
    """BatchNorm statistics put XNOR thresholds just above integers (2.0000002); FINN's
    AbsorbAddIntoMultiThreshold then adds N in float32 and lands on the integer (290.0),
    an off-by-one code. Thresholds are rounded up to integers before the XNOR
    conversion. With input seed 1 this network's level-2 model is itself at a tie (a
    BatchNorm output within float rounding of 0 before a sign, the batch mean equal to
    the value): level 3 says so and compares on another input."""
    from nashc.targets.verify import level2_ties

    path = _nash_model(BNN_MNIST, tmp_path, seed=1)
    lowered, _ = _verified(path, seeds=(0,))
    model = load_model(path)
    from nashc.runtime.golden import random_inputs

    ties = level2_ties(model, random_inputs(model, 1))
    assert ties and all(t.startswith("BipolarQuant") for t in ties)
    res = verify_level3(model, lowered, 1)
    assert res.ok and "level 2 at a tie" in res.tensors[0].note
    assert f"compared on input seed {1 + 7919}" in res.tensors[0].note


def test_padded_bipolar_convolutions_are_refused_by_name(tmp_path):
    src = BNN_CNV.replace("conv c1 out 16 kernel 3 pad 0", "conv c1 out 16 kernel 3 pad 1")
    with pytest.raises(UnsupportedNodesError) as info:
        _lower(_nash_model(src, tmp_path))
    msg = str(info.value)
    assert "c1 (now " in msg and "pad a bipolar input" in msg and "c2" not in msg


def test_widening_trunc_of_an_average_pool_keeps_its_scale(tmp_path):
    """Brevitas' TruncAvgPool2d(TruncTo8bit) on 2-bit activations exports a Trunc that
    shifts left (4-bit sum to 8 bits); FINN's QuantAvgPool2d only shifts right and the
    output came out 16x too small. After `step_qonnx_to_finn` the values are equal."""
    from qonnx.core.onnx_exec import execute_onnx

    from nashc.targets.finn_env import finn_workspace
    from nashc.targets.lower import RemoveWideningTruncShift, step_qonnx_to_finn

    model = bm.small_resnet((8, 8, 16), (1, 1, 1), 2, 2)
    path = bm.export(model, (1, 3, 8, 8), tmp_path / "r.onnx")
    ref = load_model(path)
    trunc = ref.get_nodes_by_op_type("Trunc")[0]
    in_bits = float(ref.get_initializer(trunc.input[3]))
    out_bits = float(ref.get_initializer(trunc.input[5]))
    assert out_bits > in_bits  # the widening case this test is about
    x = {ref.graph.input[0].name: np.random.default_rng(1).uniform(
        -1, 1, (1, 3, 8, 8)).astype(np.float32)}
    want = execute_onnx(ref, x, return_full_exec_context=True)[trunc.output[0]]
    rewritten = load_model(path).transform(RemoveWideningTruncShift())
    np.testing.assert_array_equal(
        execute_onnx(rewritten, x, return_full_exec_context=True)[trunc.output[0]], want)
    with finn_workspace(tmp_path / "w"):
        finn = step_qonnx_to_finn(load_model(path))
    out = execute_onnx(finn, x, return_full_exec_context=True)[trunc.output[0]]
    np.testing.assert_allclose(out, want, rtol=1e-6)
