"""Coarse-to-fine accelerator search vs the exact optimum and FINN's SetFolding."""

from __future__ import annotations

import json
import logging

import pytest
from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
from finn.analysis.fpgadataflow.res_estimation import res_estimation

from nashc.targets.folding import (
    RESOURCES,
    SearchFolding,
    SetFoldingWithinBudget,
    coarse_to_fine,
    confirm_design,
    enumerate_units,
)
from nashc.targets.folding_exact import solve_exact

logging.getLogger("finn").setLevel(logging.ERROR)
U250 = "xcu250-figd2104-2L-e"

CHAINS = {
    "mlp": [(64, 32), (32, 32), (32, 10)],
    "conv_like": [(27, 16), (144, 32), (288, 10)],
}


def _budget(lut: float, bram: float = 1e9, uram: float = 1e9, dsp: float = 1e9) -> dict:
    return {"LUT": lut, "BRAM_18K": bram, "URAM": uram, "DSP": dsp}


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("lut", [800, 3000, 20000])
@pytest.mark.parametrize("vectors", [1, 16])
def test_coarse_to_fine_matches_exact_and_fits(chain, lut, vectors, mvau_chain):
    model = mvau_chain(CHAINS[chain], vectors=vectors)
    units = enumerate_units(model, U250)
    budget = _budget(lut, bram=40, dsp=16)
    ours = coarse_to_fine(units, budget)
    exact = solve_exact(units, budget, time_limit_s=30)
    assert ours.feasible == exact.feasible
    if not exact.feasible:
        return
    for r in RESOURCES:
        assert ours.resources[r] <= budget[r] + 1e-6
    assert exact.notes == ["optimal"]
    # the heuristic may lose, but never claims better than the proven optimum
    assert ours.ii_cycles >= exact.ii_cycles
    assert ours.ii_cycles <= 1.5 * exact.ii_cycles


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("lut", [1500, 20000])
def test_search_at_least_as_fast_as_setfolding_within_same_budget(chain, lut, mvau_chain):
    model = mvau_chain(CHAINS[chain], vectors=16)
    budget = _budget(lut, bram=40, dsp=16)
    ours = SearchFolding(budget, U250)
    base = SetFoldingWithinBudget(budget, U250, clock_mhz=250.0, steps=16)
    model.transform(ours)
    model.transform(base)
    assert ours.result is not None and base.result is not None
    if base.result.feasible:
        assert ours.result.ii_cycles <= base.result.ii_cycles


def test_search_pass_agrees_with_finn_analyses_and_records_metadata(mvau_chain):
    # "mlp": a chain FINN can stitch (conv_like's MH/MW do not match without a window
    # generator, so FINN's InsertDWC cannot fold its streams)
    model = mvau_chain(CHAINS["mlp"], vectors=16)
    budget = _budget(5000, bram=40, dsp=16)
    search = SearchFolding(budget, U250)
    model, changed = search.apply(model)
    assert changed is False
    assert search.result is not None and search.result.feasible
    cycles = exp_cycles_per_layer(model)
    assert max(cycles.values()) == search.result.ii_cycles
    assert sum(cycles.values()) == search.result.latency_cycles
    res = res_estimation(model, U250)
    built = confirm_design(model, U250, budget)
    assert built["problems"] == []
    for r in RESOURCES:
        # the layers as FINN estimates them, and the whole design as FINN's insertions
        # build it (DWCs, FIFOs), agree with the search's figures
        assert sum(v[r] for v in res.values()) == pytest.approx(
            search.result.breakdown["layers"][r])
        assert built["resources"][r] == pytest.approx(search.result.resources[r])
        assert search.result.resources[r] <= budget[r]
    meta = json.loads(model.get_metadata_prop("nashc.SearchFolding"))
    assert meta["ii_cycles"] == search.result.ii_cycles
    # a second run reaches the same decision
    again = SearchFolding(budget, U250)
    model.transform(again)
    assert again.result is not None and again.result.ii_cycles == search.result.ii_cycles


def test_impossible_budget_is_reported_not_faked(mvau_chain):
    model = mvau_chain(CHAINS["mlp"])
    units = enumerate_units(model, U250)
    result = coarse_to_fine(units, _budget(10, bram=0, dsp=0))
    assert result.feasible is False
    assert result.notes


def test_dsp_is_used_when_luts_are_scarce(mvau_chain):
    model = mvau_chain([(256, 64), (64, 64)], wbits=8, abits=8, vectors=64)
    units = enumerate_units(model, U250)
    lut_only = coarse_to_fine(units, _budget(4000, bram=100, dsp=0))
    with_dsp = coarse_to_fine(units, _budget(4000, bram=100, dsp=64))
    assert lut_only.resources["DSP"] == 0
    assert with_dsp.ii_cycles < lut_only.ii_cycles
    assert with_dsp.resources["DSP"] > 0
