"""Smoke test of benchmark 3 (`bench/bench_zeroshot.py --quick`), run in-process."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_zeroshot.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_zeroshot", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_zeroshot_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_bench()
    results = BENCH.with_name("RESULTS.md")
    before = results.read_text() if results.exists() else None
    out_json = tmp_path / "zs.json"
    assert bench.main(["--quick", "--no-write", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out_json.read_text())

    assert data["networks"] == ["rescnn", "mlp"]
    names = ("search", "hybrid", "naswot", "synflow", "params", "minus_adders", "minus_shifts")
    for net in data["networks"]:
        rows = json.loads(out_json.with_name(f"zs_{net}.json").read_text())
        assert rows["n"] == 8 and rows["epochs"] == 1
        assert len(rows["architectures"]) == 8
        assert set(names) <= set(data["stats"][net])
        for name in ("search", "hybrid", "naswot", "minus_adders"):
            st = data["stats"][net][name]
            for key in ("tau", "rho"):
                assert math.isfinite(st[key]) and -1.0 <= st[key] <= 1.0, (net, name, key)
            assert st["tau_lo"] <= st["tau"] + 1e-9 and st["tau"] <= st["tau_hi"] + 1e-9
        assert data["stats"][net]["hybrid"]["ms"] > 0.0
        for row in rows["architectures"]:
            assert 0.0 <= row["accuracy"] <= 1.0
            assert {"hybrid", "naswot", "synflow", "params", "search"} <= set(row["scores"])
            assert row["scores"]["search"] == pytest.approx(
                row["scores"]["hybrid"] - 100.0 * row["ops"]["adder"])

    # the printed tables name the scores and priors
    for label in ("hybrid_score", "NASWOT", "SynFlow", "#params", "Kendall tau",
                  "Spearman rho", "−#adder layers", "search score"):
        assert label in printed
    if before is not None:  # --no-write leaves bench/RESULTS.md alone
        assert results.read_text() == before


def test_sampling_is_seeded_and_distinct() -> None:
    bench = _load_bench()
    choices = {("c1", "op"): ("conv", "shift", "adder"), ("c1", "width"): (0.5, 1.0)}
    a = bench.sample_architectures(choices, 6, seed=3)
    assert a == bench.sample_architectures(choices, 6, seed=3)
    assert len({tuple(sorted(c.items())) for c in a}) == 6
    assert len(bench.sample_architectures(choices, 50, seed=0)) == 6  # capped at the space size


def test_minus_inf_ranks_last() -> None:
    bench = _load_bench()
    acc = [0.9, 0.8, 0.1, 0.2]
    c = bench.correlations(acc, [3.0, 2.0, -math.inf, -math.inf], boot=50)
    assert c["tau"] > 0.8 and math.isfinite(c["rho"])
