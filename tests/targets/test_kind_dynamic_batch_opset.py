"""Model kinds 8 and 9 (issue 12): Brevitas exports with a dynamic batch axis and exports
at old opsets are verified through level 3 and estimated, saying what loading changed."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from helpers.brevitas_nets import conv_net, export, fc_net
from helpers.nash import loaded_net

from nashc.cli import cli
from nashc.dsl.errors import NashcError
from nashc.runtime.golden import load_model, random_inputs, run_onnxruntime, run_qonnx
from nashc.runtime.load import MIN_OPSET, load_notes, load_onnx_network, normalise_model

pytestmark = pytest.mark.finn

NETS = {"conv": (conv_net, (1, 3, 8, 8)), "fc": (fc_net, (1, 1, 8, 8))}
# (label, export keyword arguments)
KINDS = [("dynamic_batch", {"dynamic_batch": True}), ("opset9", {"opset": 9}),
         ("opset11", {"opset": 11}),
         ("dynamic_batch_opset10", {"dynamic_batch": True, "opset": 10})]


def _export(tmp_path: Path, net: str, kw: dict) -> Path:
    build, shape = NETS[net]
    return export(build(), shape, tmp_path / f"{net}.onnx", **kw)


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("label,kw", KINDS, ids=[k for k, _ in KINDS])
def test_verify_through_level_3(tmp_path: Path, net: str, label: str, kw: dict) -> None:
    path = _export(tmp_path, net, kw)
    raw = onnx.load(str(path))
    if "dynamic_batch" in label:
        assert raw.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    out = tmp_path / "v.json"
    result = CliRunner().invoke(cli, ["verify", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    report = json.loads(out.read_text())
    assert [lv["name"] for lv in report["levels"]] == ["qonnx-vs-onnxruntime",
                                                       "finn-dataflow-vs-qonnx"]
    assert report["ok"] is True
    if "dynamic_batch" in label:
        assert "dynamic batch axis" in result.output and "fixed to 1" in result.output
    if "opset" in label:
        assert f"converted to {MIN_OPSET}" in result.output


@pytest.mark.parametrize("label,kw", KINDS[:2], ids=[k for k, _ in KINDS[:2]])
def test_loaded_model_is_batch_1_at_opset_13(tmp_path: Path, label: str, kw: dict) -> None:
    path = _export(tmp_path, "conv", kw)
    model = load_model(path)
    assert model.get_tensor_shape(model.graph.input[0].name)[0] == 1
    assert model.get_tensor_shape(model.graph.output[0].name)[0] == 1
    opset = {o.domain: o.version for o in model.model.opset_import}[""]
    assert opset >= MIN_OPSET
    assert len(load_notes(model)) == 1
    onnx.checker.check_model(model.model)
    # the normalised graph computes what the export computes: qonnx == onnxruntime, and
    # the same graph loaded as a `network ... from` model too
    x = random_inputs(model, 3)
    a = run_qonnx(model, x)
    b = run_onnxruntime(model, x)
    name = model.graph.output[0].name
    assert (a[name] == b[name]).all()
    net = load_onnx_network(path)
    assert net.get_tensor_shape(net.graph.input[0].name)[0] == 1


@pytest.mark.parametrize("net", sorted(NETS))
def test_estimate_dynamic_batch(tmp_path: Path, net: str) -> None:
    path = _export(tmp_path, net, {"dynamic_batch": True})
    out = tmp_path / "est"
    result = CliRunner().invoke(cli, ["estimate", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "fixed to 1" in result.output
    perf = json.loads((out / "estimate_network_performance.json").read_text())
    assert perf["max_cycles"] > 0 and perf["estimated_throughput_fps"] > 0


def test_dynamic_spatial_axis_is_refused(tmp_path: Path) -> None:
    path = _export(tmp_path, "conv", {"dynamic_batch": True})
    proto = onnx.load(str(path))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_param = "height"
    bad = tmp_path / "dyn_h.onnx"
    onnx.save(proto, str(bad))
    result = CliRunner().invoke(cli, ["verify", str(bad)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "dynamic axis 2" in result.output and "'inp'" in result.output
    from qonnx.core.modelwrapper import ModelWrapper

    with pytest.raises(NashcError, match="dynamic axis 2"):
        normalise_model(ModelWrapper(proto))


def test_in_memory_opset9_graph_runs_in_onnxruntime(tmp_path: Path) -> None:
    """A graph not loaded through `load_model` (opset 9, with Quant nodes) is converted
    before its standard-ONNX lowering emits Round (opset 11)."""
    from qonnx.core.modelwrapper import ModelWrapper

    path = _export(tmp_path, "fc", {"opset": 9})
    model = ModelWrapper(str(path))
    assert {o.domain: o.version for o in model.model.opset_import}[""] == 9
    x = random_inputs(model, 1)
    name = model.graph.output[0].name
    assert (run_qonnx(model, x)[name] == run_onnxruntime(model, x)[name]).all()


def test_compile_prints_the_load_notes_unless_quiet(tmp_path: Path) -> None:
    """`compile` on a `network ... from` file prints what loading changed ("note: ...",
    as estimate and verify do), except with --quiet."""
    path = _export(tmp_path, "fc", {"dynamic_batch": True, "opset": 10})
    src = tmp_path / "net.nash"
    src.write_text(loaded_net(path.name))
    runner = CliRunner()
    res = runner.invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if "note: " in line and "fc.onnx: " in line]
    assert any("dynamic batch axis" in n and "fixed to 1" in n for n in notes), res.output
    assert any(f"converted to {MIN_OPSET}" in n for n in notes), res.output
    res = runner.invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out2"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "fc.onnx: " not in res.output
    assert "dynamic batch axis" not in res.output
