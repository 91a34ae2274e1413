"""Reports of a `nashc compile` run: `report.json`, `report.md` and `pareto.png`.

Everything in a report comes from the run's own results (`CompileResult`); nothing is
filled in here. `report.json` follows the schema in the project's search issue:
target, part, clock, absolute budget, search statistics, the Pareto points, the chosen
index, the golden check and the folding baseline for the chosen architecture (FINN's
`SetFolding`, or nashc's folding search when the file asks for SetFolding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the folding methods of `search accelerator`, as reports name them
ACCELERATOR_LABELS = {"coarse_to_fine": "nashc's folding search",
                      "finn_setfolding": "FINN SetFolding"}

__all__ = ["ACCELERATOR_LABELS", "ParetoPoint", "CompileResult", "write_json", "write_markdown", "write_plot",
           "markdown", "pareto_figure", "baselines", "RESOURCES", "accelerator_label", "front_axis", "golden_rows", "budget_percent",
           "strip_timings"]


#: the resources of a design, as report.json names them, and how tables title them
RESOURCES = (("lut", "LUT"), ("bram18", "BRAM18"), ("uram", "URAM"), ("dsp", "DSP"))


def accelerator_label(name: str | None) -> str:
    """A folding method's name for people (`ACCELERATOR_LABELS`), else its own name."""
    return ACCELERATOR_LABELS.get(name or "", name or "baseline")


def budget_percent(resources: dict[str, Any], budget: dict[str, Any]) -> dict[str, float | None]:
    """Each resource as % of its budget (None where the budget is unknown or unbounded)."""
    out: dict[str, float | None] = {}
    for key, _ in RESOURCES:
        b, used = budget.get(key), resources.get(key)
        out[key] = (100.0 * float(used) / float(b)
                    if b not in (None, 0) and used is not None and b != float("inf") else None)
    return out


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
    layers: list[dict[str, Any]] | None = None  # per-layer table (nashc.layer_table)

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
            "layers": self.layers,
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
    device: dict[str, float | None] | None = None  # the whole device's resources
    coarse: dict[str, list[Any]] | None = None  # every candidate of the coarse stage

    def to_json(self) -> dict[str, Any]:
        points = []
        for p in self.pareto:
            d = p.to_json()
            d["budget_percent"] = budget_percent(p.resources, self.budget)
            points.append(d)
        baseline = self.baseline
        if baseline is not None and "resources" in baseline:
            baseline = dict(baseline)
            baseline.setdefault("budget_percent", budget_percent(baseline["resources"],
                                                                 self.budget))
        return {
            "source": self.source,
            "network": self.network,
            "target": self.target,
            "part": self.part,
            "clock_mhz": self.clock_mhz,
            "budget": self.budget,
            "device": self.device,
            "requirements": self.requirements,
            "search": self.search,
            "pareto": points,
            "chosen": self.chosen,
            "golden": self.golden,
            "baseline": baseline,
            "design_check": self.design_check,
            "coarse": self.coarse,
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


def _int(x: float | None) -> str:
    """A count or a rate as an integer with thousands separators (fps, LUT...)."""
    return "-" if x is None else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}%" if x < 10 else f"{x:.1f}%"


def _used(resources: dict[str, Any], pct: dict[str, Any] | None, key: str) -> str:
    """`180,414 (48.1%)`: the count and its share of the budget."""
    used = resources.get(key)
    share = (pct or {}).get(key)
    return _int(used) + ("" if share is None else f" ({_pct(share)})")


#: baseline variants a report may nest inside its baseline: key, label
NESTED_BASELINES = (("finn_defaults", "FINN defaults"),)


def baselines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's baselines: a `baselines` list when a newer report has one, else the
    single `baseline`; each with a `label` for people."""
    found = list(report.get("baselines") or ([report["baseline"]] if report.get("baseline")
                                             else []))
    for b in list(found):  # nested variants, e.g. FINN at its defaults beside FINN tuned
        for key, label in NESTED_BASELINES:
            extra = b.get(key) if isinstance(b, dict) else None
            if isinstance(extra, dict):
                found.append({"accelerator": b.get("accelerator"), "label": label, **extra})
    out = []
    for b in found:
        if not isinstance(b, dict) or b.get("fps") is None:
            continue
        b = dict(b)
        b.setdefault("label", accelerator_label(b.get("accelerator")))
        if "budget_percent" not in b and "resources" in b:
            b["budget_percent"] = budget_percent(b["resources"], report.get("budget") or {})
        out.append(b)
    return out


def _golden_cell(level: dict[str, Any], *keys: str) -> str:
    for k in keys:
        v = level.get(k)
        if v is not None:
            if isinstance(v, float):
                return f"{v:.3g}"
            if isinstance(v, (list, tuple)):
                return ", ".join(map(str, v))
            return str(v)
    return "-"


#: columns of the golden-check table: title, then the keys a level may carry them under
GOLDEN_COLUMNS = (
    ("compared", ("compared", "comparison", "kind")),
    ("tolerance", ("tolerance", "atol", "tol")),
)


def golden_rows(golden: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(level, compared tensors, max |diff|, tolerance, result): one row per tensor a
    level compared (its `tensors`: name and comparison kind: bit-exact, integer codes,
    tolerance, labels), else one row per level. A level that does not say what it
    compared or which tolerance it used shows "-"."""
    rows = []
    for lv in golden.get("levels", []):
        tensors = lv.get("tensors")
        if isinstance(tensors, list) and tensors and all(isinstance(x, dict) for x in tensors):
            for x in tensors:
                diff, tol = x.get("max_abs_diff"), x.get("tolerance")
                rows.append((str(lv.get("name", "?")),
                             f"{x.get('tensor', '?')} ({x.get('kind', '?')})",
                             "-" if diff is None else f"{float(diff):.3g}",
                             "-" if tol is None else f"{float(tol):.3g}",
                             "ok" if x.get("ok") else "MISMATCH"))
            continue
        compared = _golden_cell(lv, *GOLDEN_COLUMNS[0][1])
        tol = _golden_cell(lv, *GOLDEN_COLUMNS[1][1])
        if tol == "-" and lv.get("exact"):
            tol = "0 (bit-exact)"
        diff = lv.get("max_abs_diff")
        rows.append((str(lv.get("name", "?")), compared,
                     "-" if diff is None else f"{float(diff):.3g}", tol,
                     "ok" if lv.get("ok") else "MISMATCH"))
    return rows


def _layer_table(layers: list[dict[str, Any]]) -> list[str]:
    lines = ["| layer | op | width | wbits | abits | kernel | PE | SIMD | memory style | "
             "MAC on | FINN node |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|:---|:---|:---|"]

    def cell(v: Any) -> str:
        return "-" if v is None else str(v)

    def kernel(k: Any) -> str:
        return "-" if k is None else f"{k}x{k}"

    for row in layers:
        mem = row.get("mem_mode")
        style = "-" if mem is None else (str(mem).replace("internal_", "") + (
            f", {row['ram_style']} RAM" if row.get("ram_style") else ""))
        lines.append(
            f"| {row['layer']} | {row['op']} | {cell(row.get('width'))} | "
            f"{cell(row.get('wbits'))} | {cell(row.get('abits'))} | "
            f"{kernel(row.get('kernel'))} | "
            f"{cell(row.get('pe'))} | {cell(row.get('simd'))} | {style} | "
            f"{cell(row.get('res_type')).upper() if row.get('res_type') else '-'} | "
            f"{cell(row.get('finn_node'))} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """report.md's text, from report.json's contents."""
    r = report
    budget = r.get("budget") or {}
    device = r.get("device") or {}
    search = r.get("search") or {}
    pareto = r.get("pareto") or []
    chosen = r.get("chosen")
    lines = [
        f"# nashc compile report: {r['network']}",
        "",
        f"Source `{r['source']}`, target **{r['target']}** (`{r['part']}`) at "
        f"{r['clock_mhz']:g} MHz. Resources and fps are FINN's estimates (no synthesis).",
        "",
        "## Budget",
        "",
        "| | LUT | BRAM18 | URAM | DSP |",
        "|:---|---:|---:|---:|---:|",
        "| budget | " + " | ".join(_int(budget.get(k)) for k, _ in RESOURCES) + " |",
    ]
    if device:
        lines.append("| device (FINN's table) | " + " | ".join(_int(device.get(k)) for k, _ in RESOURCES)
                     + " |")
        lines.append("| budget / device | " + " | ".join(
            _pct(100 * budget[k] / device[k]) if budget.get(k) is not None and device.get(k)
            else "-" for k, _ in RESOURCES) + " |")
    reqs = {k: v for k, v in (r.get("requirements") or {}).items() if v is not None}
    if reqs:
        lines += ["", "Requirements: " + ", ".join(
            f"fps >= {_int(v)}" if k == "fps_min" else f"latency <= {v:g} ms"
            if k == "latency_max_ms" else f"{k} {v}" for k, v in reqs.items())]
    lines += ["", "## Search", ""]
    if search:
        planned = search.get("space_size")
        stop = (f", stopped early ({search.get('stop_reason')})"
                if search.get("interrupted") else "")
        lines += [
            f"- strategy {search.get('strategy')}, metric {search.get('metric')}, "
            f"seed {search.get('seed')}",
            f"- {search.get('candidates_evaluated')} of {_int(planned)} candidates scored "
            f"in {search.get('seconds', 0):.1f} s{stop}; {search.get('finn_evaluated')} "
            "lowered through FINN",
            f"- folding: {accelerator_label(search.get('accelerator'))}",
        ]
        for k, v in search.items():
            if k not in ("strategy", "metric", "seed", "space_size", "candidates_evaluated",
                         "seconds", "interrupted", "stop_reason", "finn_evaluated",
                         "accelerator"):
                lines.append(f"- {k}: {v}")
    lines += [
        "",
        "## Pareto front",
        "",
        "Resources as count (% of the budget).",
        "",
        "| # | score | accuracy | fps | latency ms | LUT | BRAM18 | URAM | DSP | conv/shift/adder |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for i, p in enumerate(pareto):
        mark = " **(chosen)**" if i == chosen else ""
        acc = "-" if p.get("accuracy") is None else f"{100 * p['accuracy']:.2f}%"
        pct = p.get("budget_percent") or budget_percent(p["resources"], budget)
        o = p.get("ops") or {}
        lines.append(
            f"| {i}{mark} | {p['score']:.3f} | {acc} | {_int(p['fps'])} | "
            f"{p['latency_ms']:.4f} | "
            + " | ".join(_used(p["resources"], pct, k) for k, _ in RESOURCES)
            + f" | {o.get('conv', 0)}/{o.get('shift', 0)}/{o.get('adder', 0)} |")
    bases = baselines(r)
    if chosen is not None and bases:
        c = pareto[chosen]
        ours = accelerator_label(search.get("accelerator"))
        lines += ["", f"## Baseline: {bases[0]['label']} within the "
                  "same budget (chosen architecture)", "",
                  "| folding | fps | chosen fps / this | latency ms | LUT | BRAM18 | URAM | DSP | "
                  "fits budget |",
                  "|:---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        cpct = c.get("budget_percent") or budget_percent(c["resources"], budget)
        lines.append(f"| {ours} (chosen, #{chosen}) | {_int(c['fps'])} | 1.00x | "
                     f"{c['latency_ms']:.4f} | "
                     + " | ".join(_used(c["resources"], cpct, k) for k, _ in RESOURCES)
                     + " | yes |")
        for b in bases:
            fits = b.get("fits_budget")
            lat = b.get("latency_ms")
            ratio = f"{c['fps'] / b['fps']:.2f}x" if b.get("fps") else "-"
            lines.append(f"| {b['label']} | {_int(b['fps'])} | {ratio} | "
                         f"{'-' if lat is None else f'{lat:.4f}'} | "
                         + " | ".join(_used(b.get("resources") or {}, b.get("budget_percent"),
                                           k) for k, _ in RESOURCES)
                         + f" | {'-' if fits is None else 'yes' if fits else 'no'} |")
        notes = []
        for b in bases:
            opts = b.get("setfolding_options")
            how = [f"target fps {_int(b['target_fps'])}"] if b.get("target_fps") else []
            if isinstance(opts, dict):
                how += [f"{k} {v:,}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                        else f"{k} {v}" for k, v in opts.items()]
            if how:
                notes.append(f"- {b['label']}: SetFolding with " + ", ".join(how))
        if notes:
            lines += [""] + notes
    if pareto:
        lines += ["", "## Architecture", ""]
        order = ([chosen] if chosen is not None else []) + [
            i for i in range(len(pareto)) if i != chosen]
        for i in order:
            p = pareto[i]
            title = f"### #{i}" + (" (chosen)" if i == chosen else "")
            lines += [title, ""]
            if p.get("arch"):
                lines += ["Choices: " + ", ".join(f"`{k}={v}`"
                                                  for k, v in sorted(p["arch"].items())), ""]
            if p.get("layers"):
                lines += _layer_table(p["layers"])
            else:
                lines.append("(no per-layer table in this report)")
            lines.append("")
    check = r.get("design_check")
    if isinstance(check, dict):
        lines += ["## Design check (FINN's InsertDWC/InsertFIFO on the chosen design)", "",
                  f"- fits the budget: {'yes' if check.get('fits') else 'NO'}"]
        if check.get("dwcs") is not None:
            deep = check.get("deep_fifos")
            nd, nf = check.get("dwcs"), check.get("fifos")
            lines.append(f"- {nd} DWC{'' if nd == 1 else 's'}, {nf} FIFO{'' if nf == 1 else 's'}"
                         + (f" ({len(deep)} deep)" if isinstance(deep, list) else ""))
        for title, key in (("estimated", "estimated"), ("as FINN inserts them", "resources")):
            res = check.get(key)
            if isinstance(res, dict):
                lines.append(f"- resources {title}: " + ", ".join(
                    f"{name} {_used(res, budget_percent(res, budget), k)}"
                    for k, name in RESOURCES))
        for problem in check.get("problems") or []:
            lines.append(f"- problem: {problem}")
        lines.append("")
    golden = r.get("golden")
    if golden:
        lines += ["## Golden check (onnxruntime)", "",
                  "| level | compared | max abs diff | tolerance | result |",
                  "|:---|:---|---:|:---|:---:|"]
        for row in golden_rows(golden):
            lines.append("| " + " | ".join(row) + " |")
        if any("-" in (row[1], row[3]) for row in golden_rows(golden)):
            lines += ["", "-: not recorded by this level."]
    steps = r.get("steps_seconds")
    if steps:
        lines += ["", "## Steps", "", "| step | seconds |", "|:---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in steps.items()]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


def write_markdown(result: CompileResult | dict[str, Any], path: Path) -> None:
    report = result.to_json() if isinstance(result, CompileResult) else result
    path.write_text(markdown(report))


#: axis titles of the search metrics (`search metric`), all unitless, higher is better
METRIC_LABELS = {"zero_shot": "zero-shot score (unitless, higher is better)",
                 "fidelity": "fidelity: top-1 agreement with the loaded model (fraction)"}


def _metric_label(report: dict[str, Any]) -> str:
    metric = (report.get("search") or {}).get("metric") or "zero_shot"
    return METRIC_LABELS.get(metric, f"{metric} score (unitless, higher is better)")


def front_axis(report: dict[str, Any]) -> tuple[str, list[float]]:
    """The x quantity of the front: measured accuracy in % when every front point has one,
    else the search metric's score (never both on one axis). Returns (label, values)."""
    pareto = report.get("pareto") or []
    if pareto and all(p.get("accuracy") is not None for p in pareto):
        return "validation accuracy (%)", [100.0 * float(p["accuracy"]) for p in pareto]
    return _metric_label(report), [float(p["score"]) for p in pareto]


def _readable_log_axis(ax: Any, values: list[float]) -> None:
    """Plain numbers with thousands separators on a log y axis spanning less than two
    decades (matplotlib's default there is 3.9x10^6-style minor labels)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    pos = [v for v in values if v > 0]
    if not pos or max(pos) / min(pos) >= 100:
        return
    if max(pos) / min(pos) < 1.2:  # one value: a narrow window, not matplotlib's decade
        ax.set_ylim(min(pos) / 1.5, max(pos) * 1.5)
    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt if max(pos) / min(pos) < 10 else NullFormatter())


def pareto_figure(report: dict[str, Any]) -> Any:
    """The figure of `pareto.png`, drawn from report.json's contents alone.

    Three panels: (1) the Pareto front after FINN (x: accuracy or score, see `front_axis`;
    y: FINN-estimated fps, log), the chosen design ringed and each baseline's folding of
    the chosen architecture at the chosen point's x; (2) each front point's and the
    baselines' LUT/BRAM18/URAM/DSP as % of the budget; (3) the coarse stage: every scored
    candidate's score against the cost model's fps bound (log), the ones lowered through
    FINN marked. Returns the matplotlib Figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pareto = report.get("pareto") or []
    chosen = report.get("chosen")
    bases = baselines(report)
    fig, (ax, au, ac) = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110,
                                     gridspec_kw={"width_ratios": [1.1, 1.0, 1.0]})
    # (1) the front
    xlabel, xs = front_axis(report)
    ys = [float(p["fps"]) for p in pareto]
    if pareto:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        ax.plot([xs[i] for i in order], [ys[i] for i in order], "-", color="#1f77b4",
                alpha=0.4, zorder=1)
        ax.scatter(xs, ys, s=45, color="#1f77b4", edgecolors="k", zorder=3,
                   label="Pareto front (FINN estimate)", gid="front")
        for i, (x, y) in enumerate(zip(xs, ys)):
            ax.annotate(f"#{i}", (x, y), textcoords="offset points", xytext=(6, 4),
                        fontsize=8)
        if chosen is not None:
            ax.scatter([xs[chosen]], [ys[chosen]], s=220, facecolors="none",
                       edgecolors="r", linewidths=1.8, zorder=4,
                       label=f"chosen #{chosen} ({accelerator_label((report.get('search') or {}).get('accelerator'))})",
                       gid="chosen")
            markers = ["D", "s", "^", "v"]
            for j, b in enumerate(bases):
                if not b["fps"] or float(b["fps"]) <= 0:
                    continue  # nothing fits: no point on a log axis (the bars show it)
                ax.scatter([xs[chosen]], [float(b["fps"])], marker=markers[j % len(markers)],
                           s=110, facecolors="none", linewidths=1.6,
                           edgecolors=["#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"][j % 4],
                           zorder=5, label=f"{b['label']}, same architecture",
                           gid=f"baseline{j}")
                ax.plot([xs[chosen]] * 2, [ys[chosen], float(b["fps"])], ":", color="grey",
                        zorder=2)
    if xs and xlabel.startswith("validation accuracy"):
        lo, hi = min(xs), max(xs)
        pad = max(0.5, 0.1 * (hi - lo))
        ax.set_xlim(max(0.0, lo - pad), min(100.0, hi + pad) if hi < 100.0 else 100.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput (frames/s, log scale)")
    ax.set_yscale("log")
    _readable_log_axis(ax, ys + [float(b["fps"]) for b in bases if b["fps"]])
    ax.set_title("Pareto front after FINN folding")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    # (2) utilisation of the budget
    groups = [(f"#{i}" + ("*" if i == chosen else ""), p.get("budget_percent")
               or budget_percent(p["resources"], report.get("budget") or {}))
              for i, p in enumerate(pareto)]
    groups += [(b["label"].replace(" ", "\n", 1), b["budget_percent"]) for b in bases]
    width = 0.8 / len(RESOURCES)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for k, ((key, title), colour) in enumerate(zip(RESOURCES, colours)):
        vals = [float((pct or {}).get(key) or 0.0) for _, pct in groups]
        bars = au.bar([g + (k - 1.5) * width for g in range(len(groups))], vals, width,
                      color=colour, label=title, gid=f"util_{key}")
        au.bar_label(bars, labels=[f"{v:.0f}" if v >= 1 else f"{v:.1f}" if v > 0 else ""
                                   for v in vals], fontsize=6, padding=1)
    au.axhline(100.0, color="k", linestyle="--", linewidth=0.8)
    au.set_xticks(range(len(groups)))
    au.set_xticklabels([g for g, _ in groups], fontsize=8)
    au.set_xlabel("design (* chosen)")
    au.set_ylabel("resources used (% of budget)")
    au.set_title("Utilisation of the budget (FINN estimate)")
    au.legend(fontsize=7, ncol=4, loc="upper left")
    au.set_ylim(0, max([105.0] + [float(v or 0) for _, pct in groups
                                  for v in (pct or {}).values()]) * 1.15)
    au.grid(True, axis="y", alpha=0.3)
    # (3) the coarse stage
    coarse = report.get("coarse") or {}
    cs, cf = coarse.get("score") or [], coarse.get("fps_bound") or []
    feas = coarse.get("feasible") or [True] * len(cs)
    low = coarse.get("lowered") or [False] * len(cs)
    for sel, style in ((lambda i: feas[i] and not low[i], dict(s=12, c="#999999",
                                                                label="scored")),
                       (lambda i: not feas[i], dict(s=14, c="#999999", marker="x",
                                                    label="below the fps requirement")),
                       (lambda i: low[i], dict(s=40, c="#1f77b4", edgecolors="k",
                                               label="lowered through FINN"))):
        idx = [i for i in range(len(cs)) if sel(i)]
        if idx:
            ac.scatter([cs[i] for i in idx], [cf[i] for i in idx],
                       gid="coarse_" + str(style["label"]).split()[0], **style)  # type: ignore[arg-type]
    ac.set_xlabel(_metric_label(report))
    ac.set_ylabel("fps bound of the cost model (frames/s, log scale)")
    ac.set_yscale("log")
    _readable_log_axis(ac, [float(v) for v in cf])
    ac.set_title(f"Coarse stage: {len(cs)} candidates scored")
    ac.grid(True, which="both", alpha=0.3)
    if cs:
        ac.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def write_plot(report: dict[str, Any] | CompileResult, path: Path) -> None:
    """Writes `pareto_figure(report)` as a PNG."""
    import matplotlib.pyplot as plt

    data = report.to_json() if isinstance(report, CompileResult) else report
    fig = pareto_figure(data)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
