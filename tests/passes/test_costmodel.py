"""Lane costs follow the datapaths they describe; the coarse bound behaves like one."""

from __future__ import annotations

import pytest

from nashc.passes.costmodel import LayerWork, coarse_fps, lane_dsps, lane_luts


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_conv_lane_matches_finn_mvau_formula(bits):
    # FINN's MVAU_hls.lut_estimation per lane: 1.1 * (mult + 2 * (W + A))
    w = a = bits
    mult = (2 * -(-(w + a) // 6) - 1) * (w + a)
    assert lane_luts("conv", w, a) == pytest.approx(1.1 * (mult + 2 * (w + a)))
    assert lane_luts("conv", w, a, dsp=True) == pytest.approx(1.1 * 2 * (w + a))


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
