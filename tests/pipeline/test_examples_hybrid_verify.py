"""Golden checks on the example networks with every middle conv/fc layer converted to
shift, and again to adder (the first and last layers stay multiplications): levels 1, 2
and 3 (FINN dataflow) must all match."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nashc.dsl import load
from nashc.runtime.build import (
    LayerChoice,
    build_module,
    calibrate_batchnorm,
    export_qonnx_model,
)
from nashc.runtime.golden import compare_levels
from nashc.targets.boards import get_board
from nashc.targets.hybrid_lowering import hybrid_extra_steps, verify_dataflow
from nashc.targets.lower import lower_to_hw

pytestmark = [pytest.mark.slow, pytest.mark.finn]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("op", ["shift", "adder"])
@pytest.mark.parametrize("example", ["tfc_digits.nash", "cnv_cifar.nash", "resnet8_cifar.nash"])
def test_example_with_all_middle_layers_hybrid_verifies(tmp_path, example, op):
    net = load(EXAMPLES / example).network
    compute = [layer.name for layer in net.layers if layer.kind in ("conv", "fc")]
    choices = {name: LayerChoice(op=op) for name in compute[1:-1]}
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (16, *net.input_shape)).float()
    module = calibrate_batchnorm(build_module(net, choices), batch)
    model = export_qonnx_model(module, net, tmp_path / "m.onnx")
    result = compare_levels(model, module, seed=0)
    assert result.ok, result.to_json()
    lowered = lower_to_hw(model, get_board("u250"), 200.0, hybrid_extra_steps())
    kinds = {n.op_type for n in lowered.dataflow.graph.node}
    assert f"{op.capitalize()}MVAU_hls" in kinds
    diff, ok = verify_dataflow(model, lowered, 0)
    assert ok, diff
