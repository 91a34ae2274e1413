"""`nashc compile` end to end on small networks: report schema, budget, golden check,
baseline, reproducibility, and clean failure on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.nash import tiny_fc

from nashc.cli import cli
from nashc.report import strip_timings

pytestmark = pytest.mark.finn


def _write(tmp_path: Path, lut: str = "1%") -> Path:
    path = tmp_path / "tiny.nash"
    path.write_text(tiny_fc(lut))
    return path


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory) -> tuple[Path, dict, str]:
    tmp = tmp_path_factory.mktemp("compile")
    src = _write(tmp)
    out = tmp / "out"
    result = CliRunner().invoke(cli, ["compile", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "report.json").read_text()), result.output


@pytest.fixture(scope="module")
def compiled(compiled_run) -> tuple[Path, dict]:
    return compiled_run[0], compiled_run[1]


def test_report_schema_and_files(compiled):
    out, report = compiled
    for key in ("target", "part", "clock_mhz", "budget", "search", "pareto", "chosen",
                "golden", "baseline"):
        assert key in report
    assert report["target"] == "u250" and report["part"] == "xcu250-figd2104-2L-e"
    assert set(report["budget"]) == {"lut", "bram18", "uram", "dsp"}
    assert report["search"]["candidates_evaluated"] == 4
    assert report["search"]["strategy"] == "random"
    for name in ("report.md", "pareto.png", "design/model_qonnx.onnx",
                 "design/model_onnxruntime.onnx", "design/dataflow.onnx",
                 "design/folding_config.json", "design/build_config.json",
                 "design/estimate_network_performance.json"):
        assert (out / name).is_file(), name
    point = report["pareto"][report["chosen"]]
    assert set(point) >= {"arch", "score", "accuracy", "fps", "latency_ms", "resources", "ops"}
    assert point["accuracy"] is None  # no train section


def test_every_pareto_point_fits_the_budget(compiled):
    _, report = compiled
    budget = report["budget"]
    assert report["pareto"]
    for point in report["pareto"]:
        for res, used in point["resources"].items():
            assert used <= budget[res], (res, used, budget[res])


def test_golden_check_passes_and_baseline_is_not_faster(compiled):
    out, report = compiled
    assert report["golden"]["ok"] is True
    names = [lv["name"] for lv in report["golden"]["levels"]]
    assert "qonnx-vs-onnxruntime" in names
    chosen = report["pareto"][report["chosen"]]
    base = report["baseline"]
    assert base["accelerator"] == "finn_setfolding"
    if base["fits_budget"]:
        assert chosen["fps"] >= base["fps"] * (1 - 1e-9)
    perf = json.loads((out / "design" / "estimate_network_performance.json").read_text())
    assert perf["estimated_throughput_fps"] == pytest.approx(chosen["fps"])


def test_same_seed_same_report(compiled, tmp_path):
    _, first = compiled
    src = _write(tmp_path)
    out = tmp_path / "again"
    result = CliRunner().invoke(cli, ["compile", str(src), "-o", str(out), "--seed", "0",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "step " not in result.output and "candidates," not in result.output  # --quiet
    assert "Pareto front" in result.output  # the summary stays
    second = json.loads((out / "report.json").read_text())
    a, b = strip_timings(first), strip_timings(second)
    a.pop("source"), b.pop("source")
    assert a == b


def test_impossible_budget_is_a_clear_error_and_leaves_nothing(tmp_path):
    src = _write(tmp_path, lut="10")
    out = tmp_path / "never"
    result = CliRunner().invoke(cli, ["compile", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert "budget" in result.output
    assert "the closest design needs LUT" in result.output and "> 10)" in result.output
    # shown at the `lut` item of the budget statement, GCC-style with the line and a caret
    line = next(i for i, t in enumerate(src.read_text().splitlines(), 1) if "budget" in t)
    assert f"{src}:{line}:10: error: no candidate fits the budget" in result.output
    assert "  budget lut 10, bram 1%" in result.output and "\n           ^" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_malformed_file_exit_2_no_output(tmp_path):
    src = tmp_path / "bad.nash"
    src.write_text("network x {\n  input 1x8x8 uint8\n  fc a out\n}\n")
    out = tmp_path / "bad_out"
    result = CliRunner().invoke(cli, ["compile", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert "bad.nash:3:" in result.output
    assert not out.exists()


def test_accelerator_finn_setfolding_folds_with_setfolding(compiled, tmp_path):
    """`accelerator finn_setfolding`: the designs are folded by FINN's SetFolding (within
    the budget) and the baseline is nashc's folding search, which is not slower."""
    _, ours = compiled
    src = _write(tmp_path)
    src.write_text(src.read_text().replace("  keep pareto 4",
                                           "  keep pareto 4\n  accelerator finn_setfolding"))
    out = tmp_path / "sf"
    result = CliRunner().invoke(cli, ["compile", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "with FINN SetFolding; nashc's folding search in the same budget" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["accelerator"] == "finn_setfolding"
    base = report["baseline"]
    assert base["accelerator"] == "coarse_to_fine" and base["target_fps"] is None
    chosen = report["pareto"][report["chosen"]]
    assert base["fps"] >= chosen["fps"] * (1 - 1e-9)
    from qonnx.core.modelwrapper import ModelWrapper

    dataflow = ModelWrapper(str(out / "design" / "dataflow.onnx"))
    assert dataflow.get_metadata_prop("nashc.SetFoldingWithinBudget")  # folded by it
    assert ours["baseline"]["accelerator"] == "finn_setfolding"  # the default's baseline
    md = (out / "report.md").read_text()
    assert "## Baseline: nashc's folding search within the same budget" in md


def test_ray_executor_gives_the_local_report(compiled, tmp_path):
    """`--executor ray` (a local Ray with 2 CPUs) evaluates the same candidates with the
    same results as the default local executor: the same report."""
    pytest.importorskip("ray")
    _, first = compiled
    src = _write(tmp_path)
    out = tmp_path / "ray"
    result = CliRunner().invoke(cli, ["compile", str(src), "-o", str(out), "--seed", "0",
                                      "--executor", "ray", "--jobs", "2"])
    if result.exit_code == 2 and "timed out during startup" in result.output:
        # Ray's own start-up limit can pass on an overloaded machine (a clear error, exit 2)
        pytest.skip("local Ray did not start in time here")
    assert result.exit_code == 0, result.output
    second = json.loads((out / "report.json").read_text())
    a, b = strip_timings(first), strip_timings(second)
    a.pop("source"), b.pop("source")
    assert a == b


def test_address_without_ray_is_a_usage_error(tmp_path):
    src = _write(tmp_path)
    result = CliRunner().invoke(cli, ["compile", str(src), "--address", "auto"])
    assert result.exit_code == 2
    assert "--address needs --executor ray" in result.output
    assert not (tmp_path / "tiny_nashc").exists()


def _failing_level3(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Makes level 3 report a one-code mismatch (as a wrong lowering would)."""
    from nashc.runtime.golden import LevelResult, TensorComparison
    from nashc.targets import verify

    def failing(level2_model, lowered, seed=0, inputs=None):  # type: ignore[no-untyped-def]
        comp = TensorComparison("MatMul_1_out0", "integer codes", 1.0, 0.0, False)
        return LevelResult.of(verify.LEVEL3_NAME, [comp], ["global_out"])

    monkeypatch.setattr(verify, "verify_level3", failing)


@pytest.mark.parametrize("keep", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_golden_failure_fails_compile(keep, tmp_path, monkeypatch):
    """A failed golden check is never exit 0: without --keep-failed nothing is written
    (exit 2, the failing level and tensor named); with it the design is written and
    marked failed (exit 1)."""
    _failing_level3(monkeypatch)
    src = _write(tmp_path)
    src.write_text(src.read_text().replace("samples 4", "samples 1"))
    out = tmp_path / "out"
    args = ["compile", str(src), "-o", str(out)] + (["--keep-failed"] if keep else [])
    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.output
    assert "finn-dataflow-vs-qonnx (integer codes): MatMul_1_out0" in result.output or keep
    if keep:
        assert result.exit_code == 1, result.output
        report = json.loads((out / "report.json").read_text())
        assert report["golden"]["ok"] is False
        assert (out / "design" / "dataflow.onnx").is_file()
        assert any("golden check FAILED" in n for n in report["notes"])
    else:
        assert result.exit_code == 2, result.output
        assert "golden check failed" in result.output and "--keep-failed" in result.output
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_plot_draws_report_json(compiled):
    """pareto.png's figure, drawn from report.json, plots exactly its figures."""
    import matplotlib.pyplot as plt
    from helpers.plots import check_figure

    from nashc.report import pareto_figure

    out, report = compiled
    assert len(report["coarse"]["score"]) == report["search"]["candidates_evaluated"]
    assert sum(report["coarse"]["lowered"]) == report["search"]["finn_evaluated"]
    fig = pareto_figure(report)
    try:
        check_figure(report, fig)
    finally:
        plt.close(fig)


def test_layer_table_matches_the_folded_dataflow(compiled):
    """The per-layer table names the user's layers and carries FINN's PE/SIMD/memory
    attributes of the written dataflow graph."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    out, report = compiled
    point = report["pareto"][report["chosen"]]
    rows = point["layers"]
    assert [r["layer"] for r in rows] == ["fc0", "head"]
    assert [r["width"] for r in rows] == [16, 10]
    assert rows[0]["wbits"] == point["arch"]["fc0.wbits"]
    assert rows[0]["abits"] == point["arch"]["fc0.abits"] and rows[1]["abits"] is None
    assert rows[1]["wbits"] == 8
    dataflow = ModelWrapper(str(out / "design" / "dataflow.onnx"))
    for row in rows:
        node = dataflow.get_node_from_name(row["finn_node"])
        inst = getCustomOp(node)
        assert inst.get_nodeattr("MH") == row["width"]
        assert (row["pe"], row["simd"]) == (inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD"))
        assert row["mem_mode"] == inst.get_nodeattr("mem_mode")
    md = (out / "report.md").read_text()
    assert f"| fc0 | fc | 16 | {rows[0]['wbits']} | {rows[0]['abits']} | - | {rows[0]['pe']} |" in md


def test_progress_lines_without_source_locations(compiled_run):
    """Not a terminal (CliRunner): plain timestamped lines, no `cli.py:NN` tags."""
    _, report, output = compiled_run
    lines = output.splitlines()
    steps = [ln.split("] ", 1)[1] for ln in lines if re.match(r"\[\d\d:\d\d:\d\d\] step ", ln)]
    assert steps == ["step parse", "step search", "step accelerator_search", "step train",
                     "step pareto", "step baseline", "step verify", "step report"]
    assert any(re.search(r"search: 4/4 candidates, [\d.]+/s", ln) for ln in lines)
    n = report["search"]["finn_evaluated"]
    assert any(f"FINN lowering + folding: candidate {n}/{n}" in ln for ln in lines)
    assert not re.search(r"\w+\.py:\d+", output)


@pytest.mark.parametrize("hardware,target,said", [
    ("", None, "the whole device as the budget"),
    ("hardware {\n  budget lut 5%\n}\n", None, "the hardware section's budget"),
    ("", "u280", None),
    ("hardware {\n  target u250\n}\n", None, None),
])
def test_an_assumed_target_is_said_in_the_notes(tmp_path, hardware, target, said):
    """Without --target and a hardware target, compile says which board and budget it
    assumed and how to choose (the summary prints the notes, report.json keeps them)."""
    from nashc.pipeline import CompileOptions, CompileState, step_parse

    src = tmp_path / "t.nash"
    src.write_text("network n {\n  input 1x8x8 uint8\n  fc f out 10\n}\n" + hardware)
    state = CompileState(path=src, opts=CompileOptions(target=target), workdir=tmp_path)
    step_parse(state)
    notes = [n for n in state.notes if n.startswith("no target given")]
    if said is None:
        assert notes == []
        return
    assert notes == [f"no target given: compiled for u250 (xcu250-figd2104-2L-e) at 200 MHz "
                     f"with {said}; choose the board with --target (`nashc targets` lists "
                     "them) or a hardware section, e.g. `hardware { target u250; budget "
                     "lut 50%, dsp 50% }`"]
