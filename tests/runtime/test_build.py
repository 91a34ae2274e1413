"""Networks from the AST: build, QONNX export (structure + level-1 numbers), ONNX loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.onnx_exec import execute_onnx
from torch import nn

from nashc.dsl.ast import DType, Pos, ResolvedLayer, ResolvedNetwork
from nashc.dsl.errors import NashcError
from nashc.runtime.build import (
    BuildError,
    LayerChoice,
    UnsupportedOpsError,
    build_module,
    export_qonnx_model,
    layer_nodes,
    load_onnx_network,
)
from nashc.runtime.ops import DOMAIN

P = Pos("t.nash", 1, 1)
W4, A4 = DType("int4"), DType("uint4")


def L(name: str, kind: str, i: tuple[int, ...], o: tuple[int, ...], **kw) -> ResolvedLayer:
    return ResolvedLayer(name, kind, i, o, P, **kw)  # type: ignore[arg-type]


def res_net() -> ResolvedNetwork:
    """stem, b1 (downsampling, with shortcut conv), b2 (identity shortcut), gap, head."""
    conv = {"weights": W4, "activations": A4}
    return ResolvedNetwork("r", (1, 8, 8), DType("uint8"), (
        L("stem", "conv", (1, 8, 8), (8, 8, 8), kernel=3, stride=1, pad=1, **conv),
        L("b1", "block", (8, 8, 8), (8, 4, 4)),
        L("b1.conv1", "conv", (8, 8, 8), (8, 4, 4), kernel=3, stride=2, pad=1, parent="b1",
          **conv),
        L("b1.conv2", "conv", (8, 4, 4), (8, 4, 4), kernel=3, stride=1, pad=1, parent="b1",
          **conv),
        L("b1.down", "conv", (8, 8, 8), (8, 4, 4), kernel=1, stride=2, pad=0, parent="b1",
          **conv),
        L("b1.add", "add", (8, 4, 4), (8, 4, 4), activations=A4, parent="b1"),
        L("b2", "block", (8, 4, 4), (8, 4, 4)),
        L("b2.conv1", "conv", (8, 4, 4), (8, 4, 4), kernel=3, stride=1, pad=1, parent="b2",
          **conv),
        L("b2.conv2", "conv", (8, 4, 4), (8, 4, 4), kernel=3, stride=1, pad=1, parent="b2",
          **conv),
        L("b2.add", "add", (8, 4, 4), (8, 4, 4), activations=A4, parent="b2"),
        L("gap", "gap", (8, 4, 4), (8, 1, 1)),
        L("head", "fc", (8,), (10,), weights=DType("int8"), activations=A4),
    ))


def fc_net() -> ResolvedNetwork:
    return ResolvedNetwork("f", (1, 8, 8), DType("uint8"), (
        L("fc1", "fc", (64,), (16,), weights=W4, activations=A4),
        L("fc2", "fc", (16,), (16,), weights=W4, activations=A4),
        L("head", "fc", (16,), (10,), weights=W4, activations=A4),
    ))


RES_HYBRID = ("b1.conv1", "b1.conv2", "b1.down", "b2.conv1", "b2.conv2")


def _calibrate(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Exact BatchNorm statistics and activation scales from a few seeded batches."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average
    gen = torch.Generator().manual_seed(0)
    module.train()
    with torch.no_grad():
        for _ in range(4):
            module(torch.randint(0, 256, (16, *shape), generator=gen).float())
    module.eval()
    return torch.randint(0, 256, (4, *shape), generator=gen).float()


def _producer(model, tensor: str):
    return model.find_producer(tensor)


def _check_level1(model, module: nn.Module, xs: torch.Tensor) -> None:
    """Level 1: the torch module and the exported QONNX graph (qonnx execution) agree."""
    refs = []
    for x in xs:  # the exported graph has batch size 1
        x = x.unsqueeze(0)
        ref = module(x).detach().numpy()
        inp = {model.graph.input[0].name: x.numpy()}
        out = execute_onnx(model, inp)[model.graph.output[0].name]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
        refs.append(ref)
    assert np.abs(np.stack(refs)).max() > 0  # not a degenerate all-zero network


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("width", [0.5, 1.0])
@pytest.mark.parametrize("op", ["conv", "shift", "adder"])
def test_residual_net_export(op: str, width: float, bits: int, tmp_path: Path) -> None:
    net = res_net()
    choices = {n: LayerChoice(op=op, wbits=bits, abits=bits) for n in RES_HYBRID}  # type: ignore[arg-type]
    choices["b1"] = LayerChoice(width=width)
    torch.manual_seed(0)
    module = build_module(net, choices)
    x = _calibrate(module, (1, 8, 8))
    path = tmp_path / "r.onnx"
    model = export_qonnx_model(module, net, path)

    # self-contained file, input datatype annotated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.onnx"]
    assert model.get_tensor_datatype(model.graph.input[0].name) == DataType["UINT8"]
    reloaded = onnx.load(str(path))
    assert not any(t.data_location == TensorProto.EXTERNAL for t in reloaded.graph.initializer)

    # compute nodes are named after the layers and have the chosen op
    named = layer_nodes(model)
    assert set(named) == {"stem", "head", *RES_HYBRID}
    want = {"conv": "Conv", "shift": "ShiftConv", "adder": "AdderConv"}[op]
    for name in RES_HYBRID:
        node = named[name]
        assert node.name == name and node.op_type == want
        if op != "conv":
            assert node.domain == DOMAIN
            assert {a.name: a.i for a in node.attribute}["weight_bits"] == bits
    assert named["stem"].op_type == "Conv" and named["head"].op_type in ("MatMul", "Gemm")

    # widths: block b1 (and b2, which has an identity shortcut) use the scaled width
    cb = max(1, round(8 * width))
    for name in RES_HYBRID:
        w = model.get_initializer(named[name].input[1])
        if w is None:  # conv weights come through a Quant node
            w = model.get_initializer(_producer(model, named[name].input[1]).input[0])
        assert w.shape[0] == cb

    # residual adds: a real Add of two branches, both re-quantized on one grid
    adds = model.get_nodes_by_op_type("Add")
    assert len(adds) == 2
    for add in adds:
        srcs = [_producer(model, t) for t in add.input]
        assert all(s is not None and s.op_type == "Quant" for s in srcs)
        assert srcs[0].name != srcs[1].name
        scales = [model.get_initializer(s.input[1]) for s in srcs]
        np.testing.assert_array_equal(scales[0], scales[1])
    b1_add = [a for a in adds if any(
        _producer(model, _producer(model, t).input[0]).op_type == "BatchNormalization"
        and _producer(model, _producer(model, _producer(model, t).input[0]).input[0]).name
        == "b1.down" for t in a.input)]
    assert len(b1_add) == 1  # b1's add joins conv2's branch with the down branch

    _check_level1(model, module, x)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("op", ["conv", "shift", "adder"])
def test_fc_net_export(op: str, bits: int, tmp_path: Path) -> None:
    net = fc_net()
    choices = {n: LayerChoice(op=op, wbits=bits, abits=bits, width=0.5)  # type: ignore[arg-type]
               for n in ("fc1", "fc2")}
    torch.manual_seed(1)
    module = build_module(net, choices)
    x = _calibrate(module, (1, 8, 8))
    model = export_qonnx_model(module, net, tmp_path / "f.onnx")
    named = layer_nodes(model)
    assert set(named) == {"fc1", "fc2", "head"}
    want = {"conv": ("MatMul", "Gemm"), "shift": ("ShiftMatMul",), "adder": ("AdderMatMul",)}
    assert named["fc1"].op_type in want[op] and named["fc2"].op_type in want[op]
    assert named["head"].op_type in ("MatMul", "Gemm")
    _check_level1(model, module, x)


def test_export_with_dynamo_exporter(tmp_path: Path) -> None:
    net = res_net()
    module = build_module(net, {n: LayerChoice(op="adder") for n in RES_HYBRID})
    x = _calibrate(module, (1, 8, 8))
    model = export_qonnx_model(module, net, tmp_path / "d.onnx", dynamo=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.onnx"]  # no .onnx.data left
    assert {n.op_type for n in layer_nodes(model).values()} >= {"AdderConv"}
    assert len(model.get_nodes_by_op_type("Add")) == 2
    _check_level1(model, module, x)


def test_width_and_kernel_choices_shape_the_module() -> None:
    net = res_net()
    m = build_module(net, {"b1": LayerChoice(width=0.5), "stem": LayerChoice(width=0.5),
                           "b2.conv1": LayerChoice(kernel=5)})
    layers = m.compute_layers()
    assert layers["stem"].weight.shape[0] == 4
    assert layers["b1.conv1"].weight.shape[:2] == (4, 4)
    assert layers["b1.down"].weight.shape[:2] == (4, 4)
    assert layers["b2.conv1"].weight.shape == (4, 4, 5, 5)
    assert layers["head"].weight.shape == (10, 4)  # the last layer keeps its outputs
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_bipolar_weights_and_build_errors() -> None:
    net = fc_net()
    layers = tuple(
        ResolvedLayer(ly.name, ly.kind, ly.in_shape, ly.out_shape, ly.pos,
                      weights=DType("bipolar"), activations=ly.activations)
        for ly in net.layers)
    bip = ResolvedNetwork("b", net.input_shape, net.input_dtype, layers)
    w = build_module(bip).compute_layers()["fc1"].quant_weight().value
    assert set(np.unique(np.sign(w.detach().numpy()))) <= {-1.0, 1.0}
    with pytest.raises(BuildError, match="at least 2 bits"):
        build_module(bip, {"fc1": LayerChoice(op="shift")})
    with pytest.raises(NashcError, match="nope"):
        build_module(net, {"nope": LayerChoice()})


# -- loading ---------------------------------------------------------------------------


def _plain_onnx(path: Path, extra: list | None = None, named: bool = True) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv_a" if named else "",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "w2"], ["y0"], name="" if not named else "fc_b"),
    ]
    out = "y0"
    for node in extra or []:
        nodes.append(node)
        out = node.output[0]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], [w, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data", size_threshold=0)


def test_load_plain_onnx_with_external_data(tmp_path: Path) -> None:
    _plain_onnx(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx.data").exists()
    model = load_onnx_network(tmp_path / "m.onnx")
    names = {n.name: n.op_type for n in model.graph.node}
    assert names["conv_a"] == "Conv" and names["fc_b"] == "MatMul"
    assert model.get_initializer(model.graph.node[0].input[1]) is not None
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)).astype(np.float32)
    out = execute_onnx(model, {model.graph.input[0].name: x})
    assert out[model.graph.output[0].name].shape == (1, 10)


def test_load_names_unnamed_compute_nodes(tmp_path: Path) -> None:
    _plain_onnx(tmp_path / "m.onnx", named=False)
    model = load_onnx_network(tmp_path / "m.onnx")
    compute = [n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul")]
    # the names the language gives the layers of `network m from "m.onnx"`
    (tmp_path / "m.nash").write_text('network m from "m.onnx"\n')
    from nashc.dsl import load

    assert compute == [layer.name for layer in load(tmp_path / "m.nash").network.layers]
    assert all(name.split("_")[0] in ("Conv", "MatMul") for name in compute)


def test_load_reports_unsupported_ops(tmp_path: Path) -> None:
    extra = [helper.make_node("Softmax", ["y0"], ["s"], name="probs"),
             helper.make_node("Sin", ["s"], ["t"])]
    _plain_onnx(tmp_path / "m.onnx", extra=extra)
    with pytest.raises(UnsupportedOpsError) as err:
        load_onnx_network(tmp_path / "m.onnx")
    assert err.value.nodes == [("probs", "Softmax"), ("<unnamed node #6>", "Sin")]
    msg = err.value.format()
    assert "probs (Softmax)" in msg and "Sin" in msg
    assert isinstance(err.value, NashcError)


def test_load_exported_model_keeps_layer_names(tmp_path: Path) -> None:
    net = res_net()
    module = build_module(net, {"b1.conv1": LayerChoice(op="shift")})
    _calibrate(module, (1, 8, 8))
    export_qonnx_model(module, net, tmp_path / "r.onnx")
    model = load_onnx_network(tmp_path / "r.onnx")
    named = {n.name: n.op_type for n in model.graph.node}
    assert named["b1.conv1"] == "ShiftConv" and named["b2.conv2"] == "Conv"
    assert named["head"] in ("MatMul", "Gemm")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NashcError, match="no such"):
        load_onnx_network(tmp_path / "nope.onnx")
