from __future__ import annotations

import pytest

from nashc.dsl.ast import BudgetItem, Pos
from nashc.dsl.errors import NashcError
from nashc.targets.boards import Resources, board_names, budget_to_absolute, get_board

POS = Pos("t.nash", 1, 1)


def test_u250_first_and_exact_part() -> None:
    from finn.util.basic import alveo_default_platform, alveo_part_map

    assert board_names()[0] == "u250"
    b = get_board("u250")
    assert b.part == "xcu250-figd2104-2L-e" == alveo_part_map["U250"]
    assert b.kind == "Alveo"
    assert b.platform == alveo_default_platform["U250"]
    assert get_board("U250") == b


@pytest.mark.parametrize("name", ["u250", "u200", "u280", "u50", "u55c", "pynq-z1", "zcu104"])
def test_resources_sum_finn_table(name: str) -> None:
    from finn.util.platforms import platforms

    b = get_board(name)
    per_slr = platforms[b.finn_name]().compute_resources
    # FINN's order per SLR: LUT, FF, BRAM_18K, URAM, DSP
    want = Resources(*(sum(slr[i] for slr in per_slr) for i in range(5)))
    assert b.resources == want


def test_u250_numbers() -> None:
    r = get_board("u250").resources
    assert (r.lut, r.ff, r.bram18, r.uram, r.dsp) == (1500000, 3000000, 4608, 1280, 11520)


def test_board_without_table_is_unknown() -> None:
    b = get_board("kv260_som")
    assert b.resources.lut is None and not b.resources.known and b.resources_from is None


def test_unknown_board_lists_names() -> None:
    with pytest.raises(NashcError, match="u250"):
        get_board("vu19p")


def test_budget_percent_and_absolute() -> None:
    b = get_board("u250")
    r = budget_to_absolute(b, [BudgetItem("lut", 70.0, True, POS),
                               BudgetItem("bram", 50.0, True, POS),
                               BudgetItem("dsp", 1000.0, False, POS)])
    assert r.lut == 1050000
    assert r.bram18 == 2304
    assert r.dsp == 1000
    assert r.uram == 1280 and r.ff == 3000000


def test_budget_percent_needs_known_device() -> None:
    with pytest.raises(NashcError, match="no resource table") as err:
        budget_to_absolute(get_board("kv260_som"), [BudgetItem("lut", 50.0, True, POS)])
    assert err.value.pos == POS  # type: ignore[attr-defined]  # shown as file:line:col
