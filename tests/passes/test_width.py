"""SetChannelWidth / SliceChannels: channel groups, slicing through residual adds and
flattens, numbers against the masked original (onnxruntime), onnx.checker, the builder's
width choice, qonnx's PruneChannels, CNV and TFC from brevitas_examples."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from helpers.graphs import G, conv_net, expose, fc_net
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from nashc.passes.graph import PassError
from nashc.passes.hybrid import ConvertConvToAdder, ConvertConvToShift, ConvertGemmToShift
from nashc.passes.width import (
    SetChannelWidth,
    SliceChannels,
    _analyse,
    _in_axis,
    channel_groups,
)
from nashc.runtime.golden import compare_levels, run_onnxruntime, run_qonnx


def _x(model: ModelWrapper, seed: int = 0) -> dict[str, np.ndarray]:
    shape = model.get_tensor_shape("x")
    return {"x": np.random.default_rng(seed).uniform(-8, 8, size=shape).astype(np.float32)}


def _masked(model: ModelWrapper, records: list[dict]) -> ModelWrapper:
    """The original graph with the readers' weights of the removed channels set to 0."""
    m = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    an = _analyse(m)
    for node, chan in an.readers:
        for rec in records:
            if node.name not in rec["readers"]:
                continue
            gone = sorted(set(range(rec["from_channels"])) - set(rec["kept"]))
            feats = chan.features(np.asarray(gone, dtype=np.int64), rec["from_channels"])
            tname = node.input[1]
            if m.get_initializer(tname) is None:
                tname = m.find_producer(tname).input[0]
            w = m.get_initializer(tname).copy()
            idx = [slice(None)] * w.ndim
            idx[_in_axis(node)] = feats
            w[tuple(idx)] = 0.0
            m.set_initializer(tname, w)
    return m


def _out(model: ModelWrapper, x) -> np.ndarray:
    return run_onnxruntime(model, x)[model.graph.output[0].name]


def test_groups_join_residual_branches():
    groups = channel_groups(conv_net(3, 1, 4, residual=True))
    got = {tuple(g.producers): (g.channels, tuple(g.readers), bool(g.blocked)) for g in groups}
    assert got == {("c0",): (8, ("c1",), False),
                   ("c1", "c2"): (8, ("c2", "c3"), False),
                   ("c3",): (6, ("head",), False),
                   ("head",): (5, (), True)}


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("residual", [False, True])
def test_conv_width_equals_masked_original(k, stride, bits, residual):
    model = conv_net(k, stride, bits, residual)
    sliced = model.transform(SetChannelWidth("c*", 0.5))
    onnx.checker.check_model(sliced.model)
    recs = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    assert sorted(r["to_channels"] for r in recs) == [3, 4, 4]
    shapes = {n.name: sliced.get_tensor_shape(n.input[1]) for n in sliced.graph.node
              if n.op_type in ("Conv", "MatMul")}
    assert shapes["c1"][:2] == [4, 4] and shapes["c3"] == [3, 4, 1, 1]
    assert shapes["head"] == [3, 5]
    x = _x(model, seed=k + bits)
    ref = _out(_masked(model, recs), x)
    got = _out(sliced, x)
    assert np.array_equal(got, ref)
    assert not np.array_equal(ref, _out(model, x))  # the removed channels did contribute
    assert compare_levels(sliced, seed=1).ok


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("residual", [False, True])
def test_fc_width_equals_masked_original(bits, residual):
    model = fc_net(bits, residual)
    sliced = model.transform(SetChannelWidth("f*", 0.75))
    onnx.checker.check_model(sliced.model)
    recs = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    assert all(r["to_channels"] == 6 for r in recs)
    f0 = next(n for n in sliced.graph.node if n.name == "f0")
    assert sliced.get_tensor_shape(f0.input[1]) == [6, 12]  # transB: (N, K)
    assert sliced.get_initializer(f0.input[2]).shape == (6,)
    x = _x(model, seed=bits)
    assert np.array_equal(_out(sliced, x), _out(_masked(model, recs), x))
    assert compare_levels(sliced, seed=2).ok


@pytest.mark.parametrize("Swap", [ConvertConvToShift, ConvertConvToAdder])
def test_hybrid_layers_are_sliced(Swap):
    model = conv_net(3, 1, 4, residual=True).transform(Swap("c1,c2"))
    sliced = model.transform(SetChannelWidth("c0,c1", 0.5, rank="first"))
    onnx.checker.check_model(sliced.model)
    ops = {n.name: n for n in sliced.graph.node}
    assert sliced.get_initializer(ops["c1"].input[1]).shape == (4, 4, 3, 3)
    assert sliced.get_initializer(ops["c2"].input[1]).shape == (4, 4, 3, 3)
    x = _x(model, seed=3)
    if Swap is ConvertConvToShift:  # zero shift weights contribute nothing
        recs = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
        assert np.array_equal(_out(sliced, x), _out(_masked(model, recs), x))
    # the kept channels of c0 compute what they did ("first": channels 0..3)
    t0 = next(n for n in model.graph.node if n.name == "c0").output[0]
    a = run_qonnx(expose(model, t0), x)[t0]
    b = run_qonnx(expose(sliced, t0), x)[t0]
    assert np.array_equal(a[:, :4], b)
    assert compare_levels(sliced, seed=4).ok


def test_l1_rank_keeps_the_heaviest_channels():
    model = conv_net(3, 1, 4, residual=False)
    q = model.find_producer(next(n for n in model.graph.node if n.name == "c0").input[1])
    w = model.get_initializer(q.input[0]).copy()
    w[[1, 6]] *= 8.0  # make channels 1 and 6 the largest by far
    model.set_initializer(q.input[0], w)
    sliced = model.transform(SetChannelWidth("c0", 0.25))
    rec = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))[0]
    assert rec["kept"] == [1, 6] and rec["rank"] == "l1" and rec["readers"] == ["c1"]


def test_width_is_relative_to_the_original_and_idempotent():
    model = conv_net(3, 1, 4, residual=True)
    half = model.transform(SetChannelWidth("c1", 0.5))
    again = half.transform(SetChannelWidth("c1", 0.5))
    assert again.model == half.model  # changed nothing, recorded nothing
    quarter = half.transform(SetChannelWidth("c2", 0.25))
    recs = json.loads(quarter.get_metadata_prop("nashc.SetChannelWidth"))
    assert [(r["from_channels"], r["to_channels"]) for r in recs] == [(8, 4), (4, 2)]
    with pytest.raises(PassError, match=r"needs 6 channels but the layer has 2 \(of 8"):
        quarter.transform(SetChannelWidth("c1", 0.75))


def test_errors_name_the_node():
    model = conv_net(3, 1, 4, residual=False)
    with pytest.raises(PassError, match=r"'head' \(MatMul\).*graph output"):
        model.transform(SetChannelWidth("head", 0.5))
    with pytest.raises(PassError, match="matches no node"):
        model.transform(SetChannelWidth("nope*", 0.5))
    with pytest.raises(PassError, match="positive"):
        SetChannelWidth("c0", 0.0)
    with pytest.raises(PassError, match=r"distinct indices in \[0, 8\)"):
        model.transform(SliceChannels({"c0": [0, 8]}))
    with pytest.raises(PassError, match="no layer named"):
        model.transform(SliceChannels({"x": [0]}))


def test_concat_blocks_its_groups_only():
    g = G(seed=1)
    x = g.quant("x", 0.125, 8)
    a = g.act(g.op("Conv", [x, g.weights((4, 3, 1, 1), 4)], name="a", kernel_shape=[1, 1]), 4)
    b = g.act(g.op("Conv", [x, g.weights((4, 3, 1, 1), 4)], name="b", kernel_shape=[1, 1]), 4)
    c = g.act(g.op("Conv", [x, g.weights((4, 3, 1, 1), 4)], name="c", kernel_shape=[1, 1]), 4)
    t = g.op("Concat", [a, b], axis=1, name="cat")
    t = g.op("Conv", [t, g.weights((2, 8, 1, 1), 4)], name="d", kernel_shape=[1, 1])
    u = g.op("Conv", [c, g.weights((2, 4, 1, 1), 4)], name="e", kernel_shape=[1, 1])
    model = g.model([1, 3, 4, 4], g.op("Add", [t, u]))
    with pytest.raises(PassError, match=r"'a' \(Conv\).*'cat' \(Concat\) is not a channel"):
        model.transform(SetChannelWidth("a", 0.5))
    sliced = model.transform(SetChannelWidth("c", 0.5))
    assert compare_levels(sliced).ok


def test_depthwise_conv_follows_its_input():
    g = G(seed=2)
    x = g.quant("x", 0.125, 8)
    t = g.act(g.op("Conv", [x, g.weights((6, 3, 1, 1), 4)], name="pw", kernel_shape=[1, 1]), 4)
    t = g.act(g.op("Conv", [t, g.weights((6, 1, 3, 3), 4)], name="dw", kernel_shape=[3, 3],
                   pads=[1] * 4, group=6), 4)
    t = g.op("Conv", [t, g.weights((2, 6, 1, 1), 4)], name="proj", kernel_shape=[1, 1])
    model = g.model([1, 3, 4, 4], t)
    groups = channel_groups(model)
    assert [g.producers for g in groups] == [["pw"], ["proj"]]
    sliced = model.transform(SetChannelWidth("pw", 0.5))
    dw = next(n for n in sliced.graph.node if n.name == "dw")
    assert sliced.get_tensor_shape(dw.input[1]) == [3, 1, 3, 3]
    assert [a.i for a in dw.attribute if a.name == "group"] == [3]
    onnx.checker.check_model(sliced.model)
    recs = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    x = _x(model)
    assert np.array_equal(_out(sliced, x), _out(_masked(model, recs), x))


def test_agrees_with_qonnx_prune_channels():
    """On a graph qonnx's PruneChannels accepts (static weights, no bias, no flatten)."""
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.pruning import PruneChannels

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in
             (("w0", (8, 3, 3, 3)), ("w1", (8, 8, 3, 3)), ("w2", (4, 8, 1, 1)),
              ("m", (1, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="c0", pads=[1] * 4,
                              kernel_shape=[3, 3]),
             helper.make_node("Relu", ["a"], ["b"], name="r0"),
             helper.make_node("Mul", ["b", "m"], ["b2"], name="mul"),
             helper.make_node("Conv", ["b2", "w1"], ["c"], name="c1", pads=[1] * 4,
                              kernel_shape=[3, 3]),
             helper.make_node("MaxPool", ["c"], ["d"], name="p", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Conv", ["d", "w2"], ["y"], name="c2", kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
                          initializer=inits)
    model = ModelWrapper(qonnx_make_model(g)).transform(InferShapes())
    theirs = model.transform(PruneChannels({"a": {1: {1, 5}}, "c": {1: {0, 2, 7}}}))
    ours = model.transform(SliceChannels({"c0": [0, 2, 3, 4, 6, 7], "c1": [1, 3, 4, 5, 6]}))
    for a, b in zip(theirs.graph.node, ours.graph.node):
        assert a.name == b.name
        for ta, tb in zip(a.input, b.input):
            va, vb = theirs.get_initializer(ta), ours.get_initializer(tb)
            assert (va is None) == (vb is None)
            if va is not None:
                assert np.array_equal(va, vb)
    x = {"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)}
    assert np.allclose(run_onnxruntime(ours, x)["y"], run_onnxruntime(theirs, x)["y"])


def test_matches_the_builders_width_choice(tmp_path):
    """SetChannelWidth on the width-1 graph gives the shapes the builder gives for width 0.5
    (a block with an identity shortcut keeps its input's width in the builder)."""
    from nashc.dsl import load
    from nashc.runtime.build import LayerChoice, build_module, export_qonnx_model

    src = tmp_path / "n.nash"
    src.write_text("network n {\n input 1x8x8 uint8\n weights int4\n activations uint4\n"
                   " conv stem out 8 kernel 3\n block b1 residual out 8 stride 2\n"
                   " block b2 residual out 8\n pool gap global avg\n fc head out 10\n}\n")
    net = load(src).network
    torch.manual_seed(0)
    full = export_qonnx_model(build_module(net, {}), net, tmp_path / "full.onnx")
    half = export_qonnx_model(build_module(net, {"b1": LayerChoice(width=0.5)}), net,
                              tmp_path / "half.onnx")
    sliced = full.transform(SetChannelWidth("b1.*, b2.conv1", 0.5))

    def shapes(m: ModelWrapper) -> dict[str, list[int]]:
        return {n.name: m.get_tensor_shape(n.input[1]) for n in m.graph.node
                if n.op_type in ("Conv", "MatMul", "Gemm")}

    assert shapes(sliced) == shapes(half)
    assert shapes(sliced)["b2.conv2"] == [4, 4, 3, 3]
    bn_shapes = sorted(tuple(sliced.get_initializer(n.input[1]).shape)
                       for n in sliced.graph.node if n.op_type == "BatchNormalization")
    assert bn_shapes == sorted(tuple(half.get_initializer(n.input[1]).shape)
                               for n in half.graph.node if n.op_type == "BatchNormalization")
    onnx.checker.check_model(sliced.model)
    assert compare_levels(sliced).ok


def test_tfc_hidden_layers_halved(tfc_factory):
    model = tfc_factory()
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    sliced = model.transform(ConvertGemmToShift(gemms[1])).transform(
        SetChannelWidth(",".join(gemms[:-1]), 0.5))
    widths = [r["to_channels"] for r in
              json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))]
    assert widths == [32, 32, 32]
    onnx.checker.check_model(sliced.model)
    r = compare_levels(sliced, seed=5)
    assert r.ok, r.to_json()


def test_cnv_convs_and_fcs_narrowed(cnv_factory):
    model = cnv_factory()
    layers = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert len(layers) == 9
    sliced = model.transform(SetChannelWidth(",".join(layers[:-1]), 0.25))
    recs = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    assert [(r["from_channels"], r["to_channels"]) for r in recs] == [
        (64, 16), (64, 16), (128, 32), (128, 32), (256, 64), (256, 64), (512, 128),
        (512, 128)]
    onnx.checker.check_model(sliced.model)
    r = compare_levels(sliced, seed=6)
    assert r.ok, r.to_json()


@pytest.mark.parametrize("Swap", [None, ConvertConvToShift, ConvertConvToAdder])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("mode", ["mean", "affine"])
def test_compensation_keeps_the_readers_output_statistics(Swap, residual, mode):
    """Compensated, the reader's output keeps its per-channel mean over the calibration
    batch (and, for "affine", its standard deviation)."""
    from nashc.passes.width import layer_inputs

    model = conv_net(3, 1, 4, residual)
    if Swap is not None:
        model = model.transform(Swap("c3"))
    batch = np.random.default_rng(0).uniform(-8, 8, size=(6, 3, 8, 8)).astype(np.float32)
    acts = layer_inputs(model, batch)
    assert acts[next(n for n in model.graph.node if n.name == "c0").input[0]].shape == \
        (6, 3, 8, 8)
    sel = "c1,c2" if residual else "c1"
    sliced = model.transform(SetChannelWidth(sel, 0.5, activations=acts, compensate=mode))
    onnx.checker.check_model(sliced.model)
    rec = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    # with the residual, c2 reads (and writes) the sliced group: it is compensated too,
    # and c3's inputs then differ from the original's: the means are exact without it
    assert [c["reader"] for c in rec[0]["compensated"]] == (["c2", "c3"] if residual
                                                             else ["c3"])
    assert "c3_compensation" in {n.name for n in sliced.graph.node}
    assert compare_levels(sliced, seed=7).ok
    if residual:
        return
    c3_out = next(n for n in model.graph.node if n.name == "c3").output[0]

    def stats(m: ModelWrapper) -> tuple[np.ndarray, np.ndarray]:
        rows = [run_qonnx(expose(m, c3_out), {"x": batch[i:i + 1]})[c3_out]
                for i in range(len(batch))]
        y = np.concatenate(rows).astype(np.float64)
        return y.mean(axis=(0, 2, 3)), y.std(axis=(0, 2, 3))

    (m0, s0), (m1, s1) = stats(model), stats(sliced)
    m_plain, s_plain = stats(model.transform(SetChannelWidth(sel, 0.5)))
    assert np.allclose(m1, m0, atol=1e-4)
    assert not np.allclose(m_plain, m0, atol=1e-2)
    if mode == "affine":
        assert np.allclose(s1, s0, rtol=1e-4) and not np.allclose(s_plain, s0, rtol=1e-2)
        assert "c3_compensation_scale" in {n.name for n in sliced.graph.node}


def test_compensation_of_an_fc_reader_after_flatten():
    from nashc.passes.width import layer_inputs

    model = conv_net(3, 2, 4, residual=False)
    batch = np.random.default_rng(1).uniform(-8, 8, size=(5, 3, 8, 8)).astype(np.float32)
    sliced = model.transform(SetChannelWidth("c3", 0.5, activations=layer_inputs(model,
                                                                                 batch)))
    rec = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    assert [c["reader"] for c in rec[0]["compensated"]] == ["head"]
    out = sliced.graph.output[0].name
    full = model.graph.output[0].name

    def mean_out(m: ModelWrapper, name: str) -> np.ndarray:
        return np.mean([run_onnxruntime(m, {"x": batch[i:i + 1]})[name][0]
                        for i in range(len(batch))], axis=0)

    assert np.allclose(mean_out(sliced, out), mean_out(model, full), atol=1e-4)


def test_quantized_bias_and_per_channel_scales_are_sliced():
    """A conv bias from a Quant with per-channel scale, per-channel weight scales and a
    per-channel activation scale: all follow the kept channels."""
    g = G(seed=5)
    x = g.quant("x", 0.125, 8)
    w = g.const(g.rng.normal(scale=0.5, size=(6, 3, 3, 3)), "w")
    wq = g.quant(w, (2.0 ** -np.arange(6)).reshape(6, 1, 1, 1), 4)
    bq = g.quant(g.const(np.arange(6) / 8.0, "b"), np.full(6, 2.0 ** -4), 16)
    t = g.op("Conv", [x, wq, bq], name="c0", kernel_shape=[3, 3], pads=[1] * 4)
    act = g.quant(g.op("Relu", [t]), (2.0 ** -np.arange(6)).reshape(1, 6, 1, 1), 4, signed=0)
    model = g.model([1, 3, 5, 5], g.op("Conv", [act, g.weights((2, 6, 1, 1), 4)],
                                        name="c1", kernel_shape=[1, 1]))
    sliced = model.transform(SliceChannels({"c0": [1, 4, 5]}))
    onnx.checker.check_model(sliced.model)
    c0 = next(n for n in sliced.graph.node if n.name == "c0")
    bias_q = sliced.find_producer(c0.input[2])
    assert sliced.get_initializer(bias_q.input[0]).tolist() == [1 / 8, 4 / 8, 5 / 8]
    w_q = sliced.find_producer(c0.input[1])
    assert sliced.get_initializer(w_q.input[1]).ravel().tolist() == [2.0 ** -1, 2.0 ** -4,
                                                                       2.0 ** -5]
    assert sliced.get_initializer(sliced.find_producer(act).input[1]).shape == (1, 3, 1, 1)
    x_in = _x(model, seed=9)
    recs = json.loads(sliced.get_metadata_prop("nashc.SetChannelWidth"))
    assert np.array_equal(_out(sliced, x_in), _out(_masked(model, recs), x_in))
    assert compare_levels(sliced).ok
