"""FPGA boards FINN knows, with device resources taken from FINN's own tables.

Parts come from `finn.util.basic.pynq_part_map` (Zynq boards) and
`finn.util.basic.alveo_part_map` (Alveo cards); resources from
`finn.util.platforms.platforms`, whose `compute_resources` give per SLR
`[LUT, FF, BRAM_18K, URAM, DSP]`. A device's resources are the sum over its SLRs.
BRAM is counted in BRAM_18K units, the unit FINN's resource estimates use
(`res_estimation` reports "BRAM_18K"); one BRAM36 is two BRAM18.

A board without a FINN resource table gets its resources from a board FINN does
have a table for whose FPGA part is the same device (same part name up to the first
dash, e.g. Ultra96-V2's `xczu3eg-sbva484-1-i` and Ultra96's `xczu3eg-sbva484-1-e`);
`Board.resources_from` names that board. Otherwise the resources are unknown (`None`)
and nothing is invented.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

from nashc.dsl.ast import BudgetItem
from nashc.dsl.errors import NashcError, NashSourceError

__all__ = [
    "RESOURCE_KEYS",
    "REPORT_KEYS",
    "Resources",
    "report_keys",
    "Board",
    "board_names",
    "get_board",
    "all_boards",
    "budget_to_absolute",
    "DEFAULT_CLOCK_MHZ",
]

#: nashc's default clock per board kind (not FINN data): FINN's Zynq examples build at
#: 10 ns (100 MHz, also `DataflowBuildConfig.synth_clk_period_ns`' default); Alveo
#: builds in FINN's examples commonly target 5 ns (200 MHz).
DEFAULT_CLOCK_MHZ: dict[str, float] = {"Zynq": 100.0, "Alveo": 200.0}


#: FINN's resource keys (`res_estimation`, `SetFolding`), the order of resource vectors.
#: Every resource dict inside nashc (budgets, estimates, folding results) uses them.
RESOURCE_KEYS = ("LUT", "BRAM_18K", "URAM", "DSP")
#: The names the `.nash` budget and nashc's reports (report.json/md) give them.
REPORT_KEYS = {"LUT": "lut", "BRAM_18K": "bram18", "URAM": "uram", "DSP": "dsp"}


def report_keys(res: Mapping[str, float]) -> dict[str, float]:
    """FINN-keyed counts -> the report's keys (``{"LUT": 1.0, ...}`` -> ``{"lut": 1.0, ...}``)."""
    return {REPORT_KEYS[k]: res[k] for k in RESOURCE_KEYS}


def over_budget(resources: Mapping[str, float], budget: Mapping[str, float]) -> list[str]:
    """The FINN keys (in `RESOURCE_KEYS` order) of the `resources` above `budget`."""
    return [k for k in RESOURCE_KEYS if resources.get(k, 0.0) > budget[k]]


def describe_overrun(resources: Mapping[str, float], budget: Mapping[str, float]) -> str:
    """What `resources` need beyond `budget`, e.g. ``"LUT 884 > 15, DSP 3 > 0"`` (empty
    when they fit)."""
    return ", ".join(f"{k} {resources[k]:,.0f} > {budget[k]:,.0f}"
                     for k in over_budget(resources, budget))


@dataclass(frozen=True)
class Resources:
    """Counts of FPGA resources; `None` means unknown. BRAM is in BRAM_18K units."""

    lut: int | None
    ff: int | None
    bram18: int | None
    uram: int | None
    dsp: int | None

    @property
    def known(self) -> bool:
        return None not in (self.lut, self.ff, self.bram18, self.uram, self.dsp)

    def finn(self) -> dict[str, float]:
        """The four counts keyed the FINN way (`RESOURCE_KEYS`); unknown ones are inf."""
        values = (self.lut, self.bram18, self.uram, self.dsp)
        return {k: float(v) if v is not None else math.inf for k, v in zip(RESOURCE_KEYS, values)}

    def as_dict(self) -> dict[str, int | None]:
        return {"lut": self.lut, "ff": self.ff, "bram18": self.bram18, "uram": self.uram,
                "dsp": self.dsp}


UNKNOWN = Resources(None, None, None, None, None)


@dataclass(frozen=True)
class Board:
    """A board: FINN's name for it, FPGA part, kind and whole-device resources."""

    name: str
    part: str
    kind: Literal["Alveo", "Zynq"]
    resources: Resources
    default_clock_mhz: float
    #: Vitis platform (Alveo only, `finn.util.basic.alveo_default_platform`).
    platform: str | None
    #: FINN's own board name (`part_map` key, e.g. "U250", "Pynq-Z1").
    finn_name: str
    #: FINN board whose resource table was used (`finn.util.platforms.platforms` key),
    #: or None when the resources are unknown.
    resources_from: str | None
    #: Number of SLRs in FINN's table (None when unknown).
    nslr: int | None = None


def _device(part: str) -> str:
    return part.split("-")[0].lower()


def _table_resources(finn_name: str) -> tuple[Resources, int]:
    from finn.util.platforms import platforms

    plat = platforms[finn_name]()
    per_slr = plat.compute_resources
    sums = [sum(int(slr[i]) for slr in per_slr) for i in range(5)]
    return Resources(*sums), len(per_slr)


@cache
def _registry() -> dict[str, Board]:
    from finn.util.basic import alveo_default_platform, alveo_part_map, pynq_part_map
    from finn.util.platforms import platforms

    by_device: dict[str, str] = {}
    for finn_name in platforms:
        part = alveo_part_map.get(finn_name) or pynq_part_map.get(finn_name)
        if part is not None:
            by_device.setdefault(_device(part), finn_name)

    entries: list[tuple[str, str, Literal["Alveo", "Zynq"]]] = []
    entries += [(n, p, "Alveo") for n, p in alveo_part_map.items()]
    entries += [(n, p, "Zynq") for n, p in pynq_part_map.items()]
    boards: dict[str, Board] = {}
    for finn_name, part, kind in entries:
        source = finn_name if finn_name in platforms else by_device.get(_device(part))
        if source is not None:
            resources, nslr = _table_resources(source)
        else:
            resources, nslr = UNKNOWN, None
        board = Board(
            name=finn_name.lower(),
            part=part,
            kind=kind,
            resources=resources,
            default_clock_mhz=DEFAULT_CLOCK_MHZ[kind],
            platform=alveo_default_platform.get(finn_name) if kind == "Alveo" else None,
            finn_name=finn_name,
            resources_from=source,
            nslr=nslr,
        )
        boards[board.name] = board
    # u250 first, then Alveo cards, then Zynq boards, each alphabetically.
    order = sorted(boards.values(),
                   key=lambda b: (b.name != "u250", b.kind != "Alveo", b.name))
    return {b.name: b for b in order}


def all_boards() -> list[Board]:
    """All boards, u250 first."""
    return list(_registry().values())


def board_names() -> list[str]:
    """Lower-case board names, u250 first."""
    return list(_registry())


def get_board(name: str) -> Board:
    """The board called `name` (case-insensitive; FINN's spelling works too)."""
    key = name.strip().lower()
    reg = _registry()
    if key not in reg:
        raise NashcError(f"unknown target {name!r}; known targets: {', '.join(reg)}")
    return reg[key]


_RESOURCE_FIELD = {"lut": "lut", "ff": "ff", "bram": "bram18", "uram": "uram", "dsp": "dsp"}


def budget_to_absolute(board: Board, budget_items: Iterable[BudgetItem]) -> Resources:
    """Turns a `.nash` budget into absolute counts for `board`.

    A percentage is taken of the whole device (rounded down); an absolute value is
    used as is (rounded down). `bram` budgets are in BRAM_18K units. Resources without
    a budget item get the whole device. A percentage on a board whose resources are
    unknown is an error.

    Raises `NashSourceError` at the budget item's position (file:line:col) for a bad item.
    """
    values = board.resources.as_dict()
    for item in budget_items:
        field = _RESOURCE_FIELD.get(item.resource)
        if field is None:
            raise NashSourceError(f"unknown budget resource {item.resource!r}", item.pos)
        if item.value < 0 or (item.percent and item.value > 100):
            raise NashSourceError(f"budget for {item.resource} out of range: {item.value}"
                                  f"{'%' if item.percent else ''}", item.pos)
        if item.percent:
            total = board.resources.as_dict()[field]
            if total is None:
                raise NashSourceError(
                    f"budget '{item.resource} {item.value:g}%' needs the device size, but "
                    f"FINN has no resource table for {board.name} ({board.part}); give an "
                    "absolute count instead", item.pos)
            values[field] = int(total * item.value / 100.0)
        else:
            values[field] = int(item.value)
    return Resources(**values)
