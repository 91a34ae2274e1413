"""The folding search on whole designs: what FINN's InsertDWC/InsertFIFO add, deep FIFOs of
residual joins, the board's I/O width, the objective, FINN tuned, and `estimate --budget`.
Every printed design must fit once FINN's insertions have run (`confirm_design`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from nashc.targets.boards import get_board
from nashc.targets.folding import (
    RESOURCES,
    SearchFolding,
    SetFoldingWithinBudget,
    build_problem,
    confirm_design,
    io_width_limit,
)
from nashc.targets.lower import lower_to_hw

logging.getLogger("finn").setLevel(logging.ERROR)
U250 = get_board("u250")


def _budget(board, frac: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    r = board.resources
    return {"LUT": r.lut * frac, "BRAM_18K": r.bram18 * frac, "URAM": r.uram * frac,
            "DSP": r.dsp * frac}


def _copy(model: ModelWrapper) -> ModelWrapper:
    return ModelWrapper(model.model.__deepcopy__())


@pytest.fixture(scope="module")
def tfc_dataflow(tfc_onnx: Path) -> ModelWrapper:
    return lower_to_hw(ModelWrapper(str(tfc_onnx)), U250, 200.0).dataflow


def _assert_printed_design_fits(model: ModelWrapper, result, budget) -> dict:  # type: ignore[no-untyped-def]
    """A design said to fit fits after FINN's insertions, with the figures it printed."""
    check = confirm_design(model, U250.part, budget)
    if result.feasible:
        assert check["problems"] == [], check["problems"]
        for r in RESOURCES:
            assert check["resources"][r] <= budget[r] + 1e-9
            assert check["resources"][r] == pytest.approx(result.resources[r])
    return check


def test_io_width_limits_from_finn() -> None:
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.util.basic import pynq_native_port_width

    assert io_width_limit(U250.part) == DataflowBuildConfig.vitis_iodma_intf_max_width == 512
    assert io_width_limit(get_board("zcu104").part) == pynq_native_port_width["ZCU104"] == 128
    assert io_width_limit("xc7z999-not-a-part") is None


@pytest.mark.finn
@pytest.mark.parametrize("frac", [0.01, 0.1])
def test_tfc_printed_designs_fit_after_dwc_and_fifo(tfc_dataflow, frac) -> None:  # type: ignore[no-untyped-def]
    budget = _budget(U250, frac)
    ours = SearchFolding(budget, U250.part)
    folded = _copy(tfc_dataflow).transform(ours)
    assert ours.result is not None and ours.result.feasible
    check = _assert_printed_design_fits(folded, ours.result, budget)
    assert check["dwcs"] == ours.result.breakdown["dwcs"]
    assert check["fifos"] == ours.result.breakdown["fifos"] > 0
    # the search counts more than the layers
    layers = ours.result.breakdown["layers"]
    assert ours.result.resources["LUT"] > layers["LUT"]
    base = SetFoldingWithinBudget(budget, U250.part, 200.0, steps=12, tuned=False)
    folded_base = _copy(tfc_dataflow).transform(base)
    assert base.result is not None
    _assert_printed_design_fits(folded_base, base.result, budget)
    # maximum throughput first; at equal throughput no more (budget-normalised) resources
    if base.result.feasible:
        assert ours.result.ii_cycles <= base.result.ii_cycles
        if ours.result.ii_cycles == base.result.ii_cycles:
            def norm(res: dict) -> float:
                return sum(res[r] / budget[r] for r in RESOURCES if budget[r] > 0)
            assert norm(ours.result.resources) <= norm(base.result.resources) + 1e-9


@pytest.mark.finn
def test_graph_ends_no_wider_than_the_iodma(tfc_dataflow) -> None:  # type: ignore[no-untyped-def]
    budget = _budget(U250, 0.5)
    limited = SearchFolding(budget, U250.part)
    _copy(tfc_dataflow).transform(limited)
    free = SearchFolding(budget, U250.part, io_max_bits=None)
    _copy(tfc_dataflow).transform(free)
    assert limited.result is not None and free.result is not None
    widths = limited.result.breakdown["io_widths_bits"]
    assert widths and max(widths.values()) <= 512
    # without the limit the input stream is wider and the design faster: the limit binds
    assert max(free.result.breakdown["io_widths_bits"].values()) > 512
    assert free.result.ii_cycles < limited.result.ii_cycles


@pytest.mark.finn
def test_latency_is_bought_only_when_asked(tfc_dataflow) -> None:  # type: ignore[no-untyped-def]
    budget = _budget(U250, 0.1)
    plain = SearchFolding(budget, U250.part)
    _copy(tfc_dataflow).transform(plain)
    fast = SearchFolding(budget, U250.part, latency_max_cycles=1)
    _copy(tfc_dataflow).transform(fast)
    assert plain.result is not None and fast.result is not None
    assert fast.result.ii_cycles == plain.result.ii_cycles
    assert fast.result.latency_cycles < plain.result.latency_cycles
    assert fast.result.resources["LUT"] > plain.result.resources["LUT"]
    assert any("latency limit" in n for n in fast.result.notes)  # 1 cycle is not reachable
    for r in RESOURCES:
        assert fast.result.resources[r] <= budget[r] + 1e-9


@pytest.mark.finn
def test_residual_join_gets_a_deep_fifo(residual_onnx: Path) -> None:
    dataflow = lower_to_hw(ModelWrapper(str(residual_onnx)), U250, 200.0).dataflow
    budget = _budget(U250, 0.05)
    problem = build_problem(dataflow, U250.part, budget=budget)
    assert len(problem.joins) == 1
    ours = SearchFolding(budget, U250.part)
    folded = _copy(dataflow).transform(ours)
    assert ours.result is not None and ours.result.feasible
    deep = ours.result.breakdown["deep_fifo_list"]
    assert len(deep) == 1 and deep[0]["depth"] > 2
    assert deep[0]["node"].startswith("ElementwiseAdd")
    check = _assert_printed_design_fits(folded, ours.result, budget)
    assert check["deep_fifos"] == deep


@pytest.mark.finn
def test_estimate_cli_budget_runs_the_search_beside_finn_tuned(tfc_onnx: Path,
                                                               tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nashc.cli import cli

    out = tmp_path / "est"
    result = CliRunner().invoke(cli, ["estimate", str(tfc_onnx), "--budget", "lut 5%, dsp 0",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "FINN tuned" in result.output and "nashc" in result.output
    data = json.loads((out / "folding_search.json").read_text())
    assert data["budget"]["DSP"] == 0
    assert data["budget"]["LUT"] == int(U250.resources.lut * 0.05)
    assert data["design_check"]["fits"] is True
    assert data["nashc"]["feasible"] and data["nashc"]["resources"]["DSP"] == 0
    assert data["nashc"]["fps"] >= data["finn_tuned"].get("fps", 0.0) or not data[
        "finn_tuned"]["feasible"]


@pytest.mark.parametrize("args, message", [
    (["--budget", "lut 5%, dsp"], "--budget:1:"),
    (["--budget", "lut 5%", "--fps", "100"], "not both"),
    (["--budget", "luts 5%"], "unknown budget resource"),
    (["--budget", "lut 10%, lut 20%"], "--budget:1:17: error: budget for 'lut' given twice"),
    (["--budget", "dsp 2.5"], "--budget:1:8: error: budget dsp 2.5 must be a non-negative whole"),
])
def test_estimate_cli_bad_budget_exit_2(args, message, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from nashc.cli import cli

    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    result = CliRunner().invoke(cli, ["estimate", str(model), "-o", str(tmp_path / "o"),
                                      *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.finn
@pytest.mark.parametrize("net", ["cnv", "resnet8"])
@pytest.mark.parametrize("frac", [0.01, 0.1])
def test_reference_networks_printed_designs_fit(net, frac, cnv_onnx: Path) -> None:  # type: ignore[no-untyped-def]
    """CNV and the resnet8 example at 1% and 10% of a u250: nashc's and FINN tuned's
    designs, said to fit, fit after FINN's insertions."""
    if net == "cnv":
        model = ModelWrapper(str(cnv_onnx))
    else:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
        from bench_folding import example_network

        model = example_network("resnet8_cifar.nash", hybrid=False)
    from nashc.targets.hybrid_lowering import hybrid_extra_steps

    dataflow = lower_to_hw(model, U250, 200.0, hybrid_extra_steps()).dataflow
    budget = _budget(U250, frac)
    ours = SearchFolding(budget, U250.part)
    folded = _copy(dataflow).transform(ours)
    assert ours.result is not None
    _assert_printed_design_fits(folded, ours.result, budget)
    tuned = SetFoldingWithinBudget(budget, U250.part, 200.0, steps=10, tuned=True)
    folded_t = _copy(dataflow).transform(tuned)
    assert tuned.result is not None
    _assert_printed_design_fits(folded_t, tuned.result, budget)
    if tuned.result.feasible:
        assert ours.result.feasible
        assert ours.result.ii_cycles <= tuned.result.ii_cycles


def test_embedded_weights_pass_the_weight_stream_limit(mvau_chain) -> None:  # type: ignore[no-untyped-def]
    """FINN's 8191-bit limit binds decoupled weights (PE*SIMD*4 bits here); with
    `embedded_weights` the search may embed them and go faster, and FINN's insertions on
    the result still check out."""
    model = mvau_chain([(512, 32), (32, 8)], wbits=4, abits=4, vectors=1)
    budget = {"LUT": 2e6, "BRAM_18K": 5000, "URAM": 1000, "DSP": 10000}
    plain = SearchFolding(budget, U250.part, io_max_bits=None)
    _copy(model).transform(plain)
    emb = SearchFolding(budget, U250.part, io_max_bits=None, embedded_weights=True)
    folded = _copy(model).transform(emb)
    assert plain.result is not None and emb.result is not None
    assert emb.result.ii_cycles < plain.result.ii_cycles
    modes = {n.name: getCustomOp(n).get_nodeattr("mem_mode") for n in folded.graph.node}
    assert "internal_embedded" in modes.values()
    check = confirm_design(folded, U250.part, budget, io_max_bits=None)
    assert check["problems"] == []
    for r in RESOURCES:
        assert check["resources"][r] == pytest.approx(emb.result.resources[r])
