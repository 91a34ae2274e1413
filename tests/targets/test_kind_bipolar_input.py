"""Model kind 12 (issue 12): a bipolar network input. Declared in the language it is
refused by `check` at its datatype; a Brevitas model with one, loaded from ONNX, is
verified through level 3 (what the refusal points to)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.brevitas_nets import bipolar_input_net, export

from nashc.cli import cli

NASH = """network tiny {
  input 1x8x8 bipolar
  weights int4
  activations uint4
  fc fc0 out 16
  fc head out 10 weights int8
}
"""


@pytest.mark.parametrize("command", ["check", "compile"])
def test_declared_bipolar_input_is_refused_at_its_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "bip.nash"
    path.write_text(NASH)
    args = [command, str(path)] + (["-o", str(tmp_path / "out")] if command == "compile" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "bip.nash:2:15: error: a bipolar network input is not supported" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.finn
def test_loaded_bipolar_input_model_verifies(tmp_path: Path) -> None:
    path = export(bipolar_input_net(), (1, 1, 8, 8), tmp_path / "bip.onnx")
    out = tmp_path / "v.json"
    result = CliRunner().invoke(cli, ["verify", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [lv["name"] for lv in report["levels"]] == ["qonnx-vs-onnxruntime",
                                                       "finn-dataflow-vs-qonnx"]
    assert report["ok"]
