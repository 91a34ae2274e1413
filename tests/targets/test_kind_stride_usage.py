"""Model kind 15 (issue 12): strides that do not divide the map floor the output as
PyTorch and FINN do (built, lowered and verified through level 3); `estimate` warns when
the design needs more than the board has."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers.brevitas_nets import export, fc_net

from nashc.cli import cli
from nashc.dsl import parse
from nashc.dsl.check import check_program
from nashc.runtime.build import LayerChoice, build_module, calibrate_batchnorm, export_qonnx_model
from nashc.targets.boards import get_board
from nashc.targets.hybrid_lowering import hybrid_extra_steps
from nashc.targets.lower import lower_to_hw
from nashc.targets.verify import verify_dataflow

pytestmark = pytest.mark.finn

NET = """network odd {{
  input 1x{hw}x{hw} uint8
  weights int4
  activations uint4
  {body}
  fc head out 10 weights int8
}}
"""

# (label, body, input size, the first layer's output shape, choices)
CASES = [
    ("conv_pad1", "conv c0 out 4 kernel 3 stride 2", 15, (4, 8, 8), {}),
    ("conv_pad0", "conv c0 out 4 kernel 3 stride 2 pad 0", 15, (4, 7, 7), {}),
    ("conv_stride3", "conv c0 out 4 kernel 3 stride 3 pad 0", 13, (4, 4, 4), {}),
    ("shift_conv", "conv c0 out 4 kernel 3\n  conv c1 out 4 kernel 3 stride 2", 11,
     (4, 11, 11), {"c1": LayerChoice(op="shift")}),
    ("block", "conv c0 out 4 kernel 3\n  block b residual out 8 stride 2", 9, (4, 9, 9), {}),
]


@pytest.mark.parametrize("label,body,hw,first,choices", CASES, ids=[c[0] for c in CASES])
def test_odd_map_strides_lower_and_verify(tmp_path: Path, label: str, body: str, hw: int,
                                          first: tuple[int, ...], choices: dict) -> None:
    net = check_program(parse(NET.format(hw=hw, body=body), "odd.nash")).network
    assert net.layers[0].out_shape == first
    torch.manual_seed(0)
    module = build_module(net, choices)
    x = torch.randint(0, 256, (8, *net.input_shape)).float()
    calibrate_batchnorm(module, x)
    with torch.no_grad():
        assert tuple(module(x[:1]).shape) == (1, 10)  # PyTorch agrees with the language
    model = export_qonnx_model(module, net, tmp_path / "odd.onnx")
    lowered = lower_to_hw(model, get_board("u250"), 200.0, hybrid_extra_steps())
    _, ok = verify_dataflow(model, lowered, 0)
    assert ok


def test_estimate_warns_above_the_board(tmp_path: Path) -> None:
    path = export(fc_net(hw=16, hidden=64), (1, 1, 16, 16), tmp_path / "fc.onnx")
    runner = CliRunner()
    small = runner.invoke(cli, ["estimate", str(path), "-t", "pynq-z1", "--fps", "1e9",
                                "-o", str(tmp_path / "small")])
    assert small.exit_code == 0, small.output
    assert "warning: the design does not fit the pynq-z1: LUT" in small.output
    big = runner.invoke(cli, ["estimate", str(path), "-t", "u250", "--fps", "1e9",
                              "-o", str(tmp_path / "big")])
    assert big.exit_code == 0, big.output
    assert "does not fit" not in big.output
