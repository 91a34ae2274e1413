"""Model kind 6, second half (issue 12): an fc layer feeding a conv (a QuantLinear whose
output is reshaped, unsqueezed or permuted to C x L, or C x H x W, for a QuantConv1d /
QuantConv2d, as in RadioML- or decoder-style nets). FINN's InferShuffle made the
Reshape + layout Transpose a `Shuffle` that its SpecializeLayers does not specialise;
nashc permutes the fc layer's weight columns and thresholds so that it writes the
conv's NHWC order (`AbsorbReshapeTransposeIntoFc`, the mirror of FINN's
RemoveCNVtoFCFlatten) and the Reshape becomes FINN's pass-through `Reshape` layer.
A reorder between layers it cannot absorb (the user's own Transpose between two convs)
is refused naming that node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import brevitas_models as bm
from helpers.nash import loaded_net

from nashc.cli import cli
from nashc.runtime.golden import compare_levels, load_model
from nashc.targets.boards import get_board
from nashc.targets.lower import UnsupportedNodesError, lower_to_hw
from nashc.targets.verify import verify_level3

pytestmark = pytest.mark.finn


def _export(tmp_path: Path, dims: int = 1, how: str = "reshape", wbits: int = 4,
            abits: int = 4, channels: int = 4) -> Path:
    length = 16 if dims == 1 else 4
    model = bm.fc_to_conv(dims, channels, length, wbits, abits, how)
    return bm.export(model, (1, 32), tmp_path / f"fc_to_conv{dims}d_{how}.onnx")


@pytest.mark.parametrize("dims,how,wbits,abits", [
    (1, "reshape", 4, 4),
    (1, "unsqueeze", 4, 4),
    (1, "permute", 4, 4),
    (2, "reshape", 4, 4),
    pytest.param(1, "reshape", 2, 2, marks=pytest.mark.slow),
    pytest.param(1, "permute", 8, 8, marks=pytest.mark.slow),
    pytest.param(2, "reshape", 8, 4, marks=pytest.mark.slow),
])
def test_fc_feeding_a_conv_lowers_bit_exact(dims, how, wbits, abits, tmp_path):
    path = _export(tmp_path, dims, how, wbits, abits)
    lowered = lower_to_hw(load_model(path), get_board("u250"), 200.0)
    ops = [n.op_type for n in lowered.dataflow.graph.node]
    assert not any(op.startswith("Shuffle") for op in ops), ops
    assert ops.count("Reshape_rtl") == 1, ops
    # the fc's MVAU writes the conv's input: MVAU -> Reshape -> FMPadding -> SWG
    i = ops.index("Reshape_rtl")
    assert ops[i - 1].startswith("MVAU") and ops[i + 1].startswith("FMPadding"), ops
    assert sum(op.startswith("MVAU") for op in ops) == 3
    for seed in (0, 1):
        level2 = compare_levels(load_model(path), seed=seed)
        assert level2.ok, level2.dumps()
        res = verify_level3(load_model(path), lowered, seed)
        assert res.ok, res
        codes = [t for t in res.tensors if t.kind == "integer codes"]
        assert codes and all(t.max_abs_diff == 0 for t in codes)


def test_a_transpose_between_convs_is_refused_by_name(tmp_path):
    path = bm.export(bm.transposed_conv_input_net(), (1, 2, 4, 8), tmp_path / "tr.onnx")
    with pytest.raises(UnsupportedNodesError) as info:
        lower_to_hw(load_model(path), get_board("u250"), 200.0)
    names = [name for name, _ in info.value.nodes]
    assert any(name.startswith("Transpose_0") for name in names), names
    text = str(info.value)
    assert "reorders the stream (FINN's Shuffle layer)" in text
    assert "transpose decomposition" in text
    res = CliRunner().invoke(cli, ["estimate", str(path), "-o", str(tmp_path / "est")])
    assert res.exit_code == 2, res.output
    assert "Transpose_0" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "est").exists()


def test_fc_to_conv1d_from_onnx_through_the_cli(tmp_path):
    """estimate, verify and compile on the file as a user runs them."""
    path = _export(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["estimate", str(path), "-o", str(tmp_path / "est")])
    assert res.exit_code == 0, res.output
    layers = json.loads((tmp_path / "est" / "estimate_layer_cycles.json").read_text())
    assert any(name.startswith("Reshape_rtl") for name in layers)
    res = runner.invoke(cli, ["verify", str(path), "--json", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True
    src = tmp_path / "fcc.nash"
    src.write_text(loaded_net(path.name, 'wbits "MatMul_0" in {2, 4}', "lut 5%", keep=2,
                              name="fcc"))
    res = runner.invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["golden"]["ok"] is True
    assert [lv["name"] for lv in report["golden"]["levels"]][-1] == "finn-dataflow-vs-qonnx"
