"""Benchmark 1: accelerator search vs FINN's SetFolding and the exact optimum.

For each network, lowered once through FINN for the u250, and each budget (a share of
every u250 resource), it reports the initiation interval and fps of:

* `coarse_to_fine`   nashc's SearchFolding,
* `finn_setfolding`  FINN's SetFolding at the highest target fps that fits the budget,
* `exact`            the integer-program optimum of the same folding problem (CBC),

on FINN's TFC and CNV (brevitas_examples, random weights) and the three example
networks of examples/, as declared ("plain") and with their middle layers made shift and
adder units ("hybrid"), all on FINN's own cycle/resource estimates, and the ratios. Usage:

    python bench/bench_folding.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
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
    yield "TFC-w2a2", brevitas_example("tfc")
    if quick:
        return
    yield "CNV-w2a2", brevitas_example("cnv")
    for name in ("tfc_digits.nash", "cnv_cifar.nash", "resnet8_cifar.nash"):
        stem = name.removesuffix(".nash")
        yield f"{stem} (plain)", example_network(name, hybrid=False)
        yield f"{stem} (hybrid)", example_network(name, hybrid=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="TFC only, two budgets")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--clock", type=float, default=200.0)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # FINN's SetFolding warns at every probe

    from nashc.targets.boards import get_board
    from nashc.targets.folding import SetFoldingWithinBudget, coarse_to_fine, enumerate_units
    from nashc.targets.folding_exact import solve_exact
    from nashc.targets.hybrid_lowering import hybrid_extra_steps
    from nashc.targets.lower import lower_to_hw

    board = get_board("u250")
    res = board.resources
    fractions = [0.01, 0.1] if args.quick else [0.01, 0.02, 0.1, 0.5]
    rows = []
    from nashc.dsl.errors import NashcError

    failed: list[tuple[str, str]] = []
    for name, model in _models(args.quick):
        try:
            lowered = lower_to_hw(model, board, args.clock, hybrid_extra_steps())
        except NashcError as err:
            failed.append((name, str(err)))
            print(f"{name}: not lowered: {err}", flush=True)
            continue
        t0 = time.perf_counter()
        units = enumerate_units(lowered.dataflow, board.part)
        t_enum = time.perf_counter() - t0
        n_opts = sum(len(u.options) for u in units)
        for frac in fractions:
            budget = {"LUT": res.lut * frac, "BRAM_18K": res.bram18 * frac,
                      "URAM": res.uram * frac, "DSP": res.dsp * frac}
            ours = coarse_to_fine(units, budget)
            exact = solve_exact(units, budget, time_limit_s=120)
            base = SetFoldingWithinBudget(budget, board.part, args.clock)
            lowered.dataflow.transform(base)
            sf = base.result
            assert sf is not None

            def fps(r):
                return args.clock * 1e6 / r.ii_cycles if r.feasible else 0.0

            rows.append({
                "network": name, "budget": f"{frac:.0%}", "layers": len(units), "options": n_opts,
                "ours_ii": ours.ii_cycles if ours.feasible else None, "ours_fps": fps(ours),
                "ours_s": ours.seconds + t_enum,
                "sf_ii": sf.ii_cycles if sf.feasible else None, "sf_fps": fps(sf),
                "sf_s": sf.seconds,
                "exact_ii": exact.ii_cycles if exact.feasible else None, "exact_fps": fps(exact),
                "exact_note": exact.notes[0] if exact.notes else "",
                "exact_s": exact.seconds + t_enum,
            })
            r = rows[-1]
            print(f"{name:10s} {r['budget']:>4s}  ours {r['ours_fps']:>10,.0f} fps  "
                  f"SetFolding {r['sf_fps']:>10,.0f} fps  exact {r['exact_fps']:>10,.0f} fps "
                  f"({r['exact_note']})", flush=True)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if a and b else "n/a"

    lines = [
        "## 1. Accelerator search vs FINN's SetFolding and the exact optimum",
        "",
        f"u250 (`{board.part}`), {args.clock:g} MHz, budget = the given share of every "
        "resource (LUT, BRAM18, URAM, DSP). fps from FINN's cycle estimates; 0 = nothing "
        "fits. Both nashc's and the exact solver's seconds include building the option tables "
        "(FINN estimates of every legal folding), which both need.",
        "",
        "| network | budget | layers | options | nashc fps | SetFolding fps | exact fps | "
        "nashc / SetFolding | nashc / exact | nashc s | SetFolding s | exact s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['budget']} | {r['layers']} | {r['options']} | "
            f"{r['ours_fps']:,.0f} | {r['sf_fps']:,.0f} | {r['exact_fps']:,.0f} "
            f"({r['exact_note']}) | {ratio(r['ours_fps'], r['sf_fps'])} | "
            f"{ratio(r['ours_fps'], r['exact_fps'])} | {r['ours_s']:.2f} | {r['sf_s']:.2f} | "
            f"{r['exact_s']:.2f} |")
    for name, why in failed:
        lines.append(f"| {name} | - | - | - | not lowered through FINN: {why} | | | | | | | |")
    lines += ["", "Reading (generated from the rows above):", ""]
    both = [r for r in rows if r["ours_fps"] and r["sf_fps"]]
    if both:
        ratios = [r["ours_fps"] / r["sf_fps"] for r in both]
        lines.append(f"- Where both fit, nashc's folding is {min(ratios):.2f}x to "
                     f"{max(ratios):.2f}x faster than FINN's SetFolding under the same budget "
                     "(SetFolding stops widening SIMD at 36 weight bits per PE and never "
                     "looks at resources).")
    sf_none = [f"{r['network']} at {r['budget']}" for r in rows if r["ours_fps"] and not r["sf_fps"]]
    if sf_none:
        lines.append(f"- SetFolding finds no design inside the budget for {', '.join(sf_none)} "
                     "(it keeps FINN's default memory style, whose BRAM estimate alone exceeds "
                     "the budget); nashc moves weights to LUTRAM/URAM and fits.")
    optimal = [r for r in rows if r["exact_note"] == "optimal" and r["exact_fps"]]
    matched = [r for r in optimal if abs(r["ours_fps"] - r["exact_fps"]) <= 1e-6 * r["exact_fps"]]
    lines.append(f"- nashc's heuristic reaches the proven optimum in {len(matched)} of "
                 f"{len(optimal)} cases solved to optimality.")
    faster_exact = [r for r in rows if r["exact_s"] <= r["ours_s"]]
    slowdown = max(r["exact_s"] / r["ours_s"] for r in rows)
    lines.append(f"- Where nashc does not win: the integer program takes at most "
                 f"{slowdown:.1f}x nashc's time here (as fast or faster in "
                 f"{len(faster_exact)} of {len(rows)} rows) and proves optimality; no "
                 "case measured here needs the heuristic. `SearchFolding(strategy=\"exact\")` "
                 "uses the solver.")
    plateau = [r["network"] for r in rows if r["budget"] == "50%" and any(
        q["network"] == r["network"] and q["budget"] == "10%" and q["ours_fps"] == r["ours_fps"]
        for q in rows)]
    if plateau:
        lines.append(f"- {', '.join(plateau)}: 10% and 50% give the same fps: the limit is no "
                     "longer the budget but FINN's legal foldings (an HLS MVAU's weight stream "
                     "is at most 8191 bits wide; the input window generator moves one pixel per "
                     "cycle).")
    lines.append("- All figures are FINN's analytic estimates (no FIFOs or width converters, no "
                 "synthesis); both searches are judged on the same estimates.")
    body = "\n".join(lines)
    print()
    print(body)
    if not args.no_write:
        write_section("folding", body, command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
