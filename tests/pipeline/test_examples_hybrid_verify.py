"""Golden checks on the example networks with every middle conv/fc layer converted to
shift, and again to adder (the first and last layers stay multiplications): levels 1, 2,
3 (FINN dataflow) and 4 (generated RTL of the hybrid layers in Verilator) must all match; and narrowed by the graph width pass."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from nashc.dsl import load
from nashc.runtime.build import (
    LayerChoice,
    build_module,
    calibrate_batchnorm,
    export_qonnx_model,
)
from nashc.runtime.golden import compare_levels
from nashc.targets.boards import get_board
from nashc.targets.hybrid_lowering import hybrid_extra_steps
from nashc.targets.lower import lower_to_hw
from nashc.targets.verify import verify_dataflow

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
    assert f"{op.capitalize()}MVAU_rtl" in kinds
    diff, ok = verify_dataflow(model, lowered, 0)
    assert ok, diff
    # level 4: each hybrid layer's generated RTL in Verilator == its python execution
    from nashc.targets.rtl.level4 import verify_rtl

    checks = verify_rtl(model, lowered, tmp_path / "rtl", seed=0, max_real=16, n_random=4)
    assert len(checks) == len(choices), [c.name for c in checks]
    assert all(c.ok for c in checks), [c.to_json() for c in checks]


@pytest.mark.parametrize("example", ["cnv_cifar.nash", "resnet8_cifar.nash"])
def test_example_narrowed_by_the_graph_pass_verifies(tmp_path, example):
    """Every middle layer at half width by `SetChannelWidth` (residual streams sliced
    together), with compensation from a calibration batch: levels 2 and 3 match."""
    from nashc.passes.width import SetChannelWidth, layer_inputs

    net = load(EXAMPLES / example).network
    compute = [layer.name for layer in net.layers if layer.kind in ("conv", "fc")]
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (16, *net.input_shape)).float()
    module = calibrate_batchnorm(build_module(net, {}), batch)
    model = export_qonnx_model(module, net, tmp_path / "m.onnx")
    acts = layer_inputs(model, batch[:8].numpy())
    narrow = model.transform(SetChannelWidth(",".join(compute[:-1]), 0.5, activations=acts))
    result = compare_levels(narrow, seed=0)
    assert result.ok, result.to_json()
    assert any(n.name.endswith("_compensation") for n in narrow.graph.node)
    lowered = lower_to_hw(ModelWrapper(copy.deepcopy(narrow.model)), get_board("u250"),
                          200.0, hybrid_extra_steps())
    diff, ok = verify_dataflow(narrow, lowered, 0)
    assert ok, diff
