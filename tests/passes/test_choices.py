"""ApplyChoices (space choices on a graph) and `nashc rewrite` on FINN's TFC and CNV."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from qonnx.core.modelwrapper import ModelWrapper

from nashc.cli import cli
from nashc.passes.choices import ApplyChoices, layer_summary, parse_rule
from nashc.passes.graph import PassError
from nashc.runtime.golden import compare_levels


@pytest.mark.parametrize("dim,text,want", [
    ("width", "b*=0.5", ("width", "b*", 0.5)),
    ("op", "a,b=shift", ("op", "a,b", "shift")),
    ("wbits", " conv* = 4 ", ("wbits", "conv*", 4)),
    ("abits", "x=2", ("abits", "x", 2)),
])
def test_parse_rule(dim, text, want):
    assert parse_rule(dim, text) == want


@pytest.mark.parametrize("dim,text,msg", [
    ("width", "b*", "SELECTOR=VALUE"),
    ("width", "b*=1.5", "narrowed"),
    ("width", "b*=half", "number"),
    ("op", "b*=mul", "conv, shift or adder"),
    ("wbits", "b*=1", "from 2 to 8"),
    ("abits", "b*=9", "from 2 to 8"),
    # a Quant node takes 2..8 bits: 1 used to pass here and fail in the pass (issue 10)
    ("abits", "x=1", "from 2 to 8"),
    ("kernel", "b*=3", "unknown choice"),
])
def test_parse_rule_errors(dim, text, msg):
    with pytest.raises(PassError, match=msg):
        parse_rule(dim, text)


def test_kernel_is_not_a_graph_choice():
    with pytest.raises(PassError, match="declared in the language"):
        ApplyChoices([("kernel", "*", 3)])


def test_cnv_choices_in_order(cnv_factory):
    model = cnv_factory()
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    before = layer_summary(model)
    rules = [("op", f"{convs[1]},{convs[2]}", "shift"), ("width", ",".join(convs[:4]), 0.5),
             ("wbits", convs[1], 4), ("op", convs[3], "adder"), ("abits", convs[0], 3)]
    model = model.transform(ApplyChoices(rules))
    after = layer_summary(model)
    assert after[convs[1]] == ("ShiftConv", before[convs[1]][1] // 2, 4)
    assert after[convs[2]][0] == "ShiftConv" and after[convs[3]][0] == "AdderConv"
    assert after[convs[4]] == before[convs[4]]
    # the adder's weights are on the grid of its input (after the width/bit changes)
    meta = json.loads(model.get_metadata_prop("nashc.ConvertConvToAdder"))
    assert meta[0]["grid"] == "input"
    onnx.checker.check_model(model.model)
    r = compare_levels(model, seed=3)
    assert r.ok, r.to_json()
    with pytest.raises(PassError, match="swapping back"):
        model.transform(ApplyChoices([("op", convs[1], "conv")]))


def test_rewrite_cli(tfc_factory, tmp_path):
    src = tmp_path / "tfc.onnx"
    onnx.save_model(tfc_factory().model, str(src))
    names = [n.name for n in tfc_factory().graph.node if n.op_type == "Gemm"]
    out = tmp_path / "o" / "narrow.onnx"
    res = CliRunner().invoke(cli, ["rewrite", str(src), "-o", str(out),
                                   "--width", f"{names[0]},{names[1]}=0.25",
                                   "--op", f"{names[1]}=shift", "--rank", "first",
                                   "--abits", f"{names[0]}=3"])
    assert res.exit_code == 0, res.output
    assert "64 -> 16" in res.output and "Gemm -> ShiftMatMul" in res.output
    assert "activation bits" in res.output
    row = next(line for line in res.output.splitlines() if names[0] in line)
    assert "-> 3" in row  # the activation-bits change is shown (it was applied silently)
    assert "qonnx-vs-onnxruntime: ok" in res.output
    m = ModelWrapper(str(out))
    rec = json.loads(m.get_metadata_prop("nashc.SetChannelWidth"))
    assert rec[0]["kept"] == list(range(16)) and rec[0]["rank"] == "first"
    assert compare_levels(m).ok
    assert not [p for p in out.parent.iterdir() if p.name != "narrow.onnx"]  # no temp file


@pytest.mark.parametrize("args,msg", [
    ([], "nothing to do"),
    (["--width", "nope=0.5"], "matches no node name in the graph (its layers:"),
    (["--width", "*=2"], "narrowed"),
])
def test_rewrite_cli_errors(tfc_factory, tmp_path, args, msg):
    src = tmp_path / "tfc.onnx"
    onnx.save_model(tfc_factory().model, str(src))
    res = CliRunner().invoke(cli, ["rewrite", str(src), *args])
    assert res.exit_code == 2 and msg in res.output, res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfc.onnx"]


def test_rewrite_cli_output_layer(tfc_factory, tmp_path):
    src = tmp_path / "tfc.onnx"
    onnx.save_model(tfc_factory().model, str(src))
    last = [n.name for n in tfc_factory().graph.node if n.op_type == "Gemm"][-1]
    res = CliRunner().invoke(cli, ["rewrite", str(src), "--width", f"{last}=0.5"])
    assert res.exit_code == 2 and "graph output" in res.output, res.output
    assert [p.name for p in tmp_path.iterdir()] == ["tfc.onnx"]


def test_rewrite_cli_calibration(tmp_path):
    import numpy as np

    src = Path(__file__).resolve().parents[2] / "examples" / "models" / "tfc_digits_w4a4.onnx"
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).integers(0, 256, (8, 1, 8, 8)).astype(np.float32))
    out = tmp_path / "narrow.onnx"
    res = CliRunner().invoke(cli, ["rewrite", str(src), "-o", str(out), "--width", "fc0=0.5",
                                   "--calibration", str(calib)])
    assert res.exit_code == 0, res.output
    assert "compensated (affine, 8 calibration samples): fc1" in res.output
    assert "fc1_compensation" in {n.name for n in ModelWrapper(str(out)).graph.node}
    np.save(calib, np.zeros((8, 3, 8, 8), np.float32))
    res = CliRunner().invoke(cli, ["rewrite", str(src), "-o", str(tmp_path / "x.onnx"),
                                   "--width", "fc0=0.5", "--calibration", str(calib)])
    assert res.exit_code == 2 and "must be N x 1 x 8 x 8" in res.output, res.output
    assert not (tmp_path / "x.onnx").exists()


def test_widths_in_one_residual_group_take_the_narrowest():
    """Layers joined by a residual add share channels: any order of their width rules
    gives the narrowest of the widths."""
    from helpers.graphs import conv_net

    for rules in ([("width", "c1", 0.5), ("width", "c2", 0.75)],
                  [("width", "c2", 0.75), ("width", "c1", 0.5)]):
        model = conv_net(3, 1, 4, residual=True).transform(ApplyChoices(rules))
        assert layer_summary(model)["c1"][1] == 4 and layer_summary(model)["c2"][1] == 4
