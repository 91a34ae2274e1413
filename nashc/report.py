"""Reports of a `nashc compile` run: `report.json`, `report.md` and `pareto.png`.

Everything in a report comes from the run's own results (`CompileResult`); nothing is
filled in here. `report.json` follows the schema in the project's search issue:
target, part, clock, absolute budget, search statistics, the Pareto points, the chosen
index, the golden check and the folding baseline for the chosen architecture (FINN's
`SetFolding`, or nashc's folding search when the file asks for SetFolding).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the folding methods of `search accelerator`, as reports name them
ACCELERATOR_LABELS = {"coarse_to_fine": "nashc's folding search",
                      "finn_setfolding": "FINN SetFolding"}

__all__ = ["ACCELERATOR_LABELS", "ParetoPoint", "CompileResult", "write_json", "write_markdown", "write_plot",
           "strip_timings"]


@dataclass
class ParetoPoint:
    arch: dict[str, Any]  # "layer.dim" -> option
    score: float
    accuracy: float | None
    fps: float
    latency_ms: float
    resources: dict[str, float]  # lut, bram18, uram, dsp
    ops: dict[str, int]  # conv, shift, adder layer counts
    coarse_fps: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "score": self.score,
            "accuracy": self.accuracy,
            "fps": self.fps,
            "latency_ms": self.latency_ms,
            "resources": self.resources,
            "ops": self.ops,
            "coarse_fps": self.coarse_fps,
        }


@dataclass
class CompileResult:
    source: str
    network: str
    target: str
    part: str
    clock_mhz: float
    budget: dict[str, float]
    search: dict[str, Any]
    pareto: list[ParetoPoint]
    chosen: int | None
    golden: dict[str, Any] | None
    baseline: dict[str, Any] | None
    steps: dict[str, float] = field(default_factory=dict)  # step name -> seconds
    notes: list[str] = field(default_factory=list)
    requirements: dict[str, Any] = field(default_factory=dict)
    #: the chosen design after FINN's InsertDWC/InsertFIFO (`targets.folding.confirm_design`)
    design_check: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "network": self.network,
            "target": self.target,
            "part": self.part,
            "clock_mhz": self.clock_mhz,
            "budget": self.budget,
            "requirements": self.requirements,
            "search": self.search,
            "pareto": [p.to_json() for p in self.pareto],
            "chosen": self.chosen,
            "golden": self.golden,
            "baseline": self.baseline,
            "design_check": self.design_check,
            "steps_seconds": self.steps,
            "notes": self.notes,
        }


def strip_timings(report: dict[str, Any]) -> dict[str, Any]:
    """The report without wall-clock figures (for reproducibility checks)."""
    out = json.loads(json.dumps(report))
    out.pop("steps_seconds", None)
    if isinstance(out.get("search"), dict):
        out["search"].pop("seconds", None)
    return out


def write_json(result: CompileResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2, sort_keys=False) + "\n")


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _arch_summary(arch: dict[str, Any], limit: int = 6) -> str:
    items = [f"{k}={v}" for k, v in sorted(arch.items())]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items)} choices)"
    return ", ".join(items) or "(declared network)"


def write_markdown(result: CompileResult, path: Path) -> None:
    r = result
    lines = [
        f"# nashc compile report: {r.network}",
        "",
        f"Source `{r.source}`, target **{r.target}** (`{r.part}`) at {r.clock_mhz:g} MHz.",
        "",
        "## Budget (absolute)",
        "",
        "| LUT | BRAM18 | URAM | DSP |",
        "|---:|---:|---:|---:|",
        "| " + " | ".join(_fmt(r.budget.get(k), 0) for k in ("lut", "bram18", "uram", "dsp"))
        + " |",
        "",
        "## Search",
        "",
    ]
    for k, v in r.search.items():
        lines.append(f"- {k}: {v}")
    lines += [
        "",
        "## Pareto front",
        "",
        "| # | score | accuracy | fps | latency ms | LUT | BRAM18 | URAM | DSP | conv/shift/adder"
        " | architecture |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---|",
    ]
    for i, p in enumerate(r.pareto):
        mark = " **(chosen)**" if i == r.chosen else ""
        acc = None if p.accuracy is None else 100 * p.accuracy
        lines.append(
            f"| {i}{mark} | {p.score:.3f} | {_fmt(acc, 2)} | {_fmt(p.fps)} | "
            f"{p.latency_ms:.4f} | {_fmt(p.resources.get('lut'), 0)} | "
            f"{_fmt(p.resources.get('bram18'), 0)} | {_fmt(p.resources.get('uram'), 0)} | "
            f"{_fmt(p.resources.get('dsp'), 0)} | "
            f"{p.ops.get('conv', 0)}/{p.ops.get('shift', 0)}/{p.ops.get('adder', 0)} | "
            f"{_arch_summary(p.arch)} |")
    if r.baseline:
        b = r.baseline
        base_label = b.get("label") or ACCELERATOR_LABELS.get(b.get("accelerator", ""),
                                                              b.get("accelerator"))
        ours = ACCELERATOR_LABELS.get(r.search.get("accelerator", ""), "the chosen folding")
        lines += ["", f"## Baseline: {base_label} within the same budget (chosen "
                  "architecture)", ""]
        lines.append(f"- fps: {_fmt(b.get('fps'))} ({ours}: "
                     f"{_fmt(r.pareto[r.chosen].fps) if r.chosen is not None else '-'})")
        if r.chosen is not None and b.get("fps"):
            lines.append(f"- {ours} / {base_label}: {r.pareto[r.chosen].fps / b['fps']:.2f}x")
        lines.append(f"- resources: {b.get('resources')}")
        if b.get("finn_defaults"):
            d = b["finn_defaults"]
            lines.append(f"- FINN defaults (mvau_wwidth_max 36): fps {_fmt(d.get('fps'))}, "
                         f"resources {d.get('resources')}")
    if r.design_check:
        c = r.design_check
        lines += ["", "## Design check (FINN's InsertDWC/InsertFIFO on the chosen design)", "",
                  f"- {c['dwcs']} DWCs, {c['fifos']} FIFOs ({len(c['deep_fifos'])} deep); "
                  f"resources as built {c['resources']}; "
                  + ("fits the budget" if c["fits"] else "PROBLEMS: " + "; ".join(c["problems"]))]
    if r.golden:
        lines += ["", "## Golden check (onnxruntime)", "", "| level | max abs diff | ok |",
                  "|:---|---:|:---:|"]
        for lvl in r.golden.get("levels", []):
            lines.append(f"| {lvl['name']} | {lvl['max_abs_diff']:.3g} | "
                         f"{'yes' if lvl['ok'] else 'NO'} |")
    if r.steps:
        lines += ["", "## Steps", "", "| step | seconds |", "|:---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in r.steps.items()]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    path.write_text("\n".join(lines) + "\n")


def write_plot(points: Sequence[ParetoPoint], all_points: Sequence[tuple[float, float]],
               chosen: int | None, path: Path, budget_lut: float | None = None) -> None:
    """fps vs score (or accuracy when trained), LUT share of the budget as colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_acc = bool(points) and all(p.accuracy is not None for p in points)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if all_points:
        ax.scatter([a for a, _ in all_points], [b for _, b in all_points], s=10, c="#bbbbbb",
                   label="evaluated (coarse)")
    if points:
        xs = [float(p.accuracy if use_acc and p.accuracy is not None else p.score)
              for p in points]
        ys = [p.fps for p in points]
        lut = [p.resources.get("lut", 0.0) / budget_lut if budget_lut else 0.0 for p in points]
        sc = ax.scatter(xs, ys, c=lut, cmap="viridis", s=40, edgecolors="k", vmin=0, vmax=1,
                        label="Pareto front (FINN estimate)")
        fig.colorbar(sc, ax=ax, label="LUT / budget")
        if chosen is not None:
            ax.scatter([xs[chosen]], [ys[chosen]], s=160, facecolors="none", edgecolors="r",
                       label="chosen")
    ax.set_xlabel("validation accuracy" if use_acc else "zero-shot score")
    ax.set_ylabel("fps")
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
