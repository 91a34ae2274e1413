"""Model kinds 11 and 14 (issue 12): structure FINN's own flows lower (Concat branches,
MaxPool before the activation) is lowered and verified through level 3; what FINN cannot
lower (a float pool between layers, per-channel activation scales, a float model) is
refused naming the user's layers (FINN renames nodes) and FINN's reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.brevitas_nets import (
    concat_net,
    export,
    float_avgpool_net,
    float_net,
    per_channel_act_net,
    pool_before_act_net,
)

from nashc.cli import cli
from nashc.runtime.golden import load_model
from nashc.targets.boards import get_board
from nashc.targets.lower import UnsupportedNodesError, lower_to_hw

pytestmark = pytest.mark.finn

LOWERS = {
    "concat_shared_quant": lambda: concat_net(shared=True),
    "concat_two_quants": lambda: concat_net(shared=False),
    "maxpool_before_act": pool_before_act_net,
}


@pytest.mark.parametrize("kind", sorted(LOWERS))
def test_lowers_and_verifies(tmp_path: Path, kind: str) -> None:
    path = export(LOWERS[kind](), (1, 3, 8, 8), tmp_path / f"{kind}.onnx")
    out = tmp_path / "v.json"
    result = CliRunner().invoke(cli, ["verify", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [lv["name"] for lv in report["levels"]][-1] == "finn-dataflow-vs-qonnx"
    assert report["ok"]
    if kind.startswith("concat"):
        lowered = lower_to_hw(load_model(path), get_board("u250"), 200.0)
        ops = {n.op_type for n in lowered.dataflow.graph.node}
        assert "StreamingConcat_hls" in ops and "DuplicateStreams_hls" in ops
        assert not any(op.startswith("Shuffle") for op in ops)


# kind -> (builder, the user's node names the error must give, words of the reason)
REFUSED = {
    "float_avgpool": (float_avgpool_net, ["/body/body.3/AveragePool", "/body/body.4/Conv"],
                      "Input is not int"),
    "per_channel_scale": (per_channel_act_net, ["/body/body.4/MatMul"],
                          "per-channel float scale"),
    "float_model": (float_net, ["/body/body.0/Conv", "/body/body.3/Gemm"], "the model is not quantized"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_refused_naming_the_users_layers(tmp_path: Path, kind: str) -> None:
    build, names, reason = REFUSED[kind]
    path = export(build(), (1, 3, 8, 8), tmp_path / f"{kind}.onnx")
    with pytest.raises(UnsupportedNodesError) as info:
        lower_to_hw(load_model(path), get_board("u250"), 200.0)
    listed = [name for name, _ in info.value.nodes]
    for name in names:
        assert any(x.startswith(name) for x in listed), listed
        assert any(k.startswith(name) and reason in v
                   for k, v in info.value.reasons.items()), info.value.reasons
    # the layout transposes FINN inserted are not what the user is told about
    assert not any(op == "Transpose" for _, op in info.value.nodes) or kind == "float_model"
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert names[0] in result.output and reason in result.output


def test_bit_width_above_8_is_named(tmp_path: Path) -> None:
    import brevitas.nn as qnn
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                        qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4),
                        qnn.QuantReLU(bit_width=12, return_quant_tensor=True), nn.Flatten(),
                        qnn.QuantLinear(4 * 6 * 6, 10, bias=False, weight_bit_width=4))
    path = export(net, (1, 3, 8, 8), tmp_path / "wide.onnx")
    with pytest.raises(UnsupportedNodesError) as info:
        lower_to_hw(load_model(path), get_board("u250"), 200.0)
    assert any("bit width 12 > 8" in v for v in info.value.reasons.values()), str(info.value)
