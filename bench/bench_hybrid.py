"""Benchmark 2: hybrid gain — multiplication-only space vs hybrid (shift/adder) space.

One small quantized CNN on scikit-learn's digits is written in the language (`NETWORK`
below). Two search spaces differ only in the `op` line:

* `mult-only`: `op c1, c2 in {conv}`                 (multiplication layers only),
* `hybrid`:    `op c1, c2 in {conv, shift, adder}`   (multiplication-reduced layers),

with the same width / weight-bit / activation-bit choices, the same u250 budget, the
same search settings and seed. For each budget and space, `nashc compile`
(`nashc.pipeline.compile_file`) runs the whole pipeline: zero-shot search, FINN
lowering and folding search of the survivors, then quantization-aware training of the
lowered finalists on digits (the `train` section), so the reported accuracies are
measured validation accuracies and the fps are FINN's estimates of the folded designs.

From each report's Pareto front over (accuracy, fps) it reports the best fps, the fps
and accuracy of the most accurate design, and the fastest design within 1 point of the
best accuracy reached by either space (an iso-accuracy comparison), and the ratios
hybrid / mult-only. Usage:

    python bench/bench_hybrid.py [--quick] [--bits B] [--no-write] [--json FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, digits_convnet, write_section  # noqa: E402

from nashc.passes.costmodel import lane_cost_source  # noqa: E402

NETWORK = digits_convnet("hybdigits")

SPACES = {
    "mult-only": "{conv}",
    "hybrid": "{conv, shift, adder}",
}

#: (label, lut share, dsp share) of the u250; BRAM/URAM are left unconstrained.
BUDGETS_FULL = [("lut 2%, dsp 1%", 2, 1), ("lut 10%, dsp 5%", 10, 5)]
BUDGETS_QUICK = [("lut 2%, dsp 1%", 2, 1)]


def nash_source(ops: str, lut_pct: float, dsp_pct: float, *, population: int,
                generations: int, epochs: int, seed: int, bits: int | None = None) -> str:
    """The .nash file of one space at one budget (`bits`: weights and activations of
    stem, c1, c2 fixed to that width instead of searched)."""
    wb = f"{{{bits}}}" if bits else "{2, 4, 8}"
    ab = f"{{{bits}}}" if bits else "{2, 4}"
    return NETWORK + f"""
space {{
  op    c1, c2        in {ops}
  width c1, c2        in {{0.5, 1.0}}
  wbits stem, c1, c2  in {wb}
  abits stem, c1, c2  in {ab}
  fix   head
}}

hardware {{
  target  u250
  clock   200 MHz
  budget  lut {lut_pct:g}%, dsp {dsp_pct:g}%
}}

search {{
  metric      zero_shot batch 32
  strategy    evolution population {population} generations {generations}
  accelerator coarse_to_fine
  keep        pareto 32
  seed        {seed}
}}

train {{
  dataset digits
  epochs  {epochs}
  batch   64
  lr      0.01
}}
"""


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one compile report (its Pareto front over accuracy x fps)."""
    pts = [p for p in report["pareto"] if p.get("accuracy") is not None]
    fastest = max(pts, key=lambda p: p["fps"])
    best_acc = max(pts, key=lambda p: (p["accuracy"], p["fps"]))
    return {
        "points": [{"arch": p["arch"], "accuracy": p["accuracy"], "fps": p["fps"],
                    "ops": p["ops"], "resources": p["resources"]} for p in pts],
        "best_fps": fastest["fps"], "best_fps_acc": fastest["accuracy"],
        "top_acc": best_acc["accuracy"], "top_acc_fps": best_acc["fps"],
        "candidates": report["search"]["candidates_evaluated"],
        "finn": report["search"]["finn_evaluated"],
        "search_s": report["search"]["seconds"],
        "steps_s": report.get("steps_seconds", {}),
        "notes": report.get("notes", []),
    }


def fastest_within(summary: dict[str, Any], bar: float) -> dict[str, Any] | None:
    ok = [p for p in summary["points"] if p["accuracy"] >= bar]
    return max(ok, key=lambda p: p["fps"]) if ok else None


def op_swap_control(hybrid: dict[str, Any], nash: Path, workdir: Path,
                    max_points: int | None = None) -> list[dict[str, Any]]:
    """For every hybrid Pareto point with a shift or adder layer: the same architecture
    (widths, bits) with every op set to conv, trained and lowered exactly as the pipeline
    does (same seed, data, epochs, budget). Separates the gain of the op from the gain of
    the other choices the hybrid search happened to make."""
    from nashc.pipeline import Candidate, CompileOptions, CompileState, _finn_stage, step_parse
    from nashc.targets.boards import report_keys
    from nashc.training import prepare_data, train_candidate

    state = CompileState(path=nash, opts=CompileOptions(progress=False), workdir=workdir)
    step_parse(state)
    program = state.program
    data = prepare_data(program, state.seed)
    out = []
    points = [x for x in hybrid["points"] if x["ops"].get("shift", 0) + x["ops"].get("adder", 0)]
    for i, p in enumerate(points[:max_points]):
        choice: dict[tuple[str, str], Any] = {}
        for key, value in p["arch"].items():
            layer, dim = key.rsplit(".", 1)
            choice[(layer, dim)] = "conv" if dim == "op" else value
        module, result = train_candidate(program, choice, state.seed, data=data)
        cand = Candidate(choice)
        _finn_stage(state, cand, i, module=module)
        out.append({"hybrid": p, "conv_accuracy": float(result.val_accuracy[-1]),
                    "conv_fps": cand.fps, "conv_feasible": cand.feasible,
                    "conv_resources": report_keys(cand.resources) if cand.resources else None})
    return out


def _ops(p: dict[str, Any]) -> str:
    o = p["ops"]
    return "/".join(str(o.get(k, 0)) for k in ("conv", "shift", "adder"))


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    from nashc.pipeline import CompileOptions, compile_file

    budgets = BUDGETS_QUICK if args.quick else BUDGETS_FULL
    if args.budget:
        budgets = [b for b in BUDGETS_FULL if b[0].startswith(f"lut {args.budget:g}%")]
    rows = []
    for label, lut, dsp in budgets:
        row: dict[str, Any] = {"budget": label}
        for space, ops in SPACES.items():
            src = nash_source(ops, lut, dsp, population=args.population,
                              generations=args.generations, epochs=args.epochs, seed=args.seed,
                              bits=args.bits)
            tag = f"{space}_lut{lut:g}_dsp{dsp:g}"
            path = workdir / f"{tag}.nash"
            path.write_text(src)
            t0 = time.perf_counter()
            _, report = compile_file(path, CompileOptions(
                output=workdir / tag, seed=args.seed, survivors=args.survivors,
                progress=False, jobs=args.jobs))
            s = summarise(report)
            s["wall_s"] = time.perf_counter() - t0
            row[space] = s
            print(f"[{label}] {space:9s}: {s['candidates']} candidates, {s['finn']} through "
                  f"FINN, {len(s['points'])} Pareto points, best fps {s['best_fps']:,.0f}, "
                  f"best accuracy {100 * s['top_acc']:.1f}% at {s['top_acc_fps']:,.0f} fps "
                  f"({s['wall_s']:.0f} s)", flush=True)
        # iso-accuracy: within 1 point of the weaker space's best, so both spaces qualify
        bar = min(row[s]["top_acc"] for s in SPACES) - 0.01
        row["bar"] = bar
        for space in SPACES:
            row[space]["within"] = fastest_within(row[space], bar)
        row["control"] = op_swap_control(row["hybrid"], workdir / f"hybrid_lut{lut:g}_dsp{dsp:g}.nash",
                                         workdir / f"control_lut{lut:g}_dsp{dsp:g}",
                                         max_points=1 if args.quick else None)
        rows.append(row)
    return rows


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def render(rows: list[dict[str, Any]], args: argparse.Namespace, load: tuple[str, str]) -> str:
    m, h = "mult-only", "hybrid"
    title = "## 2. Hybrid gain: multiplication-only vs hybrid space"
    if args.bits:
        title += f" at {args.bits} bits"
    lines = [
        title,
        "",
        f"Lane costs of the cost model: {lane_cost_source()}.",
        "",
        "Network `hybdigits` (digits 1x8x8 uint8: conv stem 16, conv c1 32, conv c2 32 "
        "stride 2, global avg pool, fc head 10 int8), written inline in "
        "`bench/bench_hybrid.py`. Both spaces choose width c1,c2 in {0.5, 1.0}, "
        "wbits stem,c1,c2 in {2, 4, 8}, abits stem,c1,c2 in {2, 4}; they differ only in "
        "`op c1, c2`: `{conv}` vs `{conv, shift, adder}` (space sizes 864 vs 7,776). "
        + (f"Here wbits and abits of stem, c1, c2 are all fixed to {args.bits} "
           "(space sizes 4 vs 36). " if args.bits else "") +
        f"`nashc compile` on the u250 at 200 MHz, evolution population {args.population} "
        f"generations {args.generations}, {args.survivors} survivors through FINN, seed "
        f"{args.seed}, then {args.epochs} epochs of QAT on digits (1,438 train / 359 "
        "validation images) per finalist: accuracy = measured validation accuracy, fps = "
        "FINN's estimate of the folded design inside the budget. Figures are read off each "
        "report's Pareto front (accuracy x fps).",
        "",
        "| budget (u250) | space | candidates / FINN | best fps | its acc. | best acc. | "
        "its fps | fastest within 1 pt of the weaker space's best acc. (fps, acc., "
        "conv/shift/adder) | "
        "compile s |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        for space in (m, h):
            s = r[space]
            w = s["within"]
            wtxt = (f"{w['fps']:,.0f} fps, {100 * w['accuracy']:.1f}%, {_ops(w)}" if w
                    else "none")
            lines.append(
                f"| {r['budget']} | {space} | {s['candidates']} / {s['finn']} | "
                f"{s['best_fps']:,.0f} | {100 * s['best_fps_acc']:.1f}% | "
                f"{100 * s['top_acc']:.1f}% | {s['top_acc_fps']:,.0f} | {wtxt} | "
                f"{s['wall_s']:.0f} |")
    lines += [
        "",
        "| budget | hybrid / mult-only: best fps | fps of most accurate | acc. of most "
        "accurate (points) | iso-accuracy fps (within 1 pt of the weaker best) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        wm, wh = r[m]["within"], r[h]["within"]
        lines.append(
            f"| {r['budget']} | {_ratio(r[h]['best_fps'], r[m]['best_fps'])} | "
            f"{_ratio(r[h]['top_acc_fps'], r[m]['top_acc_fps'])} | "
            f"{100 * (r[h]['top_acc'] - r[m]['top_acc']):+.1f} | "
            f"{_ratio(wh['fps'] if wh else None, wm['fps'] if wm else None)} |")
    lines += [
        "",
        "Control (op swap): each hybrid Pareto point with a shift/adder layer, next to the "
        "same architecture with every op set to conv (same widths and bits, trained and "
        "lowered the same way):",
        "",
        "| budget | hybrid design (conv/shift/adder) | hybrid acc. | hybrid fps | "
        "all-conv acc. | all-conv fps | fps ratio hybrid / all-conv |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for c in r["control"]:
            hp = c["hybrid"]
            arch = ", ".join(f"{k}={v}" for k, v in hp["arch"].items()
                             if k.split(".")[0] in ("c1", "c2"))
            cf = c["conv_fps"] if c["conv_feasible"] else None
            lines.append(
                f"| {r['budget']} | {arch} ({_ops(hp)}) | {100 * hp['accuracy']:.1f}% | "
                f"{hp['fps']:,.0f} | {100 * c['conv_accuracy']:.1f}% | "
                + (f"{cf:,.0f}" if cf else "does not fit") + f" | {_ratio(hp['fps'], cf)} |")
        if not r["control"]:
            lines.append(f"| {r['budget']} | (no hybrid Pareto point uses shift or adder) "
                         "| | | | | |")
    lines += ["", "<details><summary>Pareto points of every run</summary>", "",
              "| budget | space | accuracy | fps | conv/shift/adder | LUT | DSP | arch |",
              "|---|---|---:|---:|---|---:|---:|---|"]
    for r in rows:
        for space in (m, h):
            for p in sorted(r[space]["points"], key=lambda p: -p["fps"]):
                arch = ", ".join(f"{k}={v}" for k, v in p["arch"].items())
                lines.append(f"| {r['budget']} | {space} | {100 * p['accuracy']:.1f}% | "
                             f"{p['fps']:,.0f} | {_ops(p)} | {p['resources'].get('lut', 0):,.0f}"
                             f" | {p['resources'].get('dsp', 0):,.0f} | {arch} |")
    notes = [(r["budget"], sp, n) for r in rows for sp in (m, h) for n in r[sp]["notes"]
             if "was not lowered" in n]
    lines += ["", "</details>", ""]
    if notes:
        lines += ["Candidates FINN could not lower (they drop out of the fronts):", ""]
        lines += [f"- {b}, {sp}: {n}" for b, sp, n in notes]
        lines.append("")
    busy = max(float(x) for x in load) > 1.0
    lines.append(f"Load average (1 min) before / after: {load[0]} / {load[1]} on "
                 f"{os.cpu_count()} cores"
                 + (" (other jobs were running: wall times are disturbed; fps and accuracies "
                    "are not, they are seeded)." if busy else "."))
    return "\n".join(lines)


READING = """
**Reading.** {reading}

The published claim (NASH, hybrid NAS + accelerator search: 2.14x throughput at +0.25%
accuracy over the best multiplication-only system on CIFAR-100) is not directly
comparable: it is ResNet-scale on CIFAR-100 (32x32 RGB, 100 classes), trained for
hundreds of epochs, measured on a real FPGA build with its own shift/adder
accelerators, against a separately designed multiplication-only system; here the
network is tiny, the data is 8x8 digits (10 classes, 359 validation images, so 1 point
is ~4 images), training is a few epochs, and fps are FINN's analytic estimates under the
same nashc folding search for both spaces, with LUT costs of shift/adder layers from
nashc's cost model ({source}; FINN's own estimates for FINN's multiplication layers).
"""


def reading(rows: list[dict[str, Any]]) -> str:
    parts = []
    for r in rows:
        m, h = r["mult-only"], r["hybrid"]
        wm, wh = m["within"], h["within"]
        g = h["best_fps"] / m["best_fps"] if m["best_fps"] else float("nan")
        iso = (f"{wh['fps'] / wm['fps']:.2f}x ({100 * wh['accuracy']:.1f}% vs "
               f"{100 * wm['accuracy']:.1f}%)" if wh and wm else "not defined")
        ctl = [c["hybrid"]["fps"] / c["conv_fps"] for c in r["control"]
               if c["conv_feasible"] and c["conv_fps"]]
        ctl_txt = (" Swapping the hybrid points' shift/adder layers back to conv at the same "
                   "widths and bits gives fps ratios hybrid / all-conv of "
                   + ", ".join(f"{x:.2f}x" for x in ctl) + "." if ctl else "")
        parts.append(
            f"At {r['budget']}: the hybrid space's best fps is {g:.2f}x the mult-only "
            f"space's; its most accurate design is {100 * (h['top_acc'] - m['top_acc']):+.1f} "
            f"points vs mult-only's, and at iso-accuracy (fastest design within 1 point of "
            f"the weaker space's best) the hybrid / mult-only fps ratio is {iso}." + ctl_txt)
    ctl_all = [c for r in rows for c in r["control"] if c["conv_feasible"] and c["conv_fps"]]
    adders = sum(p["ops"].get("adder", 0) for r in rows for sp in SPACES
                 for p in r[sp]["points"])
    same_fast = all(r["hybrid"]["best_fps"] == r["mult-only"]["best_fps"] for r in rows)
    verdict = []
    if same_fast:
        verdict.append("Both spaces reach the same best fps at every budget with all-conv "
                       "designs at width 0.5, so the op choice does not "
                       "raise the throughput ceiling of this network.")
    if ctl_all and all(c["hybrid"]["fps"] <= c["conv_fps"] for c in ctl_all):
        better_acc = sum(c["conv_accuracy"] >= c["hybrid"]["accuracy"] - 0.01 for c in ctl_all)
        verdict.append(
            "The control is decisive: no hybrid design is faster than the same architecture "
            "with multiplication layers (ratios <= 1.00x), and the all-conv twin is within 1 "
            f"point or better in accuracy in {better_acc} of {len(ctl_all)} cases. The "
            "hybrid / mult-only ratios above therefore come from the search, not from shift "
            "or adder layers: with 40 candidates and 6 FINN survivors per run, the two "
            "searches visit different widths and bits (the hybrid space is 9x larger and "
            "the zero-shot score ranks it differently), and the all-conv twins of the hybrid "
            "points lie in the mult-only space but were not reached by its search. "
            "**On this network and these budgets, hybrids do not win.**")
    if adders == 0:
        verdict.append("No adder layer reached any Pareto front.")
    verdict.append(
        "Why, per nashc's lane cost model (`nashc.passes.costmodel`, FINN's LUT model): a "
        "shift lane costs about what a LUT multiplier costs at 2-bit weights and much more "
        "at 4-8 bits (the barrel shifter spans 2^(W-1)-1 positions), an adder lane is "
        "cheaper than a LUT multiplier only from ~4 bits up, and at 2-4 bits multiplication "
        "is already cheap in LUTs while the small DSP budget takes some of it; the "
        "multiplication-reduced ops pay off for wide (8-bit) arithmetic, which the "
        "published system uses and low-bit FINN designs avoid.")
    return " ".join(parts) + "\n\n" + " ".join(verdict)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one budget, 8 candidates, 2 survivors, 1 epoch, one control point")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--keep", type=Path, help="keep the compile outputs in this directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None, help="coarse-stage worker processes")
    ap.add_argument("--bits", type=int, choices=range(2, 9), default=None,
                    help="fix weights and activations of stem, c1, c2 to this width")
    ap.add_argument("--budget", type=float, choices=[b[1] for b in BUDGETS_FULL],
                    help="only the budget with this LUT percentage")
    ap.add_argument("--survivors", type=int, help="candidates through FINN per compile")
    ap.add_argument("--epochs", type=int, help="QAT epochs per finalist")
    args = ap.parse_args(argv)
    defaults = (8, 1, 2, 1) if args.quick else (16, 3, 6, 5)
    args.population, args.generations = defaults[:2]
    args.survivors = args.survivors or defaults[2]
    args.epochs = args.epochs or defaults[3]
    logging.disable(logging.WARNING)  # FINN's SetFolding (baseline step) warns at every probe
    warnings.filterwarnings("ignore")
    load0 = Path("/proc/loadavg").read_text().split()[0]
    t0 = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_hybrid_") as tmp:
            rows = run(args, Path(tmp))
    load1 = Path("/proc/loadavg").read_text().split()[0]
    body = render(rows, args, (load0, load1)) + "\n" + READING.format(reading=reading(rows),
                                                                   source=lane_cost_source())
    body += f"\nTotal benchmark time {time.perf_counter() - t0:.0f} s.\n"
    print()
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": [load0, load1]}, indent=1,
                                        default=str))
    if not args.no_write:
        write_section(f"hybrid_{args.bits}bit" if args.bits else "hybrid", body,
                      command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
