"""Checks of pareto.png's figure against the report it is drawn from."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["scatter", "check_figure"]


def scatter(ax: Any, gid: str) -> np.ndarray:
    """The offsets of the one scatter on `ax` tagged `gid`."""
    hits = [c for c in ax.collections if c.get_gid() == gid]
    assert len(hits) == 1, [c.get_gid() for c in ax.collections]
    return np.asarray(hits[0].get_offsets())


def check_figure(report: dict[str, Any], fig: Any) -> None:
    """Every plotted value of the three panels equals report.json's figure for it."""
    front, util, coarse = fig.axes
    pareto = report["pareto"]
    trained = all(p["accuracy"] is not None for p in pareto)
    xs = [100 * p["accuracy"] for p in pareto] if trained else [p["score"] for p in pareto]
    pts = scatter(front, "front")
    np.testing.assert_allclose(pts[:, 0], xs)
    np.testing.assert_allclose(pts[:, 1], [p["fps"] for p in pareto])
    assert front.get_xlabel().startswith("validation accuracy (%)" if trained else
                                         ("zero-shot", "fidelity"))
    assert front.get_yscale() == "log" and "frames/s" in front.get_ylabel()
    chosen = report["chosen"]
    np.testing.assert_allclose(scatter(front, "chosen"), [[xs[chosen], pareto[chosen]["fps"]]])
    if report.get("baseline"):
        np.testing.assert_allclose(scatter(front, "baseline0"),
                                   [[xs[chosen], report["baseline"]["fps"]]])
    budget = report["budget"]
    from nashc.report import baselines

    # the front points, then every baseline (FINN defaults beside FINN tuned when present)
    designs = [p["resources"] for p in pareto] + [b["resources"] for b in baselines(report)]
    assert "% of budget" in util.get_ylabel()
    for key in ("lut", "bram18", "uram", "dsp"):
        heights = [b.get_height() for b in util.patches if b.get_gid() == f"util_{key}"]
        want = [100 * r[key] / budget[key] if budget[key] else 0.0 for r in designs]
        np.testing.assert_allclose(heights, want, err_msg=key)
    c = report["coarse"]
    got = np.concatenate([np.asarray(col.get_offsets()) for col in coarse.collections])
    want = np.array(list(zip(c["score"], c["fps_bound"])), dtype=float)
    np.testing.assert_allclose(sorted(map(tuple, got)), sorted(map(tuple, want)))
    assert coarse.get_yscale() == "log" and "cost model" in coarse.get_ylabel()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
