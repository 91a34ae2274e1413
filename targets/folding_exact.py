"""The folding problem solved exactly, as an integer program (python-mip with CBC).

Same option tables as `nashc.targets.folding` (FINN's cycle and resource estimates per
option), same objective: minimise the initiation interval II subject to the budget; a
small weight on total latency breaks ties. Used by the benchmarks as the optimum that
`coarse_to_fine` and FINN's `SetFolding` are measured against, and available as
`SearchFolding(strategy="exact")`.

Formulation: binary x[u,o] (unit u takes option o), sum_o x[u,o] = 1 for every unit;
II >= sum_o cycles[u,o] x[u,o] for every unit; sum_{u,o} res_r[u,o] x[u,o] <= budget_r
for every resource r; minimise II + eps * sum latency. The II lower bound is the largest
of the units' fastest options. Solutions carry CBC's status: `optimal` or the best found
within the time limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from nashc.targets.folding import RESOURCES, FoldingResult, Unit, evaluate_assignment

__all__ = ["solve_exact"]


def solve_exact(units: Sequence[Unit], budget: Mapping[str, float],
                time_limit_s: float = 60.0) -> FoldingResult:
    """Optimal (or best-within-time-limit) folding for `units` within `budget`."""
    import mip

    t0 = time.perf_counter()
    m = mip.Model(sense=mip.MINIMIZE, solver_name=mip.CBC)
    m.verbose = 0
    m.threads = 1
    x = [[m.add_var(var_type=mip.BINARY) for _ in u.options] for u in units]
    lb = max(min(o.cycles for o in u.options) for u in units)
    ub = max(max(o.cycles for o in u.options) for u in units)
    ii = m.add_var(lb=lb, ub=ub)
    total_lat = mip.xsum(o.cycles * x[k][j] for k, u in enumerate(units)
                         for j, o in enumerate(u.options))
    for k, u in enumerate(units):
        m += mip.xsum(x[k]) == 1
        m += ii >= mip.xsum(o.cycles * x[k][j] for j, o in enumerate(u.options))
    for r, name in enumerate(RESOURCES):
        cap = float(budget.get(name, math.inf))
        if math.isinf(cap):
            continue
        m += mip.xsum(o.res[r] * x[k][j] for k, u in enumerate(units)
                      for j, o in enumerate(u.options)) <= cap
    max_lat = sum(max(o.cycles for o in u.options) for u in units) + 1
    m.objective = mip.minimize(ii + total_lat * (0.5 / max_lat))
    status = m.optimize(max_seconds=time_limit_s)
    seconds = time.perf_counter() - t0
    if status not in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
        # no design fits: report the cheapest one (least budget share per layer)
        bvec = np.array([float(budget.get(r, math.inf)) for r in RESOURCES])
        scale = np.where(np.isfinite(bvec) & (bvec > 0), bvec, 1.0)
        slow = [int(np.argmin([sum(v / s for v, s in zip(o.res, scale)) for o in u.options]))
                for u in units]
        ii_v, lat, tot = evaluate_assignment(units, slow)
        return FoldingResult("exact", slow, ii_v, lat, dict(zip(RESOURCES, tot.tolist())),
                             False, sum(len(u.options) for u in units), seconds,
                             [f"integer program: {status.name.lower()}"])
    choice = [int(np.argmax([v.x for v in xs])) for xs in x]
    ii_v, lat, tot = evaluate_assignment(units, choice)
    note = "optimal" if status == mip.OptimizationStatus.OPTIMAL else "best found in time limit"
    return FoldingResult("exact", choice, ii_v, lat, dict(zip(RESOURCES, tot.tolist())), True,
                         sum(len(u.options) for u in units), seconds, [note])
