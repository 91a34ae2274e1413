"""Lowering through FINN, estimates, reports, the build-config hand-off and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from nashc.dsl.errors import NashcError
from nashc.targets.boards import get_board
from nashc.targets.estimate import apply_folding_setfolding, estimate, write_reports
from nashc.targets.handoff import load_build_config, write_build_config
from nashc.targets.lower import UnsupportedNodesError, lower_to_hw

U250 = get_board("u250")


def _all_hw(model: ModelWrapper) -> bool:
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node

    return all(is_hls_node(n) or is_rtl_node(n) for n in model.graph.node)


@pytest.fixture(scope="module")
def tfc_lowered(tfc_onnx: Path):  # type: ignore[no-untyped-def]
    return lower_to_hw(ModelWrapper(str(tfc_onnx)), U250, 200.0)


@pytest.mark.finn
def test_tfc_lowers_to_hw_layers(tfc_lowered) -> None:  # type: ignore[no-untyped-def]
    df = tfc_lowered.dataflow
    assert _all_hw(df)
    ops = [n.op_type for n in df.graph.node]
    assert ops.count("MVAU_hls") == 4
    assert tfc_lowered.host_nodes == [("Reshape_0", "Reshape")]
    sdp = tfc_lowered.parent.get_nodes_by_op_type("StreamingDataflowPartition")
    assert len(sdp) == 1


@pytest.mark.finn
def test_lowering_writes_only_inside_workdir(tfc_onnx: Path, tmp_path: Path) -> None:
    import os

    before = dict(os.environ)
    lower_to_hw(ModelWrapper(str(tfc_onnx)), U250, 200.0, workdir=tmp_path / "w",
                save_steps=True)
    assert dict(os.environ) == before
    assert (tmp_path / "w" / "partitions").is_dir()
    assert sorted(p.name for p in (tmp_path / "w").glob("*.onnx"))[0] == "01_qonnx_to_finn.onnx"


@pytest.mark.finn
def test_tfc_estimate_and_reports(tfc_lowered, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folded = apply_folding_setfolding(tfc_lowered.dataflow, 10000, 200.0)
    est = estimate(folded, 200.0, U250.part)
    assert len(est.layers) == len(folded.graph.node)
    assert est.estimated_throughput_fps == pytest.approx(200e6 / est.max_cycles)
    paths = write_reports(est, folded, tmp_path)
    for name in ("estimate_layer_cycles.json", "estimate_layer_resources.json",
                 "estimate_network_performance.json", "folding_config.json", "dataflow.onnx"):
        assert paths[name].is_file()
    res = json.loads(paths["estimate_layer_resources.json"].read_text())
    assert "total" in res and res["total"]["LUT"] == est.totals["LUT"]
    perf = json.loads(paths["estimate_network_performance.json"].read_text())
    assert {"estimated_throughput_fps", "estimated_latency_ns", "max_cycles",
            "critical_path_cycles"} <= set(perf)
    fold = json.loads(paths["folding_config.json"].read_text())
    assert fold["Defaults"] == {}
    mvau = next(n.name for n in folded.graph.node if n.op_type == "MVAU_hls")
    assert {"PE", "SIMD", "ram_style", "resType", "mem_mode"} <= set(fold[mvau])
    thr = next(n.name for n in folded.graph.node if n.op_type.startswith("Thresholding"))
    assert "SIMD" not in fold[thr]  # only attributes the node has

    # the folding config re-applies with FINN's ApplyConfig to the same folding
    from finn.transformation.general import ApplyConfig

    again = tfc_lowered.dataflow.transform(ApplyConfig(str(paths["folding_config.json"])))
    assert estimate(again, 200.0, U250.part).layer_cycles == est.layer_cycles


@pytest.mark.finn
def test_build_config_loads_in_finn(tmp_path: Path) -> None:
    (tmp_path / "folding_config.json").write_text('{"Defaults": {}}')
    for name, flow in (("u250", "vitis_alveo"), ("pynq-z1", "vivado_zynq")):
        board = get_board(name)
        cfg = load_build_config(write_build_config(tmp_path, board, 250.0))
        assert cfg.board == board.finn_name and cfg.fpga_part == board.part
        assert cfg._resolve_fpga_part() == board.part
        assert cfg.synth_clk_period_ns == pytest.approx(4.0)
        assert cfg.shell_flow_type.value == flow
        assert cfg.folding_config_file == tmp_path / "folding_config.json"
        assert "estimate_reports" in [o.value for o in cfg.generate_outputs]


@pytest.mark.finn
@pytest.mark.slow
def test_cnv_estimate_equals_finn_analyses(cnv_onnx: Path) -> None:
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.op_and_param_counts import aggregate_dict_keys
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles

    lowered = lower_to_hw(ModelWrapper(str(cnv_onnx)), U250, 200.0)
    assert _all_hw(lowered.dataflow)
    folded = apply_folding_setfolding(lowered.dataflow, 1000, 200.0)
    est = estimate(folded, 200.0, U250.part)

    cycles = folded.analysis(exp_cycles_per_layer)
    res = folded.analysis(lambda m: res_estimation(m, fpgapart=U250.part))
    res["total"] = aggregate_dict_keys(res)
    perf = folded.transform(AnnotateCycles()).analysis(dataflow_performance)
    assert est.layer_cycles == cycles
    assert est.layer_resources == res
    for key, value in perf.items():
        assert est.network_performance[key] == value
    assert est.estimated_throughput_fps == pytest.approx(200e6 / perf["max_cycles"])
    assert est.estimated_latency_ns == pytest.approx(perf["critical_path_cycles"] * 5.0)
    for layer in est.layers:
        assert layer.cycles == cycles[layer.name]
        assert layer.lut == res[layer.name]["LUT"]
        assert layer.bram18 == res[layer.name]["BRAM_18K"]


@pytest.mark.finn
def test_residual_network_lowers(residual_onnx: Path) -> None:
    lowered = lower_to_hw(ModelWrapper(str(residual_onnx)), U250, 200.0)
    ops = [n.op_type for n in lowered.dataflow.graph.node]
    assert _all_hw(lowered.dataflow)
    assert "DuplicateStreams_hls" in ops and "ElementwiseAdd_hls" in ops
    assert "GlobalAccPool_hls" in ops


# --- unsupported ops ---------------------------------------------------------------------


def _with_sin(tmp_path: Path, tfc_onnx: Path, op: str = "Sin") -> Path:
    """TFC with an unsupported node inserted between the first and second MatMul."""
    m = ModelWrapper(str(tfc_onnx))
    matmuls = [n for n in m.graph.node if n.op_type in ("MatMul", "Gemm")]
    consumer = matmuls[1]
    src = consumer.input[0]
    new = src + "_sin"
    attrs = {"axis": -1} if op == "LayerNormalization" else {}
    inputs = [src]
    if op == "LayerNormalization":
        shape = m.get_tensor_shape(src)
        m.set_initializer("ln_scale", np.ones(shape[-1], dtype=np.float32))
        inputs.append("ln_scale")
    node = helper.make_node(op, inputs, [new], name="Weird_0", **attrs)
    idx = list(m.graph.node).index(consumer)
    m.graph.node.insert(idx, node)
    consumer.input[0] = new
    m.graph.value_info.append(helper.make_tensor_value_info(new, TensorProto.FLOAT, None))
    out = tmp_path / f"with_{op}.onnx"
    m.save(str(out))
    return out


@pytest.mark.finn
def test_unsupported_op_named(tfc_onnx: Path, tmp_path: Path) -> None:
    path = _with_sin(tmp_path, tfc_onnx)
    with pytest.raises(UnsupportedNodesError) as info:
        lower_to_hw(ModelWrapper(str(path)), U250, 200.0)
    assert isinstance(info.value, NashcError)
    assert [op for name, op in info.value.nodes if name.startswith("Weird_0 ")] == ["Sin"]
    assert "Weird_0 (now Sin_0) (Sin)" in str(info.value)


@pytest.mark.finn
def test_cli_estimate_unsupported_leaves_no_dir(tfc_onnx: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from nashc.cli import cli

    path = _with_sin(tmp_path, tfc_onnx)
    work = tmp_path / "run"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["estimate", str(path), "--target", "u250"])
    assert result.exit_code == 2, result.output
    assert "Weird_0" in result.output and "(Sin)" in result.output
    assert list(work.iterdir()) == []


@pytest.mark.finn
def test_cli_estimate_writes_dir_and_synth_reports_missing(
        tfc_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from nashc.cli import cli

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    out = tmp_path / "est"
    result = CliRunner().invoke(cli, ["estimate", str(tfc_onnx), "--target", "pynq-z1",
                                      "--fps", "5000", "-o", str(out), "--synth"])
    assert result.exit_code == 2, result.output
    assert "XILINX_VIVADO is not set" in result.output
    assert "MVAU_hls_0" in result.output
    names = {p.name for p in out.iterdir()}
    assert {"dataflow.onnx", "folding_config.json", "build_config.json",
            "estimate_layer_cycles.json", "estimate_layer_resources.json",
            "estimate_network_performance.json", "dataflow_parent.onnx"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".est")]
    cfg = load_build_config(out / "build_config.json")
    assert cfg.board == "Pynq-Z1"


def test_cli_targets_lists_u250_first() -> None:
    from click.testing import CliRunner

    from nashc.cli import cli

    result = CliRunner().invoke(cli, ["targets"])
    assert result.exit_code == 0
    lines = [ln for ln in result.output.splitlines() if "xc" in ln]
    assert "u250" in lines[0] and "xcu250-figd2104-2L-e" in lines[0]


@pytest.mark.finn
def test_a_dsp_free_budget_keeps_mvaus_off_dsp_rtl_units(tmp_path: Path) -> None:
    """README's example `estimate MODEL --budget "lut 30%, dsp 0"` on the shipped model
    found no fitting design: FINN specialised the head (signed 8-bit weights, no
    thresholds) to its DSP-based MVAU_rtl, 1 DSP over a budget of 0. With a DSP budget
    of 0 MVAUs ask for their HLS unit, whose LUT datapath the search can use."""
    from click.testing import CliRunner

    from nashc.cli import cli

    model = Path(__file__).resolve().parents[2] / "examples" / "models" / \
        "tfc_digits_w4a4.onnx"
    for dsp, expect_rtl in (("dsp 0", False), ("dsp 10%", True)):
        out = tmp_path / dsp.replace(" ", "_").replace("%", "")
        res = CliRunner().invoke(cli, ["estimate", str(model), "--target", "u250",
                                       "--budget", f"lut 30%, {dsp}", "-o", str(out)])
        assert res.exit_code == 0, res.output
        search = json.loads((out / "folding_search.json").read_text())
        dataflow = ModelWrapper(str(out / "dataflow.onnx"))
        ops = {n.op_type for n in dataflow.graph.node}
        assert ("MVAU_rtl" in ops) == expect_rtl, ops  # FINN's default when DSP is allowed
        if not expect_rtl:
            assert search["nashc"]["feasible"] and search["design_check"]["fits"], search
            assert search["design_check"]["resources"]["DSP"] == 0


@pytest.mark.finn
def test_estimate_with_a_budget_nothing_fits_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """`estimate --budget` where no folding fits printed 0-fps rows and exited 0 with the
    design written; now the figures, then one error line with the overrun, exit 2."""
    from click.testing import CliRunner

    from nashc.cli import cli

    model = Path(__file__).resolve().parents[2] / "examples" / "models" / \
        "tfc_digits_w4a4.onnx"
    out = tmp_path / "est"
    res = CliRunner().invoke(cli, ["estimate", str(model), "--budget", "lut 0.001%",
                                   "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "error: no folding of tfc_digits_w4a4.onnx fits the budget on u250" in res.output
    assert "(the closest design needs LUT" in res.output and "> 15)" in res.output
    assert "whole design" in res.output and "Traceback" not in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
