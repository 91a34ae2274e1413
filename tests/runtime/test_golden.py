"""Golden checks: Quant lowering for onnxruntime, random inputs, compare_levels, CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from nashc.runtime import golden
from nashc.runtime.golden import (
    VerifyResult,
    compare_levels,
    random_inputs,
    run_onnxruntime,
    run_qonnx,
    to_standard_onnx,
)
from nashc.runtime.ops import DOMAIN, to_shift_weights

QD = "qonnx.custom_op.general"


def _quant_model(bits, signed, narrow, mode, scale=0.37, zeropt=0.0):
    q = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], domain=QD, name="q",
                         signed=signed, narrow=narrow, rounding_mode=mode)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n)
             for n, v in (("s", scale), ("z", zeropt), ("b", float(bits)))]
    g = helper.make_graph([q], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                   [4, 50])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 50])],
                          initializer=inits)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                           helper.make_opsetid(QD, 1)]))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("signed,narrow", [(1, 0), (1, 1), (0, 0)])
@pytest.mark.parametrize("mode", ["ROUND", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP",
                                  "HALF_DOWN"])
def test_quant_lowering_matches_qonnx(bits, signed, narrow, mode):
    if bits == 1 and not signed:
        pytest.skip("qonnx: 1-bit unsigned is an ordinary 0/1 Quant, covered by bits=2")
    m = _quant_model(bits, signed, narrow, mode)
    rng = np.random.default_rng(bits)
    x = (rng.normal(size=(4, 50)) * 2 ** bits * 0.37).astype(np.float32)
    # exact ties to exercise the rounding modes
    x[0, :10] = (np.arange(10) - 5 + 0.5).astype(np.float32) * np.float32(0.37)
    std = to_standard_onnx(m)
    assert {n.op_type for n in std.graph.node}.isdisjoint({"Quant"})
    onnx.checker.check_model(std.model)
    np.testing.assert_array_equal(run_onnxruntime(m, {"x": x})["y"], run_qonnx(m, {"x": x})["y"])


def test_bipolar_and_multithreshold_lowering():
    bq = helper.make_node("BipolarQuant", ["x", "s"], ["t"], domain=QD, name="bq")
    mt = helper.make_node("MultiThreshold", ["t", "thr"], ["y"], domain=QD, name="mt",
                          out_scale=0.5, out_bias=-1.0)
    thr = np.sort(np.random.default_rng(0).normal(size=(3, 4)), axis=1).astype(np.float32)
    g = helper.make_graph([bq, mt], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 3, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [2, 3, 4, 4])],
        initializer=[numpy_helper.from_array(np.float32(0.75), "s"),
                     numpy_helper.from_array(thr, "thr")])
    m = ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid(QD, 1)]))
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32)
    ref = run_qonnx(m, {"x": x})["y"]
    assert len(np.unique(ref)) > 1
    np.testing.assert_array_equal(run_onnxruntime(m, {"x": x})["y"], ref)


def test_random_inputs_honour_datatype_and_seed():
    m = _quant_model(4, 1, 0, "ROUND")
    m.set_tensor_datatype("x", DataType["UINT3"])
    a, b = random_inputs(m, 5), random_inputs(m, 5)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert a["x"].dtype == np.float32 and a["x"].shape == (4, 50)
    assert set(np.unique(a["x"])) <= set(range(8)) and len(np.unique(a["x"])) > 4
    m.set_tensor_datatype("x", DataType["BIPOLAR"])
    assert set(np.unique(random_inputs(m, 1)["x"])) == {-1.0, 1.0}
    m.set_tensor_datatype("x", DataType["FLOAT32"])
    v = random_inputs(m, 1)["x"]
    assert np.all(np.abs(v) <= 1) and not np.all(v == np.round(v))
    assert not np.array_equal(random_inputs(m, 1)["x"], random_inputs(m, 2)["x"])


def _shift_net():
    rng = np.random.default_rng(0)
    w = to_shift_weights(rng.normal(size=(4, 2, 3, 3)), 4)
    q = helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], domain=QD, name="q",
                         signed=1, narrow=0, rounding_mode="ROUND")
    c = helper.make_node("ShiftConv", ["xq", "w"], ["y"], domain=DOMAIN, name="conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], weight_bits=4)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n)
             for n, v in (("s", 0.125), ("z", 0.0), ("b", 4.0))]
    inits.append(numpy_helper.from_array(w, "w"))
    g = helper.make_graph([q, c], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, 5, 5])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 4, 5, 5])], initializer=inits)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                           helper.make_opsetid(QD, 1),
                                                           helper.make_opsetid(DOMAIN, 1)]))


def test_compare_levels_ok_and_json():
    r = compare_levels(_shift_net(), seed=3)
    assert isinstance(r, VerifyResult)
    assert [lv.name for lv in r.levels] == ["qonnx-vs-onnxruntime"]
    assert r.ok and r.levels[0].max_abs_diff == 0.0
    j = r.to_json()
    assert set(j) == {"levels", "ok"}
    assert {"name", "max_abs_diff", "ok", "comparison", "tolerance", "tensors"} == set(j["levels"][0])
    json.dumps(j)


def test_compare_levels_detects_a_wrong_lowering(monkeypatch):
    # break the lowering of ShiftConv (bias of +1 on a zero-padded input): level 2 must fail
    from nashc.runtime import lowering

    orig = lowering.LowerHybridOpsToONNX._lower

    def wrong(self, model, node, opset):
        nodes = orig(self, model, node, opset)
        nodes[0].attribute.extend([])
        for a in nodes[0].attribute:
            if a.name == "pads":
                a.ints[:] = [0, 0, 2, 2]
        return nodes

    monkeypatch.setattr(lowering.LowerHybridOpsToONNX, "_lower", wrong)
    r = compare_levels(_shift_net(), seed=3)
    assert not r.ok and r.levels[0].max_abs_diff > 0


def test_level1_with_brevitas_module():
    import torch
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantIdentity, QuantLinear
    from qonnx.util.cleanup import cleanup_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(QuantIdentity(bit_width=4, return_quant_tensor=True),
                              QuantLinear(8, 3, bias=False, weight_bit_width=4))
    net.eval()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        export_qonnx(net, torch.randn(1, 8), str(p))
        m = cleanup_model(golden.load_model(p))
    r = compare_levels(m, torch_module=net, seed=0)
    assert [lv.name for lv in r.levels] == ["torch-vs-qonnx", "qonnx-vs-onnxruntime"]
    assert r.ok, r.to_json()
    # a different module must fail level 1
    other = torch.nn.Sequential(torch.nn.Linear(8, 3))
    bad = compare_levels(m, torch_module=other, seed=0)
    assert not bad.levels[0].ok and bad.levels[1].ok


def test_cli_verify(tmp_path):
    from nashc.cli import cli

    p = tmp_path / "m.onnx"
    onnx.save(_shift_net().model, str(p))
    out = tmp_path / "r.json"
    # level 3 (FINN) is covered in tests/pipeline/test_verify_cli.py; this hand-made graph
    # is not a FINN-lowerable network
    res = CliRunner().invoke(cli, ["verify", str(p), "--json", str(out), "--no-finn"])
    assert res.exit_code == 0, res.output
    assert "qonnx-vs-onnxruntime" in res.output
    assert json.loads(out.read_text())["ok"] is True
    missing = CliRunner().invoke(cli, ["verify", str(tmp_path / "nope.onnx")])
    assert missing.exit_code == 2 and "not found" in missing.output
    (tmp_path / "bad.onnx").write_text("garbage")
    assert CliRunner().invoke(cli, ["verify", str(tmp_path / "bad.onnx")]).exit_code == 2


def test_cli_verify_mismatch_exits_1(tmp_path, monkeypatch):
    from nashc.cli import cli

    def failing(model, torch_module=None, seed=0, inputs=None):
        return VerifyResult([golden.LevelResult("qonnx-vs-onnxruntime", 1.0, False)])

    monkeypatch.setattr(golden, "compare_levels", failing)
    p = tmp_path / "m.onnx"
    onnx.save(_shift_net().model, str(p))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["verify", str(p), "--json", str(out), "--no-finn"])
    assert res.exit_code == 1
    assert json.loads(out.read_text())["ok"] is False
