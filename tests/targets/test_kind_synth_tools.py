"""Model kind 13 (issue 12): FINN's builder on the hand-off path. Its Python dependencies
are installed (psutil, which finn-plus does not declare) and `--synth` lists everything
missing, not only Vivado."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.brevitas_nets import export, fc_net

from nashc.cli import cli
from nashc.targets.boards import get_board
from nashc.targets.handoff import missing_builder_modules, missing_synthesis_tools

XILINX_VARS = ("XILINX_VIVADO", "XILINX_HLS", "XILINX_VITIS", "PLATFORM_REPO_PATHS",
               "FINN_DEPS")


def test_builder_imports_psutil_and_it_is_installed() -> None:
    assert importlib.util.find_spec("psutil") is not None
    # without Vivado the import stops at FINN's xsi module, no longer at psutil
    code = ("from finn.util.settings import initialize_dummy_settings\n"
            "initialize_dummy_settings()\n"
            "import finn.builder.build_dataflow\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert "No module named 'psutil'" not in res.stderr
    assert all(mod != "psutil" for mod, _ in missing_builder_modules())


def test_missing_builder_module_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def hide_psutil(name: str, *args):  # type: ignore[no-untyped-def]
        return None if name == "psutil" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide_psutil)
    found = dict(missing_builder_modules())
    assert "psutil" in found and found["psutil"].startswith("finn.")


@pytest.mark.parametrize("board,alveo", [("u250", True), ("pynq-z1", False)])
def test_tool_check_lists_everything_missing(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path, board: str, alveo: bool) -> None:
    for var in XILINX_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FINN_DEPS", str(tmp_path / "deps"))
    monkeypatch.setenv("PLATFORM_REPO_PATHS", str(tmp_path / "platforms"))
    missing = "\n".join(missing_synthesis_tools(get_board(board)))
    assert "XILINX_VIVADO" in missing and "XILINX_HLS" in missing
    assert "finn-hlslib not found" in missing and str(tmp_path / "deps") in missing
    assert ("XILINX_VITIS" in missing) == alveo
    assert ("platform" in missing) == alveo
    (tmp_path / "deps" / "finn-hlslib").mkdir(parents=True)
    assert "finn-hlslib" not in "\n".join(missing_synthesis_tools(get_board(board)))


@pytest.mark.finn
def test_cli_synth_lists_every_missing_tool(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    for var in XILINX_VARS:
        monkeypatch.delenv(var, raising=False)
    path = export(fc_net(), (1, 1, 8, 8), tmp_path / "fc.onnx")
    result = CliRunner().invoke(cli, ["estimate", str(path), "-o", str(tmp_path / "est"),
                                      "--synth"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for item in ("XILINX_VIVADO", "XILINX_HLS", "XILINX_VITIS", "finn-hlslib"):
        assert item in result.output
    assert (tmp_path / "est" / "build_config.json").is_file()
