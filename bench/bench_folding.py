"""Benchmark 1: accelerator search vs FINN (defaults and tuned) and the exact optimum,
all counting the whole design FINN builds.

For each network, lowered through FINN for the board, and each budget (a share of every
resource of the board), the same accounting (`nashc.targets.folding.FoldingProblem`:
FINN's estimates of the layers, the DWCs and FIFOs of InsertDWC/InsertFIFO, the deep
FIFOs of residual joins, graph ends no wider than the board's IODMA) judges:

* `nashc`          SearchFolding (coarse-to-fine; max throughput, then least resources),
* `FINN defaults`  SetFolding, target cycles searched, mvau_wwidth_max = 36,
* `FINN tuned`     SetFolding, target cycles and mvau_wwidth_max (36..8191) searched,
* `exact`          the integer program of the same problem (CBC, time limit per solve).

nashc's and FINN tuned's designs are then built by FINN's InsertDWC/InsertFIFO/
SpecializeLayers (`confirm_design`); the resources shown are FINN's estimates of those
graphs. Networks: FINN's TFC and CNV (brevitas_examples, random weights) and the three
networks of examples/ as declared ("plain") and with their middle layers shift/adder
units ("hybrid"); resnet8 is the residual one. Boards: u250 and zcu104. Usage:

    python bench/bench_folding.py [--quick] [--no-write] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import brevitas_example, command_line, write_section  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example_network(name: str, hybrid: bool, seed: int = 0):
    """An example network of examples/ as declared, or with its middle conv/fc layers
    made hybrid (alternately shift and adder; the first and last stay multiplications),
    BatchNorm calibrated on random inputs, exported to QONNX."""
    import tempfile

    import torch

    from nashc.dsl import load
    from nashc.runtime.build import (
        LayerChoice,
        build_module,
        calibrate_batchnorm,
        export_qonnx_model,
    )

    program = load(EXAMPLES / name)
    net = program.network
    compute = [layer.name for layer in net.layers if layer.kind in ("conv", "fc")]
    choices = {}
    if hybrid:
        for i, layer in enumerate(compute[1:-1]):
            choices[layer] = LayerChoice(op="shift" if i % 2 == 0 else "adder")
    torch.manual_seed(seed)
    module = calibrate_batchnorm(build_module(net, choices),
                                 torch.randint(0, 256, (16, *net.input_shape)).float())
    with tempfile.TemporaryDirectory() as tmp:
        return export_qonnx_model(module, net, Path(tmp) / "m.onnx")


def _models(quick: bool):
    yield "TFC-w2a2", lambda: brevitas_example("tfc")
    if quick:
        return
    yield "CNV-w2a2", lambda: brevitas_example("cnv")
    for name in ("tfc_digits.nash", "cnv_cifar.nash", "resnet8_cifar.nash"):
        stem = name.removesuffix(".nash")
        yield f"{stem} (plain)", lambda n=name: example_network(n, hybrid=False)
        yield f"{stem} (hybrid)", lambda n=name: example_network(n, hybrid=True)


def _cell(fps: float, res: dict, fits: bool) -> str:
    if not fits:
        return "no fit"
    r = [res.get(k, 0.0) for k in ("LUT", "BRAM_18K", "URAM", "DSP")]
    return (f"{fps:,.0f} ({r[0] / 1000:.1f}k/{r[1]:.0f}/{r[2]:.0f}/{r[3]:.0f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="TFC on the u250 at 1%% and 10%%")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--exact-limit", type=float, default=15.0,
                    help="CBC time limit per solve, seconds")
    ap.add_argument("--only", nargs="*", help="networks whose name starts with one of these")
    ap.add_argument("--embedded-weights", action="store_true",
                    help="nashc and exact may also use FINN's embedded-weight MVAU_hls")
    ap.add_argument("--fractions", nargs="*", type=float, help="budget shares (default "
                    "0.01 0.02 0.1 0.5)")
    ap.add_argument("--boards", nargs="*", help="boards (default u250 zcu104)")
    ap.add_argument("--note", action="append", default=[],
                    help="with --render: a sentence added to the reading")
    ap.add_argument("--render", nargs="*", type=Path,
                    help="no runs: render the rows of these --json files (in order)")
    args = ap.parse_args(argv)
    if args.render:
        rows, failed, runs = [], [], []
        for path in args.render:
            data = json.loads(path.read_text())
            rows += data["rows"]
            failed += [tuple(f) for f in data["failed"]]
            runs.append("python bench/bench_folding.py " + " ".join(
                shlex.quote(a) for a in data.get("argv", [])))
        seen, unique = set(), []
        for r in rows:  # a network/board/budget measured twice: the first run's row
            key = (r["network"], r["board"], r["budget"])
            if key not in seen:
                seen.add(key)
                unique.append(r)
        body = render(unique, failed) + "".join(f"\n- {n}" for n in args.note)
        print(body)
        if not args.no_write:
            write_section("folding", body, " ; ".join(runs) + " (rows merged with --render)")
        return 0
    logging.disable(logging.WARNING)  # FINN's SetFolding warns at every probe

    from qonnx.core.modelwrapper import ModelWrapper

    from nashc.dsl.errors import NashcError
    from nashc.targets.boards import get_board
    from nashc.targets.folding import (
        SetFoldingWithinBudget,
        apply_assignment,
        build_problem,
        coarse_to_fine,
        confirm_design,
    )
    from nashc.targets.folding_exact import solve_exact
    from nashc.targets.hybrid_lowering import hybrid_extra_steps
    from nashc.targets.lower import lower_to_hw

    boards = args.boards or (["u250"] if args.quick else ["u250", "zcu104"])
    fractions = args.fractions or ([0.01, 0.1] if args.quick else [0.01, 0.02, 0.1, 0.5])
    rows: list[dict] = []
    failed: list[tuple[str, str]] = []
    for name, make in _models(args.quick):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        qonnx = make()
        for bname in boards:
            board = get_board(bname)
            res = board.resources
            clock = board.default_clock_mhz
            try:
                lowered = lower_to_hw(qonnx, board, clock, hybrid_extra_steps())
            except NashcError as err:
                failed.append((f"{name} on {bname}", str(err)))
                print(f"{name} on {bname}: not lowered: {err}", flush=True)
                continue
            df = lowered.dataflow
            t0 = time.perf_counter()
            problem = build_problem(df, board.part, embedded_weights=args.embedded_weights)
            t_build = time.perf_counter() - t0
            for frac in fractions:
                budget = {"LUT": res.lut * frac, "BRAM_18K": res.bram18 * frac,
                          "URAM": res.uram * frac, "DSP": res.dsp * frac}
                ours = coarse_to_fine(problem, budget)
                exact = solve_exact(problem, budget, time_limit_s=args.exact_limit)
                base = {}
                for tuned in (False, True):
                    sf = SetFoldingWithinBudget(budget, board.part, clock, steps=14, tuned=tuned)
                    folded = ModelWrapper(df.model.__deepcopy__()).transform(sf)
                    base[tuned] = (sf, folded)
                ours_m = ModelWrapper(df.model.__deepcopy__())
                apply_assignment(ours_m, problem.units, ours.choice)
                conf_ours = confirm_design(ours_m, board.part, budget)
                conf_tuned = confirm_design(base[True][1], board.part, budget)

                def fps(r, c=clock):
                    return c * 1e6 / r.ii_cycles if r.feasible else 0.0

                sd, st = base[False][0].result, base[True][0].result
                row = {
                    "network": name + (" [nashc +embedded weights]" if args.embedded_weights
                                       else ""), "board": bname, "clock_mhz": clock,
                    "budget": f"{frac:.0%}", "budget_abs": budget, "units": len(problem.units),
                    "options": sum(len(u.options) for u in problem.units),
                    "io_max_bits": problem.io_max_bits,
                    "nashc": {"fps": fps(ours), "ii": ours.ii_cycles, "fits": ours.feasible,
                              "estimate": ours.resources, "confirmed": conf_ours["resources"],
                              "confirmed_fits": conf_ours["fits"],
                              "problems": conf_ours["problems"], "dwcs": conf_ours["dwcs"],
                              "fifos": conf_ours["fifos"],
                              "deep_fifos": len(conf_ours["deep_fifos"]),
                              "seconds": ours.seconds + t_build},
                    "finn_defaults": {"fps": fps(sd), "ii": sd.ii_cycles, "fits": sd.feasible,
                                      "estimate": sd.resources, "knobs": base[False][0].knobs,
                                      "seconds": sd.seconds},
                    "finn_tuned": {"fps": fps(st), "ii": st.ii_cycles, "fits": st.feasible,
                                   "estimate": st.resources, "knobs": base[True][0].knobs,
                                   "confirmed": conf_tuned["resources"],
                                   "confirmed_fits": conf_tuned["fits"],
                                   "problems": conf_tuned["problems"], "seconds": st.seconds},
                    "exact": {"fps": fps(exact), "ii": exact.ii_cycles, "fits": exact.feasible,
                              "estimate": exact.resources,
                              "note": exact.notes[0] if exact.notes else "",
                              "seconds": exact.seconds + t_build},
                }
                rows.append(row)
                print(f"{name:22s} {bname:6s} {row['budget']:>4s}  nashc {row['nashc']['fps']:>12,.0f}"
                      f"  defaults {row['finn_defaults']['fps']:>12,.0f}"
                      f"  tuned {row['finn_tuned']['fps']:>12,.0f}"
                      f"  exact {row['exact']['fps']:>12,.0f} ({row['exact']['note']})"
                      f"  confirmed fits {conf_ours['fits']}/{conf_tuned['fits']}", flush=True)
                if args.json:
                    argv_kept = _argv_for_record(sys.argv[1:] if argv is None else argv)
                    args.json.write_text(json.dumps({"rows": rows, "failed": failed,
                                                     "argv": argv_kept}, indent=1))

    body = render(rows, failed)
    print()
    print(body)
    if not args.no_write:
        write_section("folding", body, command_line())
    return 0


def _argv_for_record(argv: list[str]) -> list[str]:
    """The options of a run without --json/--no-write (no paths of this machine)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--json":
            skip = True
            continue
        if a != "--no-write":
            out.append(a)
    return out


def render(rows: list[dict], failed: list[tuple[str, str]]) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if a and b else ("-" if not a and not b else
                                                 ("only nashc fits" if a else "only FINN fits"))

    lines = [
        "## 1. Accelerator search vs FINN defaults, FINN tuned and the exact optimum",
        "",
        "Every design is judged on the whole design FINN would build: FINN's estimates of "
        "the layers plus the data-width converters and FIFOs of `InsertDWC` / "
        "`InsertFIFO(create_shallow_fifos=True)` (depth 2), the deep FIFOs of residual joins "
        "(depth = branch-latency difference in stream words, from FINN's per-layer cycle "
        "estimates), and graph-end streams no wider than the board's IODMA (u250: 512 bits, "
        "`vitis_iodma_intf_max_width`; zcu104: 128 bits, `pynq_native_port_width`). Budget "
        "= the share of every resource of the board (LUT, BRAM18, URAM, DSP). Clock: u250 "
        "200 MHz, zcu104 100 MHz. Cells: fps (LUT/BRAM18/URAM/DSP); resources of nashc "
        "and FINN tuned as confirmed by running FINN's insertions on the design "
        "(`confirm_design`), of FINN defaults and exact as estimated (same model). "
        "'no fit' = nothing found inside the budget. FINN defaults: SetFolding with the "
        "target searched, mvau_wwidth_max 36; FINN tuned: also mvau_wwidth_max up to 8191.",
        "",
        "| network | board | budget | nashc | FINN defaults | FINN tuned | exact | "
        "nashc / FINN tuned | fits (nashc, tuned) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        n, d, t, e = r["nashc"], r["finn_defaults"], r["finn_tuned"], r["exact"]
        lines.append(
            f"| {r['network']} | {r['board']} | {r['budget']} | "
            f"{_cell(n['fps'], n['confirmed'], n['fits'])} | "
            f"{_cell(d['fps'], d['estimate'], d['fits'])} | "
            f"{_cell(t['fps'], t['confirmed'], t['fits'])} | "
            f"{_cell(e['fps'], e['estimate'], e['fits']) if e['fits'] or 'no_solution' not in e['note'] else 'none found in time limit'}"
            f"{'' if e['note'] in ('optimal', '') or not e['fits'] else ' *'} | "
            f"{ratio(n['fps'], t['fps'])} | "
            f"{'yes' if n['confirmed_fits'] else 'no'}, "
            f"{'yes' if t['confirmed_fits'] else 'no'} |")
    for name, why in failed:
        lines.append(f"| {name} | | | not lowered through FINN: {why} | | | | | |")
    lines += ["", "Reading (generated from the rows above):", ""]
    extra = [r for r in rows if "+embedded" in r["network"]]
    rows = [r for r in rows if "+embedded" not in r["network"]]
    both = [r for r in rows if r["nashc"]["fps"] and r["finn_tuned"]["fps"]]
    if both:
        ratios = [r["nashc"]["fps"] / r["finn_tuned"]["fps"] for r in both]
        wins = sum(x > 1.0 + 1e-9 for x in ratios)
        ties = sum(abs(x - 1.0) <= 1e-9 for x in ratios)
        losses = sum(x < 1.0 - 1e-9 for x in ratios)
        lines.append(
            f"- Median throughput ratio nashc / FINN tuned over the {len(both)} rows where both "
            f"fit: **{statistics.median(ratios):.2f}x** (range {min(ratios):.2f}x to "
            f"{max(ratios):.2f}x; nashc faster in {wins}, equal in {ties}, slower in {losses}).")
        eq = [r for r, x in zip(both, ratios) if abs(x - 1.0) <= 1e-9]
        if eq:
            def norm(res: dict, budget_row: dict) -> float:
                return sum(res.get(k, 0.0) / max(budget_row[k], 1e-9)
                           for k in ("LUT", "BRAM_18K", "URAM", "DSP") if budget_row[k] > 0)
            cheaper = sum(norm(r["nashc"]["confirmed"], r["budget_abs"])
                          <= norm(r["finn_tuned"]["confirmed"], r["budget_abs"]) + 1e-9
                          for r in eq)
            if eq:
                lines.append(f"- At equal throughput ({len(eq)} rows) nashc's design costs no "
                             f"more than FINN tuned's (budget-normalised sum) in {cheaper}.")
    tuned_better = [r for r in rows if r["finn_tuned"]["fps"] > r["finn_defaults"]["fps"]
                    * (1 + 1e-9)]
    lines.append(f"- FINN tuned is faster than FINN defaults in {len(tuned_better)} of "
                 f"{len(rows)} rows (raising mvau_wwidth_max, or fitting where the defaults "
                 "do not).")
    only_ours = [f"{r['network']} {r['board']} {r['budget']}" for r in rows
                 if r["nashc"]["fps"] and not r["finn_tuned"]["fps"]]
    if only_ours:
        lines.append(f"- Only nashc fits: {', '.join(only_ours)} (FINN's SetFolding keeps each "
                     "layer's default memory/multiplier style; nashc moves weights to "
                     "LUTRAM/URAM or multipliers to DSPs).")
    only_finn = [f"{r['network']} {r['board']} {r['budget']}" for r in rows
                 if not r["nashc"]["fps"] and r["finn_tuned"]["fps"]]
    if only_finn:
        lines.append(f"- Only FINN tuned fits: {', '.join(only_finn)}.")
    slower = [f"{r['network']} {r['board']} {r['budget']}" for r in both
              if r["nashc"]["fps"] < r["finn_tuned"]["fps"] * (1 - 1e-9)]
    if slower:
        lines.append(f"- nashc is slower than FINN tuned: {', '.join(slower)}.")
    optimal = [r for r in rows if r["exact"]["note"] == "optimal" and r["exact"]["fps"]]
    matched = [r for r in optimal
               if abs(r["nashc"]["fps"] - r["exact"]["fps"]) <= 1e-6 * r["exact"]["fps"]]
    lines.append(f"- nashc's heuristic reaches the integer program's throughput in "
                 f"{len(matched)} of {len(optimal)} rows solved to optimality ('*': the "
                 "solver's time limit ended the search).")
    same = [r for r in rows if r["exact"]["note"] == "optimal" and r["exact"]["fps"]
            and abs(r["nashc"]["fps"] - r["exact"]["fps"]) <= 1e-6 * r["exact"]["fps"]]

    def norm_est(res: dict, b: dict) -> float:
        return sum(res.get(k, 0.0) / b[k] for k in ("LUT", "BRAM_18K", "URAM", "DSP")
                   if b[k] > 0)
    dearer = [r for r in same if norm_est(r["nashc"]["estimate"], r["budget_abs"])
              > norm_est(r["exact"]["estimate"], r["budget_abs"]) + 1e-6]
    if same:
        worst = max((norm_est(r["nashc"]["estimate"], r["budget_abs"])
                     / max(norm_est(r["exact"]["estimate"], r["budget_abs"]), 1e-12)
                     for r in same), default=1.0)
        lines.append(f"- At the optimum's throughput, nashc's resources (budget-normalised sum) "
                     f"exceed the integer program's minimum in {len(dearer)} of {len(same)} "
                     f"rows (at most {worst:.2f}x): the second objective is a local search.")
    bad = [f"{r['network']} {r['board']} {r['budget']}" for r in rows
           if r["nashc"]["fits"] and not r["nashc"]["confirmed_fits"]]
    lines.append("- Designs said to fit that FINN's insertions push over the budget: "
                 + (", ".join(bad) if bad else "none") + ".")
    diff = [r for r in rows if r["nashc"]["fits"] and any(
        abs(r["nashc"]["estimate"][k] - r["nashc"]["confirmed"][k]) > 1e-6
        for k in r["nashc"]["estimate"])]
    lines.append(f"- The search's estimate and FINN's confirmed figures differ in {len(diff)} "
                 f"of {sum(r['nashc']['fits'] for r in rows)} fitting designs.")
    for r in extra:
        lines.append(f"- {r['network']} {r['board']} {r['budget']}: "
                     f"{r['nashc']['fps']:,.0f} fps with FINN's embedded-weight MVAU_hls allowed "
                     "(`embedded_weights=True`, off by default), "
                     f"{r['nashc']['fps'] / r['finn_tuned']['fps']:.2f}x FINN tuned; not in the "
                     "median above." if r["nashc"]["fps"] and r["finn_tuned"]["fps"] else
                     f"- {r['network']} {r['board']} {r['budget']}: see the row; not in the "
                     "median above.")
    lines.append("- Not counted: FIFO depths beyond these (FINN's FIFO-sizing simulation needs "
                 "Vivado), the IODMAs and shell, anything post-synthesis.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
