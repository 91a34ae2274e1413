"""What a person reads: pareto.png's panels, report.md and the progress displays, checked
against the report they are drawn from (report.json's structure, no FINN needed)."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from helpers.plots import check_figure, scatter

from nashc.progress import CallbackProgress, PlainProgress, planned_candidates
from nashc.report import front_axis, golden_rows, markdown, pareto_figure


def _report(trained: bool, metric: str = "zero_shot") -> dict[str, Any]:
    """A report.json as `nashc compile` writes it (two front points, one baseline)."""
    def point(score: float, acc: float, fps: float, lut: float, dsp: float) -> dict[str, Any]:
        return {"arch": {"fc0.wbits": 4}, "score": score,
                "accuracy": acc if trained else None, "fps": fps, "latency_ms": 0.0123,
                "resources": {"lut": lut, "bram18": 12.0, "uram": 0.0, "dsp": dsp},
                "ops": {"conv": 2, "shift": 1, "adder": 0}, "coarse_fps": 2 * fps,
                "layers": [{"layer": "fc0", "op": "fc", "width": 64, "wbits": 4, "abits": 4,
                            "kernel": None, "finn_node": "MVAU_hls_0", "pe": 8, "simd": 16,
                            "mem_mode": "internal_decoupled", "ram_style": "distributed",
                            "res_type": "lut"},
                           {"layer": "conv1", "op": "shift conv", "width": 32, "wbits": 3,
                            "abits": None, "kernel": 3, "finn_node": None, "pe": None,
                            "simd": None, "mem_mode": None, "ram_style": None,
                            "res_type": None}]}

    return {
        "source": "x.nash", "network": "net", "target": "u250",
        "part": "xcu250-figd2104-2L-e", "clock_mhz": 250.0,
        "budget": {"lut": 100000.0, "bram18": 400.0, "uram": None, "dsp": 200.0},
        "device": {"lut": 1728000, "bram18": 5376, "uram": 1280, "dsp": 12288},
        "requirements": {"fps_min": 1000.0, "latency_max_ms": None},
        "search": {"strategy": "random", "metric": metric, "accelerator": "coarse_to_fine",
                   "seed": 0, "space_size": 108, "candidates_evaluated": 5,
                   "finn_evaluated": 2, "interrupted": False, "stop_reason": None,
                   "seconds": 3.5},
        "pareto": [point(-1.5, 0.91, 250000.0, 50000.0, 20.0),
                   point(-1.1, 0.95, 125000.5, 30000.0, 0.0)],
        "chosen": 1,
        "golden": {"ok": True, "levels": [
            {"name": "qonnx-vs-onnxruntime", "max_abs_diff": 0.0, "ok": True},
            {"name": "finn-dataflow-vs-qonnx", "max_abs_diff": 2.4e-7, "ok": True,
             "compared": "integer outputs", "tolerance": 0.25}]},
        "baseline": {"accelerator": "finn_setfolding", "target_fps": 5000.0,
                     "fps": 62500.0, "latency_ms": 0.05,
                     "resources": {"lut": 8970.0, "bram18": 4.0, "uram": 0.0, "dsp": 8.0},
                     "fits_budget": True},
        "coarse": {"score": [-3.0, -1.5, -1.1, -2.0, -4.0],
                   "fps_bound": [1e4, 5e5, 2.5e5, 800.0, 3e3],
                   "feasible": [True, True, True, False, True],
                   "lowered": [False, True, True, False, False]},
        "steps_seconds": {"parse": 0.1},
        "notes": ["a note"],
    }


@pytest.mark.parametrize("trained", [True, False])
@pytest.mark.parametrize("metric", ["zero_shot", "fidelity"])
def test_figure_plots_report_values_one_quantity_per_axis(trained: bool, metric: str) -> None:
    import matplotlib.pyplot as plt

    report = _report(trained, metric)
    fig = pareto_figure(report)
    try:
        front, util, coarse = fig.axes
        # the front: accuracy in % when trained, else the score; never both
        xs = ([100 * p["accuracy"] for p in report["pareto"]] if trained
              else [p["score"] for p in report["pareto"]])
        pts = scatter(front, "front")
        np.testing.assert_allclose(pts[:, 0], xs)
        np.testing.assert_allclose(pts[:, 1], [p["fps"] for p in report["pareto"]])
        assert front.get_xlabel() == ("validation accuracy (%)" if trained else
                                      front_axis(report)[0])
        assert ("fidelity" in front.get_xlabel()) == (metric == "fidelity" and not trained)
        assert front.get_yscale() == "log" and "frames/s" in front.get_ylabel()
        np.testing.assert_allclose(scatter(front, "chosen"), [[xs[1], 125000.5]])
        np.testing.assert_allclose(scatter(front, "baseline0"), [[xs[1], 62500.0]])
        labels = [t.get_text() for t in front.get_legend().get_texts()]
        assert "FINN SetFolding, same architecture" in labels
        # utilisation: % of the budget per design, the baseline last; no budget -> 0 bar
        bars = {p.get_gid(): p for p in util.patches if p.get_gid()}
        assert "% of budget" in util.get_ylabel()
        heights = {key: [b.get_height() for b in util.patches if b.get_gid() == f"util_{key}"]
                   for key in ("lut", "bram18", "uram", "dsp")}
        assert bars and heights["lut"] == pytest.approx([50.0, 30.0, 8.97])
        assert heights["bram18"] == pytest.approx([3.0, 3.0, 1.0])
        assert heights["dsp"] == pytest.approx([10.0, 0.0, 4.0])
        assert heights["uram"] == [0.0, 0.0, 0.0]
        assert [t.get_text() for t in util.get_xticklabels()] == ["#0", "#1*", "FINN\nSetFolding"]
        # the coarse stage on its own axes: score vs the cost model's bound
        c = report["coarse"]
        lowered = scatter(coarse, "coarse_lowered")
        np.testing.assert_allclose(lowered, [[-1.5, 5e5], [-1.1, 2.5e5]])
        np.testing.assert_allclose(scatter(coarse, "coarse_below"), [[-2.0, 800.0]])
        np.testing.assert_allclose(scatter(coarse, "coarse_scored"),
                                   [[-3.0, 1e4], [-4.0, 3e3]])
        assert coarse.get_yscale() == "log" and "cost model" in coarse.get_ylabel()
        assert "accuracy" not in coarse.get_xlabel()
        assert len(c["score"]) == 5
        check_figure(report, fig)
    finally:
        plt.close(fig)


def test_front_axis_mixed_accuracy_uses_the_score() -> None:
    report = _report(trained=True)
    report["pareto"][0]["accuracy"] = None
    label, xs = front_axis(report)
    assert "score" in label and xs == [-1.5, -1.1]


def test_markdown_reads_as_tables() -> None:
    md = markdown(_report(trained=True))
    assert "{'lut'" not in md and ".0 |" not in md
    assert "| 1 **(chosen)** | -1.100 | 95.00% | 125,000 | 0.0123 | 30,000 (30.0%) |" in md
    # the baseline is a row beside the chosen design, with utilisation
    assert ("| nashc's folding search (chosen, #1) | 125,000 | 1.00x | 0.0123 | "
            "30,000 (30.0%) | 12 (3.00%) | 0 | 0 (0.00%) | yes |") in md
    assert ("| FINN SetFolding | 62,500 | 2.00x | 0.0500 | 8,970 (8.97%) | 4 (1.00%) | 0 | "
            "8 (4.00%) | yes |") in md
    assert "| budget / device | 5.79% | 7.44% | - | 1.63% |" in md
    # the architecture per layer, FINN's folding beside it, unmatched layers as "-"
    assert ("| fc0 | fc | 64 | 4 | 4 | - | 8 | 16 | decoupled, distributed RAM | LUT | "
            "MVAU_hls_0 |") in md
    assert "| conv1 | shift conv | 32 | 3 | - | 3x3 | - | - | - | - | - |" in md
    assert md.index("### #1 (chosen)") < md.index("### #0")
    assert "| finn-dataflow-vs-qonnx | integer outputs | 2.4e-07 | 0.25 | ok |" in md
    assert "| qonnx-vs-onnxruntime | - | 0 | - | ok |" in md


def test_golden_rows_show_what_a_level_records() -> None:
    rows = golden_rows({"levels": [{"name": "a", "max_abs_diff": 1e-3, "ok": False,
                                    "kind": "float", "atol": 1e-6}]})
    assert rows == [("a", "float", "0.001", "1e-06", "MISMATCH")]


def test_planned_candidates_per_strategy() -> None:
    assert planned_candidates("exhaustive", 108) == 108
    assert planned_candidates("random", 108, samples=50) == 50
    assert planned_candidates("random", 16, samples=50) == 16
    assert planned_candidates("evolution", 10**6, population=64, generations=20) == 704
    assert planned_candidates("evolution", 100, population=64, generations=20) == 100


def test_plain_progress_lines() -> None:
    out = io.StringIO()
    p = PlainProgress(out, every=0.0)
    p.step("search")
    p.search_started(50, 90.0)
    p.search_advanced(16, {"score": -1.25, "fps": 3906250.0})
    p.search_finished(50)
    p.stage_started("FINN lowering + folding", 6)
    p.stage_candidate(1, 6, "score -1.250")
    p.stage_step("streamline")  # plain output: one line per candidate, not per step
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", ln) for ln in out.getvalue().splitlines()]
    assert lines[0] == "step search"
    assert lines[1] == "search: up to 50 candidates (capped at 1 min 30 s)"
    assert re.fullmatch(r"search: 16/50 candidates, [\d.]+/s, about .* left; best score "
                        r"-1\.250 \(3,906,250 fps bound\)", lines[2]), lines[2]
    assert lines[3].startswith("search: 50/50 candidates")
    assert lines[4] == "FINN lowering + folding: candidate 2/6 (score -1.250)"
    assert len(lines) == 5


def test_callback_progress_keeps_the_text_interface() -> None:
    got: list[str] = []
    p = CallbackProgress(got.append)
    p.step("parse")
    p.search_started(4)
    p.search_advanced(2, {"score": 0.5, "fps": 1.0})
    p.stage_started("FINN lowering + folding", 2)
    p.stage_candidate(0, 2)
    p.stage_step("streamline")
    assert got == ["step parse", "2/4 candidates scored; best score 0.500",
                   "FINN lowering + folding 1/2", "FINN lowering + folding: streamline"]


def test_nested_baseline_and_design_check_are_shown() -> None:
    """A report whose baseline carries FINN at its defaults (fitting nothing: fps 0) and a
    design check: both appear in report.md; the plot skips fps 0 on its log axis but
    still draws its bars."""
    import matplotlib.pyplot as plt

    report = _report(trained=False)
    report["baseline"]["label"] = "FINN tuned"
    report["baseline"]["finn_defaults"] = {
        "fps": 0.0, "fits_budget": False,
        "resources": {"lut": 120000.0, "bram18": 0.0, "uram": 0.0, "dsp": 0.0}}
    report["design_check"] = {"fits": True, "problems": [], "dwcs": 2, "fifos": 5,
                              "deep_fifos": [], "estimated": report["pareto"][1]["resources"],
                              "resources": report["pareto"][1]["resources"]}
    md = markdown(report)
    assert "| FINN tuned | 62,500 | 2.00x |" in md
    assert "| FINN defaults | 0 | - | - | 120,000 (120.0%) |" in md
    assert "| no |" in md.split("| FINN defaults |")[1].splitlines()[0]
    assert "- 2 DWCs, 5 FIFOs (0 deep)" in md
    fig = pareto_figure(report)
    try:
        front, util, _ = fig.axes
        assert [c.get_gid() for c in front.collections].count("baseline1") == 0
        assert [t.get_text() for t in util.get_xticklabels()][-2:] == ["FINN\ntuned",
                                                                        "FINN\ndefaults"]
        lut = [b.get_height() for b in util.patches if b.get_gid() == "util_lut"]
        assert lut == pytest.approx([50.0, 30.0, 8.97, 120.0])
    finally:
        plt.close(fig)


def test_rich_progress_on_a_terminal() -> None:
    """The live display runs through every hook and shows count, rate, best and the
    current candidate and lowering step (a terminal console writing to a string)."""
    from rich.console import Console

    from nashc.progress import RichProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, log_path=False)
    p = RichProgress(console)
    try:
        p.step("search")
        p.search_started(50, None)
        p.search_advanced(16, {"score": -1.25, "fps": 3906250.0})
        p.search_finished(50)
        p.stage_started("FINN lowering + folding", 6)
        p.stage_candidate(1, 6, "score -1.250")
        p.stage_step("streamline")
        p.bar.refresh()
        p.stage_finished()
    finally:
        p.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "step search" in text and ".py:" not in text
    assert "50/50" in text and "cand/s" in text and "best -1.250 (3,906,250 fps bound)" in text
    assert "candidate 2/6 (score -1.250)" in text and "streamline" in text


def test_golden_rows_one_row_per_compared_tensor() -> None:
    level = {"name": "finn-dataflow-vs-qonnx", "max_abs_diff": 4.8e-7, "ok": True,
             "comparison": "integer codes + tolerance", "tolerance": 1.6e-5,
             "tensors": [{"tensor": "MatMul_2_out0", "kind": "integer codes",
                          "max_abs_diff": 0.0, "tolerance": 0.0, "ok": True, "note": ""},
                         {"tensor": "global_out", "kind": "tolerance",
                          "max_abs_diff": 4.8e-7, "tolerance": 1.6e-5, "ok": False,
                          "note": ""}]}
    assert golden_rows({"levels": [level]}) == [
        ("finn-dataflow-vs-qonnx", "MatMul_2_out0 (integer codes)", "0", "0", "ok"),
        ("finn-dataflow-vs-qonnx", "global_out (tolerance)", "4.8e-07", "1.6e-05",
         "MISMATCH")]
