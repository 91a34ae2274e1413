"""Issue 12: 1-bit unsigned datatypes in a declared network. Brevitas exports every
1-bit quantizer as a BipolarQuant (-1/+1) whatever its sign, so `activations uint1`
passed `check` and then failed inside FINN ("MultiThreshold_1: out_scale=1 or bipolar
output needed"), and a uint1 input became a sign of its 0/1 pixels. `check` refuses
each at its file:line:col; `bipolar` and 2+ bits are unaffected."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nashc.cli import cli

NET = """network n {{
  input 1x8x8 {inp}
{body}
  fc head out 10
}}
space {{
  abits {sel} in {{{abits}}}
}}
"""

REASON = ("Brevitas exports every 1-bit quantizer as a BipolarQuant (-1/+1) whatever its "
          "sign, so a 0/1 {what} cannot reach FINN as 0/1")


@pytest.mark.parametrize("inp,body,sel,abits,line,col,what", [
    ("uint8", "  activations uint1\n  fc f0 out 32", "f0", "2, 3", 3, 3, "activations"),
    ("uint8", "  fc f0 out 32 activations uint1", "f0", "2", 3, 28, "activations"),
    ("uint8", "  conv c0 out 4 kernel 3 activations uint1\n  fc f0 out 32", "f0", "2",
     3, 38, "activations"),
    ("uint8", "  block b0 residual out 4 activations uint1\n  fc f0 out 32", "f0", "2",
     3, 39, "activations"),
    ("uint8", "  repeat 2 {\n    conv c out 4 kernel 3 activations uint1\n  }\n"
     "  fc f0 out 32", "f0", "2", 4, 39, "activations"),
    ("uint8", "  weights uint1\n  fc f0 out 32", "f0", "2", 3, 3, "weights"),
    ("uint8", "  fc f0 out 32 weights uint1", "f0", "2", 3, 24, "weights"),
    ("uint1", "  fc f0 out 32", "f0", "2", 2, 15, "inputs"),
])
def test_uint1_is_refused_where_it_is_written(write, inp, body, sel, abits, line, col, what):
    path = write(NET.format(inp=inp, body=body, sel=sel, abits=abits))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    assert f"{path}:{line}:{col}: error: uint1 {what} are not supported in a declared " \
        "network: " + REASON.format(what=what.rstrip("s")) in res.output
    assert "expected: bipolar (a sign, -1/+1) or uint2 .. uint8" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("abits,col", [("1", 16), ("2, 1", 19), ("1, 4, 8", 16)])
def test_an_abits_choice_of_1_is_refused_at_the_option(write, abits, col):
    path = write(NET.format(inp="uint8", body="  fc f0 out 32", sel="f0", abits=abits))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    assert f"{path}:7:{col}: error: abits 1 (uint1 activations) is not supported: " \
        + REASON.format(what="activation") in res.output


@pytest.mark.parametrize("body", ["  activations bipolar\n  fc f0 out 32",
                                  "  fc f0 out 32 weights bipolar activations uint2",
                                  "  activations uint2\n  fc f0 out 32"])
def test_bipolar_and_two_bits_still_pass(write, body):
    path = write(NET.format(inp="uint8", body=body, sel="f0", abits="2, 8"))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 0, res.output


def test_brevitas_exports_a_1_bit_relu_as_bipolar(tmp_path):
    """The reason given: a 1-bit unsigned QuantReLU is exported as BipolarQuant. When a
    Brevitas release exports it as a 0/1 Quant, the refusal can be lifted."""
    import brevitas.nn as qnn
    import onnx
    import torch
    from brevitas.export import export_qonnx

    module = torch.nn.Sequential(qnn.QuantReLU(bit_width=1)).eval()
    path = tmp_path / "relu1.onnx"
    export_qonnx(module, torch.randn(1, 4), export_path=str(path), dynamo=False)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "BipolarQuant" in ops and "Quant" not in ops, ops


@pytest.mark.parametrize("body,line,col,dt", [
    ("  weights uint4\n  fc f0 out 32", 3, 3, "uint4"),
    ("  fc f0 out 32 weights uint8", 3, 24, "uint8"),
    ("  conv c0 out 4 kernel 3 weights uint2\n  fc f0 out 32", 3, 34, "uint2"),
])
def test_unsigned_weights_are_refused_where_they_are_written(write, body, line, col, dt):
    """Weights are built signed (intN) or bipolar: `weights uintN` silently became intN."""
    path = write(NET.format(inp="uint8", body=body, sel="f0", abits="2"))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    assert f"{path}:{line}:{col}: error: {dt} weights are not supported in a declared " \
        "network" in res.output
    assert "expected: int2 .. int8 or bipolar" in res.output
    assert "Traceback" not in res.output
