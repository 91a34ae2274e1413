"""Smoke tests of benchmarks 2, 4, 5 and 6 (`bench/bench_hybrid.py`, `bench_speed.py`,
`bench_width.py`, `bench_fidelity.py`, each with --quick), run in-process with
--no-write."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results_text() -> str | None:
    results = BENCH / "RESULTS.md"
    return results.read_text() if results.exists() else None


@pytest.mark.slow
def test_hybrid_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("bench_hybrid")
    before = _results_text()
    out_json = tmp_path / "hybrid.json"
    assert bench.main(["--quick", "--no-write", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out_json.read_text())

    assert len(data["rows"]) == 1
    row = data["rows"][0]
    for space in ("mult-only", "hybrid"):
        s = row[space]
        assert s["candidates"] >= 1 and 1 <= s["finn"] <= 2
        assert s["points"], space
        assert s["best_fps"] > 0 and s["top_acc_fps"] > 0
        assert s["best_fps"] >= s["top_acc_fps"]
        for p in s["points"]:
            assert 0.0 <= p["accuracy"] <= 1.0 and p["fps"] > 0
            assert sum(p["ops"].values()) == 4  # stem, c1, c2, head
        if space == "mult-only":  # the mult-only space never picks shift or adder
            assert all(p["ops"]["shift"] == 0 and p["ops"]["adder"] == 0 for p in s["points"])
    # iso-accuracy: within 1 point of the weaker space's best, so both spaces qualify
    assert row["mult-only"]["within"] is not None and row["hybrid"]["within"] is not None
    for c in row["control"]:  # op-swap control: the same arch with every op = conv
        assert c["hybrid"]["ops"]["shift"] + c["hybrid"]["ops"]["adder"] >= 1
        assert 0.0 <= c["conv_accuracy"] <= 1.0 and c["conv_fps"] > 0
    for label in ("Hybrid gain", "mult-only", "hybrid", "best fps", "2.14x", "**Reading.**"):
        assert label in printed
    assert _results_text() == before  # --no-write leaves bench/RESULTS.md alone


def test_hybrid_spaces_differ_only_in_op() -> None:
    bench = _load("bench_hybrid")
    kw = dict(population=4, generations=1, epochs=1, seed=0)
    a = bench.nash_source(bench.SPACES["mult-only"], 2, 1, **kw).splitlines()
    b = bench.nash_source(bench.SPACES["hybrid"], 2, 1, **kw).splitlines()
    diff = [(x, y) for x, y in zip(a, b) if x != y]
    assert len(a) == len(b) and len(diff) == 1 and diff[0][0].strip().startswith("op")


def test_hybrid_sources_parse(tmp_path: Path) -> None:
    from nashc.dsl import load
    from nashc.targets.boards import board_names

    bench = _load("bench_hybrid")
    sizes = {}
    for name, ops in bench.SPACES.items():
        path = tmp_path / f"{name}.nash"
        path.write_text(bench.nash_source(ops, 2, 1, population=4, generations=1, epochs=1,
                                          seed=0))
        sizes[name] = load(path, targets=board_names()).space_size
    assert sizes == {"mult-only": 864, "hybrid": 7776}


@pytest.mark.slow
def test_speed_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("bench_speed")
    before = _results_text()
    out_json = tmp_path / "speed.json"
    assert bench.main(["--quick", "--no-write", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out_json.read_text())

    assert [r["jobs"] for r in data["coarse"]] == [1]
    c = data["coarse"][0]
    assert c["example"] == "tfc_digits.nash" and c["n"] == 10
    assert c["per_s"] > 0 and c["seconds"] > 0 and c["scores_finite"] >= 1
    f = data["finn"][0]
    assert f["n"] == 1 and f["seconds"] > 0 and len(f["per_candidate_s"]) == 1
    assert f["ok"] + len(f["errors"]) == 1
    comp = data["compile"][0]
    assert comp["example"] == "tfc_digits.nash" and comp["wall_s"] > 0
    assert comp["candidates"] >= 1 and comp["finn"] >= 1 and comp["trained"]
    for label in ("Search speed", "candidates / s", "wall s", "**Reading.**"):
        assert label in printed
    assert _results_text() == before


def test_speed_sampling_is_seeded_and_distinct() -> None:
    bench = _load("bench_speed")
    choices = {("a", "op"): ("conv", "shift", "adder"), ("a", "wbits"): (2, 4)}
    x = bench.sample_choices(choices, 4, seed=3)
    assert x == bench.sample_choices(choices, 4, seed=3)
    assert len({tuple(sorted(c.items())) for c in x}) == 4
    assert len(bench.sample_choices(choices, 50, seed=0)) == 6  # capped at the space size


@pytest.mark.slow
def test_width_quick(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("bench_width")
    before = _results_text()
    assert bench.main(["--quick", "--no-write"]) == 0
    printed = capsys.readouterr().out
    assert "## 5. Channel selection" in printed and "l1+affine acc" in printed
    assert printed.count("| residual |") == 4  # width 1.0 and the three multipliers
    assert _results_text() == before  # --no-write


@pytest.mark.slow
def test_fidelity_quick(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("bench_fidelity")
    before = _results_text()
    assert bench.main(["--quick", "--no-write"]) == 0
    printed = capsys.readouterr().out
    assert "## 6. Fidelity" in printed and "| tfc_import (shipped) | 8 |" in printed
    assert _results_text() == before
