"""`nashc verify` runs levels 2 and 3 on a hybrid network exported by nashc."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from nashc.cli import cli
from nashc.dsl import parse
from nashc.dsl.check import check_program
from nashc.runtime.build import (
    LayerChoice,
    build_module,
    calibrate_batchnorm,
    export_qonnx_model,
)

pytestmark = pytest.mark.finn

NET = """
network small {
  input 1x8x8 uint8
  weights int4
  activations uint4
  conv stem out 8 kernel 3
  conv mid out 8 kernel 3
  pool gap global avg
  fc head out 10 weights int8
}
"""


def _hybrid_model(tmp_path, op: str):  # type: ignore[no-untyped-def]
    """NET with its middle conv as a `op` layer, exported to QONNX; BatchNorm calibrated
    so the hybrid layer's outputs reach the next quantizer."""
    program = check_program(parse(NET, "small.nash"))
    torch.manual_seed(0)
    module = build_module(program.network, {"mid": LayerChoice(op=op)})
    calibrate_batchnorm(module, torch.randint(0, 256, (16, 1, 8, 8)).float())
    path = tmp_path / "m.onnx"
    export_qonnx_model(module, program.network, path)
    return path


@pytest.mark.parametrize("op", ["shift", "adder"])
def test_verify_levels_2_and_3_on_a_hybrid_conv_net(tmp_path, op):
    path = _hybrid_model(tmp_path, op)
    out = tmp_path / "v.json"
    result = CliRunner().invoke(cli, ["verify", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    names = [lv["name"] for lv in report["levels"]]
    assert names == ["qonnx-vs-onnxruntime", "finn-dataflow-vs-qonnx"]
    assert report["ok"] is True
    # one table: a row per compared tensor of each level, with its comparison kind,
    # max |diff|, tolerance and result; the level's own max |diff| is one of its rows
    lines = result.output.splitlines()
    assert sum("level" in ln and "max |diff|" in ln and "tolerance" in ln for ln in lines) == 1
    assert "level:" not in result.output
    for lv in report["levels"]:
        rows = [ln for ln in lines if lv["name"] in ln]
        assert len(rows) == len(lv["tensors"]) >= 1
        assert all("ok" in r for r in rows)
        assert any(f"{lv['max_abs_diff']:.3g}" in r for r in rows)


def test_verify_missing_file_is_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "nope.onnx")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize("op", ["shift", "adder"])
def test_verify_rtl_runs_level_4_on_the_hybrid_layer(tmp_path, op):
    path = _hybrid_model(tmp_path, op)
    out = tmp_path / "v.json"
    result = CliRunner().invoke(cli, ["verify", str(path), "--rtl", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    names = [lv["name"] for lv in report["levels"]]
    assert names[-1] == "rtl-vs-finn-python" and names.count("rtl-vs-finn-python") == 1
    (layer,) = report["rtl_layers"]
    assert layer["op_type"] == f"{op.capitalize()}MVAU_rtl"
    assert layer["ok"] and layer["mismatches"] == 0 and layer["vectors"] > 16
    assert layer["cycles"] >= layer["vectors"]
    assert "level 4" in result.output


def test_verify_rtl_without_finn_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "m.onnx"), "--rtl",
                                      "--no-finn"])
    assert result.exit_code == 2
    assert "--rtl needs level 3" in result.output
