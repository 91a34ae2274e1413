"""Accelerator search over a FINN dataflow graph: folding (PE/SIMD) and implementation
style (LUT/DSP, memory style) per hardware layer, inside an absolute resource budget.

Three searches share one model of the problem:

* `enumerate_units(model, fpgapart)` turns every hardware layer (or group of layers whose
  folding FINN ties together, e.g. a depthwise window generator and its VVAU/Pool) into a
  `Unit` with a table of legal `Option`s: node attributes, expected cycles and the FINN
  resource estimate (LUT, BRAM_18K, URAM, DSP), all computed by FINN's own
  `get_exp_cycles()` and `node_res_estimation()` on that node, ours included.
  Dominated options (slower and no cheaper in any resource) are dropped.
* `SearchFolding` (this module): the coarse-to-fine search of the NASH paper, as a qonnx
  `Transformation` usable in any FINN flow in place of `SetFolding`.
* `SetFoldingWithinBudget`: FINN's own `SetFolding` at the highest target fps whose
  estimate still fits the budget (binary search over the target) — the comparison.
* `nashc.targets.folding_exact.solve_exact`: the same problem as an integer program
  (python-mip/CBC), for benchmarks.

The objective is FINN's: throughput = clock / (cycles of the slowest layer), so the
search minimises the initiation interval II = max over layers of expected cycles, with
total estimated resources within the budget. Among designs with the same II it prefers
lower latency (sum of layer cycles, exact for a chain of layers) and then fewer
normalised resources.

Known limits: FIFOs and data-width converters that FINN inserts later are not in the
estimates (the same holds for SetFolding's comparison, which uses the same estimates);
the estimates are FINN's analytic models, not post-synthesis numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

__all__ = [
    "RESOURCES",
    "Option",
    "Unit",
    "FoldingResult",
    "enumerate_units",
    "evaluate_assignment",
    "coarse_to_fine",
    "apply_assignment",
    "current_assignment",
    "SearchFolding",
    "SetFoldingWithinBudget",
    "finn_setfolding",
    "show_as_finn_mvau",
    "restore_op_types",
]

#: FINN's resource keys, in the order used for resource vectors.
RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")

#: Widest weight stream FINN's HLS MVAU accepts (finn.util.basic.MAX_ALLOWED_AP_INT_W).
MAX_AP_INT_W = 8191


def _is_hw_node(node: Any) -> bool:
    return node.domain.startswith("finn.custom_op.fpgadataflow.") and node.domain.split(".")[
        -1
    ] in ("hls", "rtl")


def _divisors(n: int) -> list[int]:
    n = int(n)
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass(frozen=True)
class Option:
    """One way to fold/implement a unit: attributes per node name, cycles, resources."""

    attrs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    cycles: int
    res: tuple[float, float, float, float]  # in RESOURCES order

    def attrs_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(values) for name, values in self.attrs}


@dataclass
class Unit:
    """A hardware layer, or layers whose folding FINN ties together."""

    nodes: tuple[str, ...]
    op_types: tuple[str, ...]
    options: list[Option]
    tunable: bool = True

    @property
    def name(self) -> str:
        return self.nodes[-1]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        cyc = np.array([o.cycles for o in self.options], dtype=np.int64)
        res = np.array([o.res for o in self.options], dtype=np.float64)
        return cyc, res


@dataclass
class FoldingResult:
    """What a folding search decided, with the figures it optimised."""

    strategy: str
    choice: list[int]  # option index per unit
    ii_cycles: int
    latency_cycles: int
    resources: dict[str, float]
    feasible: bool
    evaluated: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def fps(self, clock_mhz: float) -> float:
        return clock_mhz * 1e6 / self.ii_cycles if self.ii_cycles else 0.0

    def to_json(self, clock_mhz: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "ii_cycles": self.ii_cycles,
            "latency_cycles": self.latency_cycles,
            "resources": self.resources,
            "feasible": self.feasible,
            "options_evaluated": self.evaluated,
            "seconds": round(self.seconds, 4),
        }
        if clock_mhz:
            out["fps"] = self.fps(clock_mhz)
        if self.notes:
            out["notes"] = self.notes
        return out


# --- the option model ------------------------------------------------------------------


def _fast(inst: Any) -> Any:
    """Caches attribute look-ups on this (throw-away) instance. qonnx rebuilds the
    attribute table and searches the node's attribute list on every `get_nodeattr`,
    which dominates the cost of FINN's estimators when thousands of options are costed.
    Values are cached until `set_nodeattr` changes them, so the estimates are FINN's own
    (the tests compare the search's figures with FINN's analyses on the result graph)."""
    types = inst.get_nodeattr_types()
    inst.get_nodeattr_types = lambda: types
    cache: dict[str, Any] = {}
    get, put = inst.get_nodeattr, inst.set_nodeattr

    def cached_get(name: str) -> Any:
        if name not in cache:
            cache[name] = get(name)
        return cache[name]

    def uncached_set(name: str, value: Any) -> None:
        put(name, value)
        cache.pop(name, None)

    inst.get_nodeattr = cached_get
    inst.set_nodeattr = uncached_set
    return inst


def _node_cost(inst: Any, fpgapart: str) -> tuple[int, tuple[float, float, float, float]]:
    est = inst.node_res_estimation(fpgapart)
    return int(inst.get_exp_cycles()), tuple(float(est.get(r, 0.0)) for r in RESOURCES)  # type: ignore[return-value]


def _attr_names(inst: Any) -> set[str]:
    return set(inst.get_nodeattr_types().keys())


def _allowed(inst: Any, attr: str) -> set[Any] | None:
    spec = inst.get_nodeattr_types().get(attr)
    if spec is None or len(spec) < 4:
        return None
    return set(spec[3])


def _parallel_choices(model: ModelWrapper, node: Any, inst: Any) -> list[dict[str, Any]]:
    """Legal parallelism settings of one node, following the rules of FINN's SetFolding."""
    names = _attr_names(inst)
    op = node.op_type
    if {"MW", "MH", "PE", "SIMD"} <= names:  # matrix-vector units (MVAU and ours)
        wbits = inst.get_input_datatype(1).bitwidth()
        hls = node.domain.endswith(".hls")
        decoupled = "mem_mode" in names and inst.get_nodeattr("mem_mode") == "internal_decoupled"
        out = []
        for pe in _divisors(inst.get_nodeattr("MH")):
            for simd in _divisors(inst.get_nodeattr("MW")):
                if hls and decoupled and pe * simd * wbits > MAX_AP_INT_W:
                    continue
                out.append({"PE": pe, "SIMD": simd})
        return out
    if op.startswith("ConvolutionInputGenerator"):
        ch = inst.get_nodeattr("IFMChannels")
        out = [{"SIMD": s} for s in _divisors(ch)]
        if "parallel_window" in names:
            for o in out:
                o["parallel_window"] = 0
            out.append({"SIMD": ch, "parallel_window": 1})
        return out
    if "Labels" in names and "PE" in names:
        return [{"PE": p} for p in _divisors(inst.get_nodeattr("Labels"))]
    for attr in ("PE", "SIMD"):
        if attr in names:
            try:
                ch = int(inst.get_nodeattr("NumChannels"))
            except (AttributeError, Exception):
                ch = int(inst.get_normal_output_shape()[-1])
            if ch <= 0:
                return []
            return [{attr: p} for p in _divisors(ch)]
    return []


def _impl_choices(node: Any, inst: Any) -> list[dict[str, Any]]:
    """Implementation variants: multiplier resource type and weight memory style."""
    names = _attr_names(inst)
    variants: list[dict[str, Any]] = [{}]
    if "resType" in names and node.domain.endswith(".hls"):
        allowed = _allowed(inst, "resType") or set()
        types = [t for t in ("lut", "dsp") if t in allowed]
        if types:
            variants = [{**v, "resType": t} for v in variants for t in types]
    if "ram_style" in names and "mem_mode" in names and (
        inst.get_nodeattr("mem_mode") == "internal_decoupled"
    ):
        allowed = _allowed(inst, "ram_style") or set()
        styles = [s for s in ("block", "distributed", "ultra") if s in allowed]
        new = []
        for v in variants:
            for s in styles:
                extra: dict[str, Any] = {"ram_style": s}
                if s == "ultra" and "runtime_writeable_weights" in names:
                    # FINN requires AXI-lite writable weights for URAM on UltraScale+.
                    extra["runtime_writeable_weights"] = 1
                elif "runtime_writeable_weights" in names:
                    extra["runtime_writeable_weights"] = 0
                new.append({**v, **extra})
        variants = new or variants
    return variants


def _pareto_prune(options: list[Option]) -> list[Option]:
    """Drops options that are no faster and no cheaper in every resource than another."""
    if len(options) <= 1:
        return options
    cyc = np.array([o.cycles for o in options], dtype=np.float64)
    res = np.array([o.res for o in options], dtype=np.float64)
    vec = np.concatenate([cyc[:, None], res], axis=1)
    keep = []
    order = np.lexsort(vec.T[::-1])  # by cycles, then resources
    kept = np.empty((0, vec.shape[1]))
    for i in order:
        v = vec[i]
        if not np.any(np.all(kept <= v, axis=1)):
            kept = np.vstack([kept, v])
            keep.append(options[i])
    return keep


def _freeze(attrs: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    return tuple((n, tuple(sorted(a.items()))) for n, a in attrs.items())


def enumerate_units(model: ModelWrapper, fpgapart: str, prune: bool = True) -> list[Unit]:
    """Builds the option table of every hardware layer of `model` (not modified)."""
    work = ModelWrapper(model.model.__deepcopy__())
    units: list[Unit] = []
    grouped: set[str] = set()
    nodes = [n for n in work.graph.node if _is_hw_node(n)]
    # depthwise window generators are folded together with their VVAU/Pool consumer
    for node in nodes:
        if node.op_type.startswith(("VVAU", "Pool")):
            prod = work.find_producer(node.input[0])
            if prod is not None and prod.op_type.startswith("ConvolutionInputGenerator"):
                grouped.add(prod.name)
    for node in nodes:
        if node.name in grouped:
            continue
        inst = _fast(getCustomOp(node))
        if node.op_type.startswith(("VVAU", "Pool")):
            units.append(_depthwise_unit(work, node, inst, fpgapart))
            continue
        par = _parallel_choices(work, node, inst) or [{}]
        impl = _impl_choices(node, inst)
        opts = []
        original = {a: inst.get_nodeattr(a) for a in {k for p in par for k in p} | {
            k for v in impl for k in v}}
        for p in par:
            for v in impl:
                attrs = {**p, **v}
                for k, val in attrs.items():
                    inst.set_nodeattr(k, val)
                cycles, res = _node_cost(inst, fpgapart)
                opts.append(Option(_freeze({node.name: attrs}), cycles, res))
        for k, val in original.items():
            inst.set_nodeattr(k, val)
        tunable = len(opts) > 1
        units.append(Unit((node.name,), (node.op_type,), _pareto_prune(opts) if prune else opts,
                          tunable))
    return units


def _depthwise_unit(work: ModelWrapper, node: Any, inst: Any, fpgapart: str) -> Unit:
    """A VVAU/Pool layer and its window generator: the generator's SIMD equals the PE."""
    prod = work.find_producer(node.input[0])
    swg = _fast(getCustomOp(prod)) if prod is not None and prod.op_type.startswith(
        "ConvolutionInputGenerator") else None
    channels = int(inst.get_nodeattr("Channels") if "Channels" in _attr_names(inst)
                   else inst.get_nodeattr("NumChannels"))
    ksize = 1
    if node.op_type.startswith("VVAU"):
        ksize = int(np.prod(inst.get_nodeattr("Kernel")))
    opts = []
    for pe in _divisors(channels):
        simds = _divisors(ksize) if (node.op_type.startswith("VVAU") and pe == channels) else [1]
        for simd in simds:
            attrs: dict[str, dict[str, Any]] = {}
            own: dict[str, Any] = {"PE": pe}
            if node.op_type.startswith("VVAU"):
                own["SIMD"] = simd
            for k, v in own.items():
                inst.set_nodeattr(k, v)
            cycles, res = _node_cost(inst, fpgapart)
            if swg is not None and prod is not None:
                sw: dict[str, Any] = {"SIMD": pe}
                if "parallel_window" in _attr_names(swg):
                    sw["parallel_window"] = 1 if simd > 1 else 0
                for k, v in sw.items():
                    swg.set_nodeattr(k, v)
                c2, r2 = _node_cost(swg, fpgapart)
                cycles = max(cycles, c2)
                res = tuple(a + b for a, b in zip(res, r2))  # type: ignore[assignment]
                attrs[prod.name] = sw
            attrs[node.name] = own
            opts.append(Option(_freeze(attrs), cycles, res))
    names = ((prod.name,) if swg is not None and prod is not None else ()) + (node.name,)
    ops = ((prod.op_type,) if swg is not None and prod is not None else ()) + (node.op_type,)
    return Unit(names, ops, _pareto_prune(opts))


# --- evaluating and applying assignments ----------------------------------------------


def evaluate_assignment(units: Sequence[Unit], choice: Sequence[int]) -> tuple[int, int, np.ndarray]:
    """(II cycles, latency cycles, total resource vector) of one option per unit."""
    cycles = [u.options[i].cycles for u, i in zip(units, choice)]
    total = np.sum([u.options[i].res for u, i in zip(units, choice)], axis=0)
    return max(cycles), sum(cycles), np.asarray(total, dtype=np.float64)


def _budget_vector(budget: Mapping[str, float]) -> np.ndarray:
    return np.array([float(budget.get(r, math.inf)) for r in RESOURCES], dtype=np.float64)


def _fits(total: np.ndarray, bvec: np.ndarray) -> bool:
    return bool(np.all(total <= bvec + 1e-9))


def apply_assignment(model: ModelWrapper, units: Sequence[Unit], choice: Sequence[int]) -> None:
    """Writes the chosen node attributes into `model` (in place)."""
    by_name = {n.name: n for n in model.graph.node}
    for unit, i in zip(units, choice):
        for name, attrs in unit.options[i].attrs_dict().items():
            inst = getCustomOp(by_name[name])
            for k, v in attrs.items():
                inst.set_nodeattr(k, v)


def current_assignment(model: ModelWrapper, units: Sequence[Unit], fpgapart: str) -> tuple[
        int, int, np.ndarray]:
    """II, latency and resources of the folding `model` currently has (FINN's estimates)."""
    cyc, res = [], []
    for node in model.graph.node:
        if _is_hw_node(node):
            c, r = _node_cost(getCustomOp(node), fpgapart)
            cyc.append(c)
            res.append(r)
    return max(cyc), sum(cyc), np.sum(np.array(res, dtype=np.float64), axis=0)


# --- coarse to fine ---------------------------------------------------------------------


def _assign_at(units: Sequence[Unit], arrays: Sequence[tuple[np.ndarray, np.ndarray]],
               target: int, bvec: np.ndarray, rounds: int = 60) -> tuple[list[int] | None, int]:
    """Coarse stage at one initiation interval: every unit takes its cheapest option whose
    cycles are <= target, cheapness being a price-weighted resource sum. Prices start at
    1/budget and rise multiplicatively on over-used resources (a Lagrangian heuristic).
    If no price vector gives a feasible design, the least over-budget assignment is handed
    to the repair moves of the fine stage. Returns a feasible choice or None, and how many
    option evaluations it took."""
    finite = np.where(np.isfinite(bvec) & (bvec > 0), bvec, np.inf)
    prices = np.where(np.isfinite(finite), 1.0 / finite, 0.0)
    # a zero budget (e.g. uram 0) forbids the resource outright
    prices = np.where(bvec <= 0, 1e9, prices)
    evaluated = 0
    allowed = []
    for cyc, _ in arrays:
        ok = np.nonzero(cyc <= target)[0]
        if ok.size == 0:
            return None, evaluated
        allowed.append(ok)
    least: tuple[float, list[int]] | None = None
    for r in range(rounds):
        choice = []
        for (cyc, res), ok in zip(arrays, allowed):
            cost = res[ok] @ prices + 1e-12 * cyc[ok]
            choice.append(int(ok[np.argmin(cost)]))
            evaluated += ok.size
        total = np.sum([arrays[u][1][i] for u, i in enumerate(choice)], axis=0)
        if _fits(total, bvec):
            return choice, evaluated
        over_sum = _overuse(total, bvec)
        if least is None or over_sum < least[0]:
            least = (over_sum, choice)
        over = np.where(np.isfinite(bvec) & (bvec > 0), total / np.maximum(bvec, 1e-9), 0.0)
        step = 1.0 / (1.0 + r / 10.0)
        prices = prices * np.where(over > 1.0, 1.0 + step * over, 1.0)
    assert least is not None
    repaired, n = _repair(arrays, least[1], target, bvec)
    return repaired, evaluated + n


def _overuse(total: np.ndarray, bvec: np.ndarray) -> float:
    scale = np.where(np.isfinite(bvec) & (bvec > 0), bvec, 1.0)
    excess = np.where(np.isfinite(bvec), np.maximum(total - bvec, 0.0), 0.0)
    return float(np.sum(excess / scale))


def _repair(arrays: Sequence[tuple[np.ndarray, np.ndarray]], choice: list[int], target: int,
            bvec: np.ndarray, max_moves: int = 2000) -> tuple[list[int] | None, int]:
    """Fine stage: single-unit moves (among options with cycles <= target) that reduce the
    budget overuse the most, until the design fits or no move helps."""
    choice = list(choice)
    evaluated = 0
    for u, (cyc, _) in enumerate(arrays):
        if cyc[choice[u]] > target:
            ok = np.nonzero(cyc <= target)[0]
            if ok.size == 0:
                return None, evaluated
            choice[u] = int(ok[np.argmax(cyc[ok])])  # slowest (cheapest in practice) allowed
    total = np.sum([arrays[u][1][i] for u, i in enumerate(choice)], axis=0)
    for _ in range(max_moves):
        cur = _overuse(total, bvec)
        if cur <= 0:
            return choice, evaluated
        best: tuple[float, int, int] | None = None
        for u, (cyc, res) in enumerate(arrays):
            ok = np.nonzero(cyc <= target)[0]
            evaluated += ok.size
            cand_totals = total[None, :] - res[choice[u]][None, :] + res[ok]
            scale = np.where(np.isfinite(bvec) & (bvec > 0), bvec, 1.0)
            excess = np.where(np.isfinite(bvec), np.maximum(cand_totals - bvec, 0.0), 0.0)
            over = np.sum(excess / scale, axis=1)
            j = int(np.argmin(over))
            if over[j] < cur - 1e-12 and (best is None or over[j] < best[0]):
                best = (float(over[j]), u, int(ok[j]))
        if best is None:
            return None, evaluated
        _, u, i = best
        total = total - arrays[u][1][choice[u]] + arrays[u][1][i]
        choice[u] = i
    return None, evaluated


def _spend_slack_on_latency(arrays: Sequence[tuple[np.ndarray, np.ndarray]], choice: list[int],
                            bvec: np.ndarray) -> list[int]:
    """Tie-breaker at fixed II: speed up non-bottleneck layers while the budget allows,
    largest latency gain per normalised resource first."""
    choice = list(choice)
    total = np.sum([arrays[u][1][i] for u, i in enumerate(choice)], axis=0)
    scale = np.where(np.isfinite(bvec) & (bvec > 0), bvec, 1.0)
    improved = True
    while improved:
        improved = False
        best: tuple[float, int, int] | None = None
        for u, (cyc, res) in enumerate(arrays):
            faster = np.nonzero(cyc < cyc[choice[u]])[0]
            for i in faster:
                new_total = total - res[choice[u]] + res[i]
                if not _fits(new_total, bvec):
                    continue
                gain = float(cyc[choice[u]] - cyc[i])
                cost = float(np.sum(np.maximum(res[i] - res[choice[u]], 0.0) / scale)) + 1e-9
                if best is None or gain / cost > best[0]:
                    best = (gain / cost, u, int(i))
        if best is not None:
            _, bu, bi = best
            total = total - arrays[bu][1][choice[bu]] + arrays[bu][1][bi]
            choice[bu] = bi
            improved = True
    return choice


def coarse_to_fine(units: Sequence[Unit], budget: Mapping[str, float],
                   latency_tiebreak: bool = True) -> FoldingResult:
    """Minimises the initiation interval within `budget` (FINN resource keys).

    Coarse: binary search over the initiation intervals that any option achieves, each
    probed with the price-weighted cheapest assignment (`_assign_at`). Fine: from the
    coarse optimum, step to the next lower interval and repair the assignment with
    single-layer moves (`_repair`) — trading DSP for LUT, BRAM for LUTRAM/URAM, or
    parallelism between layers — until no lower interval can be repaired. Then spend any
    leftover budget on latency.
    """
    import time

    t0 = time.perf_counter()
    bvec = _budget_vector(budget)
    arrays = [u.arrays() for u in units]
    levels = np.unique(np.concatenate([c for c, _ in arrays]))
    lower = max(int(c.min()) for c, _ in arrays)
    levels = levels[levels >= lower]
    evaluated = 0
    lo, hi = 0, len(levels) - 1
    best: list[int] | None = None
    best_level = -1
    # coarse: feasibility is (almost) monotone in the target interval
    while lo <= hi:
        mid = (lo + hi) // 2
        choice, n = _assign_at(units, arrays, int(levels[mid]), bvec)
        evaluated += n
        if choice is not None:
            best, best_level = choice, mid
            hi = mid - 1
        else:
            lo = mid + 1
    notes = []
    if best is None:
        # no design fits: report the cheapest one (least budget share per layer)
        scale = np.where(np.isfinite(bvec) & (bvec > 0), bvec, 1.0)
        slow = [int(np.argmin((r / scale).sum(axis=1))) for _, r in arrays]
        ii, lat, tot = evaluate_assignment(units, slow)
        notes.append("no folding fits the budget; the cheapest design is reported")
        return FoldingResult("coarse_to_fine", slow, ii, lat, dict(zip(RESOURCES, tot.tolist())),
                             False, evaluated, time.perf_counter() - t0, notes)
    # fine: try every lower interval with local repair moves
    for k in range(best_level - 1, -1, -1):
        repaired, n = _repair(arrays, best, int(levels[k]), bvec)
        evaluated += n
        if repaired is None:
            break
        best, best_level = repaired, k
    if latency_tiebreak:
        ii_now = evaluate_assignment(units, best)[0]
        capped = [(np.where(c <= ii_now, c, np.iinfo(np.int64).max), r) for c, r in arrays]
        best = _spend_slack_on_latency(capped, best, bvec)
    ii, lat, tot = evaluate_assignment(units, best)
    return FoldingResult("coarse_to_fine", best, ii, lat, dict(zip(RESOURCES, tot.tolist())),
                         True, evaluated, time.perf_counter() - t0, notes)


# --- passes ------------------------------------------------------------------------------


def _record(model: ModelWrapper, key: str, payload: dict[str, Any]) -> None:
    model.set_metadata_prop(key, json.dumps(payload, sort_keys=True))


class SearchFolding(Transformation):
    """Replaces the folding of every hardware layer with the coarse-to-fine search result.

    Optimises throughput (minimum initiation interval = slowest layer's cycles) inside an
    absolute resource budget given in FINN's keys (`LUT`, `BRAM_18K`, `URAM`, `DSP`);
    latency breaks ties. Works on any specialised FINN dataflow graph, hardware layers of
    nashc included. Limits: FINN's analytic estimates only (no FIFOs/DWCs), and for a
    graph with branches the latency figure is the sum over layers (an upper bound).
    `strategy="exact"` solves the same problem as an integer program instead.
    """

    def __init__(self, budget: Mapping[str, float], fpgapart: str, strategy: str = "coarse_to_fine",
                 time_limit_s: float = 60.0) -> None:
        super().__init__()
        self.budget = dict(budget)
        self.fpgapart = fpgapart
        self.strategy = strategy
        self.time_limit_s = time_limit_s
        self.result: FoldingResult | None = None
        self.units: list[Unit] = []

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        self.units = enumerate_units(model, self.fpgapart)
        if self.strategy == "coarse_to_fine":
            self.result = coarse_to_fine(self.units, self.budget)
        elif self.strategy == "exact":
            from nashc.targets.folding_exact import solve_exact

            self.result = solve_exact(self.units, self.budget, time_limit_s=self.time_limit_s)
        else:
            raise ValueError(f"unknown folding strategy {self.strategy!r}")
        apply_assignment(model, self.units, self.result.choice)
        _record(model, "nashc.SearchFolding", {
            "budget": self.budget, **self.result.to_json()})
        return model, False


#: doc_string prefix that keeps a unit's own op type while FINN sees it as an MVAU
_OP_TYPE_TAG = "nashc.op_type="


def show_as_finn_mvau(model: ModelWrapper) -> int:
    """Renames nashc's MVAU subclasses (the shift/adder units of `nashc.targets`) to the
    FINN op type they extend (``MVAU``, ``MVAU_hls``, ``MVAU_rtl``), for FINN
    transformations that match op types by name. The own op type goes into the node's
    doc_string, so `restore_op_types` finds the node even after FINN renamed it or
    removed others. Returns how many nodes were renamed."""
    from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls
    from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU
    from finn.custom_op.fpgadataflow.rtl.matrixvectoractivation_rtl import MVAU_rtl

    finn_names = ("MVAU", "MVAU_hls", "MVAU_rtl")
    count = 0
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow") or \
                node.op_type in finn_names:
            continue
        try:
            inst = getCustomOp(node)
        except Exception:  # noqa: BLE001 - not a registered custom op: not a unit of ours
            continue
        if not isinstance(inst, MVAU):
            continue
        node.doc_string = f"{_OP_TYPE_TAG}{node.op_type} {node.doc_string}".rstrip()
        node.op_type = ("MVAU_hls" if isinstance(inst, MVAU_hls) else
                        "MVAU_rtl" if isinstance(inst, MVAU_rtl) else "MVAU")
        count += 1
    return count


def restore_op_types(model: ModelWrapper) -> None:
    """Undoes `show_as_finn_mvau`."""
    for node in model.graph.node:
        if node.doc_string.startswith(_OP_TYPE_TAG):
            own, _, rest = node.doc_string[len(_OP_TYPE_TAG):].partition(" ")
            node.op_type = own
            node.doc_string = rest


def finn_setfolding(model: ModelWrapper, target_cycles: int, **kwargs: Any) -> ModelWrapper:
    """FINN's `SetFolding` on a copy of `model`, with two repairs: nashc's MVAU subclasses
    (shift/adder units) are folded as MVAUs (SetFolding matches op types exactly and would
    leave them at PE = SIMD = 1), and every node keeps its name (SetFolding renumbers them
    by op type). `kwargs` go to SetFolding (e.g. mvau_wwidth_max)."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    m = ModelWrapper(model.model.__deepcopy__())
    names = [n.name for n in m.graph.node]
    show_as_finn_mvau(m)
    m = m.transform(SetFolding(target_cycles_per_frame=max(1, int(target_cycles)), **kwargs))
    assert len(m.graph.node) == len(names), "SetFolding changed the graph"
    for node, name in zip(m.graph.node, names):
        node.name = name
    restore_op_types(m)
    return m


def _setfolding_total(model: ModelWrapper, target_fps: float, clock_mhz: float,
                      fpgapart: str) -> tuple[ModelWrapper, int, np.ndarray]:
    m = finn_setfolding(model, int(clock_mhz * 1e6 / target_fps))
    cyc, res = [], []
    for node in m.graph.node:
        if _is_hw_node(node):
            c, r = _node_cost(getCustomOp(node), fpgapart)
            cyc.append(c)
            res.append(r)
    return m, max(cyc), np.sum(np.array(res, dtype=np.float64), axis=0)


class SetFoldingWithinBudget(Transformation):
    """Replaces the folding with FINN's `SetFolding` at the highest target fps that fits.

    The comparison baseline for `SearchFolding`: SetFolding itself ignores resources, so
    the target fps is binary-searched (on a log scale, `steps` probes) for the highest
    value whose FINN estimate fits `budget`. Known limit: SetFolding's result is not
    monotone in the target in every case, so this is the best of the probes, not a proof.
    """

    def __init__(self, budget: Mapping[str, float], fpgapart: str, clock_mhz: float,
                 steps: int = 24) -> None:
        super().__init__()
        self.budget = dict(budget)
        self.fpgapart = fpgapart
        self.clock_mhz = clock_mhz
        self.steps = steps
        self.result: FoldingResult | None = None
        self.target_fps: float | None = None

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import time

        t0 = time.perf_counter()
        bvec = _budget_vector(self.budget)
        lo, hi = math.log(1.0), math.log(self.clock_mhz * 1e6)  # 1 fps .. 1 frame per cycle
        best: tuple[float, ModelWrapper, int, int, np.ndarray] | None = None
        probes = 0
        for _ in range(self.steps):
            mid = (lo + hi) / 2
            fps = math.exp(mid)
            m, ii, total = _setfolding_total(model, fps, self.clock_mhz, self.fpgapart)
            probes += 1
            if _fits(total, bvec):
                lat = sum(int(getCustomOp(n).get_exp_cycles()) for n in m.graph.node
                          if _is_hw_node(n))
                if best is None or ii < best[2]:
                    best = (fps, m, ii, lat, total)
                lo = mid
            else:
                hi = mid
        notes = []
        if best is None:
            fps = 1.0
            m, ii, total = _setfolding_total(model, fps, self.clock_mhz, self.fpgapart)
            lat = sum(int(getCustomOp(n).get_exp_cycles()) for n in m.graph.node if _is_hw_node(n))
            best = (fps, m, ii, lat, total)
            notes.append("SetFolding does not fit the budget even at 1 fps")
        fps, m, ii, lat, total = best
        self.target_fps = fps
        self.result = FoldingResult("finn_setfolding", [], ii, lat,
                                    dict(zip(RESOURCES, total.tolist())), _fits(total, bvec),
                                    probes, time.perf_counter() - t0, notes)
        # copy the folding attributes of the best probe into the model
        src = {n.name: n for n in m.graph.node}
        for node in model.graph.node:
            if node.name in src:
                node.ClearField("attribute")
                node.attribute.extend(src[node.name].attribute)
        _record(model, "nashc.SetFoldingWithinBudget", {
            "budget": self.budget, "target_fps": fps, **self.result.to_json(self.clock_mhz)})
        return model, False


def iter_hw_nodes(model: ModelWrapper) -> Iterable[Any]:
    return (n for n in model.graph.node if _is_hw_node(n))
