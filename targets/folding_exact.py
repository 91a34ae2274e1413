"""The folding problem solved exactly, as an integer program (python-mip with CBC).

Same problem as `nashc.targets.folding.FoldingProblem` (FINN's cycle and resource
estimates per option, the DWCs and FIFOs FINN inserts on every edge, the board's I/O
width), same objective: first the smallest initiation interval II inside the budget,
then, at that II, the smallest budget-normalised resource sum. Used by the benchmarks
as the optimum that `coarse_to_fine` and FINN's `SetFolding` are measured against, and
available as `SearchFolding(strategy="exact")`.

Formulation: binary x[u,o] (unit u takes option o), sum_o x[u,o] = 1; options whose
graph-end streams exceed the board's I/O width are left out; II >= sum_o cycles[u,o]
x[u,o]. Each edge e between a producer port with stream keys a and a consumer port with
keys b gets continuous y[e,a,b] >= 0 with sum_b y[e,a,b] = z[a] and sum_a y[e,a,b] = z[b]
(z = the sum of x over options with that key), so y is the indicator of the pair chosen;
the edge's DWC/FIFO resources are sum y[e,a,b] * cost(a,b). Resources of the layers plus
edges <= budget - R, R the deep-FIFO reservation: deep FIFOs depend on the branches'
latencies and on II (non-linear), so the program is solved with R = 0, the deep FIFOs of
its solution are costed exactly, and it is solved again with R = that cost until the
solution fits (at most `rounds` times). For graphs without residual joins this is the
exact optimum; with joins, the best of these rounds. Solutions carry CBC's status:
`optimal` or the best found within the time limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from nashc.targets.folding import (
    RESOURCES,
    FoldingProblem,
    FoldingResult,
    Unit,
    _as_problem,
    _result,
    cheapest_choice,
)

__all__ = ["solve_exact"]


def _solve(p: FoldingProblem, reserve: np.ndarray, time_limit_s: float,
           fixed_ii: float | None) -> tuple[list[int] | None, str]:
    import mip

    m = mip.Model(sense=mip.MINIMIZE, solver_name=mip.CBC)
    m.verbose = 0
    m.threads = 1
    x = []
    for u, unit in enumerate(p.units):
        xs = []
        for j in range(len(unit.options)):
            ok = bool(p.io_mask[u][j])
            xs.append(m.add_var(var_type=mip.BINARY, ub=1.0 if ok else 0.0))
        x.append(xs)
    cyc = [p._arrays[u][0] for u in range(len(p.units))]
    lb = max(int(c[p.io_mask[u]].min()) for u, c in enumerate(cyc))
    ub = max(int(c.max()) for c in cyc)
    ii = m.add_var(lb=lb, ub=ub)
    usage: list[mip.LinExpr] = [mip.LinExpr() for _ in RESOURCES]
    for u, unit in enumerate(p.units):
        m += mip.xsum(x[u]) == 1
        m += ii >= mip.xsum(int(cyc[u][j]) * x[u][j] for j in range(len(unit.options)))
        res = p._arrays[u][1]
        for r in range(len(RESOURCES)):
            usage[r] += mip.xsum(float(res[j, r]) * x[u][j] for j in range(len(unit.options))
                                 if res[j, r])

    def z(u: int, pid: str) -> list[mip.LinExpr]:
        idx = p._kidx[(u, pid)]
        return [mip.xsum(x[u][j] for j in np.nonzero(idx == k)[0])
                for k in range(len(p._keys[(u, pid)]))]

    for k, e in enumerate(p.edges):
        tab = p._edge_table(k)
        za = z(e.src, e.src_port) if e.src is not None else [mip.LinExpr(const=1.0)]  # type: ignore[arg-type]
        zb = z(e.dst, e.dst_port) if e.dst is not None else [mip.LinExpr(const=1.0)]  # type: ignore[arg-type]
        if len(za) == 1 or len(zb) == 1:  # one side fixed: the cost is linear in the other
            for a in range(len(za)):
                for b in range(len(zb)):
                    pick = za[a] if len(zb) == 1 else zb[b]
                    for r in range(len(RESOURCES)):
                        if tab[a, b, r]:
                            usage[r] += float(tab[a, b, r]) * pick
            continue
        y = [[m.add_var(lb=0.0) for _ in zb] for _ in za]
        for a in range(len(za)):
            m += mip.xsum(y[a]) == za[a]
        for b in range(len(zb)):
            m += mip.xsum(y[a][b] for a in range(len(za))) == zb[b]
        for r in range(len(RESOURCES)):
            usage[r] += mip.xsum(float(tab[a, b, r]) * y[a][b] for a in range(len(za))
                                 for b in range(len(zb)) if tab[a, b, r])
    for r in range(len(RESOURCES)):
        cap = float(p.bvec[r])
        if math.isinf(cap):
            continue
        m += usage[r] <= cap - float(reserve[r])
    norm = mip.xsum(usage[r] * (1.0 / float(p.scale[r])) for r in range(len(RESOURCES)))
    if fixed_ii is None:
        m.objective = mip.minimize(ii)
    else:
        m += ii <= fixed_ii
        m.objective = mip.minimize(norm)
    status = m.optimize(max_seconds=time_limit_s)
    if status not in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
        return None, status.name.lower()
    choice = [int(np.argmax([v.x for v in xs])) for xs in x]
    return choice, ("optimal" if status == mip.OptimizationStatus.OPTIMAL
                    else "best found in time limit")


def solve_exact(units: FoldingProblem | Sequence[Unit], budget: Mapping[str, float],
                time_limit_s: float = 60.0, rounds: int = 4) -> FoldingResult:
    """Optimal (or best-within-time-limit) folding for `units` within `budget`: the
    smallest II, then the least budget-normalised resources at it. A bare list of units
    is solved without edges (layers only). `time_limit_s` applies to each solve."""
    t0 = time.perf_counter()
    p = _as_problem(units)
    p.set_budget(budget)
    reserve = np.zeros(4)
    notes: list[str] = []
    choice: list[int] | None = None
    status = ""
    for _ in range(rounds):
        choice, status = _solve(p, reserve, time_limit_s, None)
        if choice is None:
            break
        ii = p.evaluate(choice).ii_cycles
        refined, status2 = _solve(p, reserve, time_limit_s, ii)
        if refined is not None:
            choice = refined
            if status2 != "optimal":
                status = status2
        b = p.evaluate(choice)
        if p.fits(b):
            break
        if np.all(b.deep <= reserve + 1e-9):
            choice = None
            status = "no fitting design found with the deep-FIFO reservation"
            break
        reserve = np.maximum(reserve, b.deep)
    seconds = time.perf_counter() - t0
    n = sum(len(u.options) for u in p.units)
    if choice is None or not p.fits(p.evaluate(choice)):
        return _result(p, "exact", cheapest_choice(p), False, n, seconds,
                       [f"integer program: {status or 'infeasible'}"])
    if p.joins:
        notes.append("deep FIFOs by reservation rounds")
    return _result(p, "exact", choice, True, n, seconds, [status] + notes)
