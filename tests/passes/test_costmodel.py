"""Lane costs follow the datapaths they describe; the coarse bound behaves like one."""

from __future__ import annotations

import pytest

from nashc.passes.costmodel import (
    LayerWork,
    analytic_lane_luts,
    coarse_fps,
    lane_cost_data,
    lane_dsps,
    lane_features,
    lane_luts,
)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_conv_lane_matches_finn_mvau_formula(bits):
    # FINN's MVAU_hls.lut_estimation per lane: 1.1 * (mult + 2 * (W + A)); the analytic
    # model (lane_luts itself is synthesis-calibrated when passes/lane_costs.json exists)
    w = a = bits
    mult = (2 * -(-(w + a) // 6) - 1) * (w + a)
    assert analytic_lane_luts("conv", w, a) == pytest.approx(1.1 * (mult + 2 * (w + a)))
    assert lane_luts("conv", w, a, dsp=True) == pytest.approx(1.1 * 2 * (w + a))


def test_calibrated_lanes_follow_the_data_file():
    """lane_luts evaluates the fitted coefficients of passes/lane_costs.json, and the fit
    stays within the error the file records for every synthesised lane."""
    data = lane_cost_data()
    if data is None:
        pytest.skip("no passes/lane_costs.json (run bench/calibrate_lanes.py)")
    assert "synth_xilinx -family xcup -abc9" in data["synth_command"]
    for kind, op in (("mult", "conv"), ("shift", "shift"), ("adder", "adder")):
        coef = data["coefficients"][kind]
        for e in (x for x in data["lanes"] if x["kind"] == kind):
            want = sum(c * f for c, f in zip(coef, lane_features(kind, e["wbits"], e["abits"])))
            assert lane_luts(op, e["wbits"], e["abits"]) == pytest.approx(max(want, 1.0))
            err = abs(e["fitted_lane_luts"] - e["lane_luts"]) / max(e["lane_luts"], 1.0)
            assert err <= data["fit"][kind]["max_rel_error"] + 1e-9


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_adder_lane_is_cheaper_than_a_lut_multiplier(bits):
    assert lane_luts("adder", bits, bits) < lane_luts("conv", bits, bits)
    assert lane_dsps("adder", bits, bits) == 0 and lane_dsps("shift", bits, bits) == 0


def test_shift_lane_grows_with_exponent_range():
    assert lane_luts("shift", 2, 4) < lane_luts("shift", 3, 4) < lane_luts("shift", 5, 4)


def test_coarse_bound_scales_with_budget_and_respects_the_lane_floor():
    layers = [LayerWork("a", "conv", 100_000, 1_000, 4, 4),
              LayerWork("b", "adder", 100_000, 1_000, 4, 4)]
    small, _ = coarse_fps(layers, 20_000, 0, 250.0)
    big, info = coarse_fps(layers, 2_000_000, 0, 250.0)
    assert big > small
    # with a huge budget the bound is the lane floor: 100 cycles per frame
    assert info["ii_cycles"] == pytest.approx(100.0)
    with_dsp, _ = coarse_fps(layers, 20_000, 500, 250.0)
    assert with_dsp > small


def test_coarse_bound_respects_finn_stream_width_and_input_pixels():
    # 4-bit weights: at most 8191 // 4 = 2047 lanes, so 4096 MACs take >= 3 cycles
    layers = [LayerWork("fc", "conv", 64 * 64, 64 * 64, 4, 4)]
    _, info = coarse_fps(layers, 1e9, 0, 250.0)
    assert info["ii_cycles"] == pytest.approx(3.0)
    _, info = coarse_fps(layers, 1e9, 0, 250.0, input_pixels=64)
    assert info["ii_cycles"] == pytest.approx(64.0)
