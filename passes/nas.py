"""Neural architecture search strategies over a `space` and Pareto fronts.

A candidate is a mapping choice point -> option, a choice point being (layer, dim) as
in `nashc.dsl.ast.Program.choices`. Strategies only decide which candidates to look
at; how a candidate is scored is the caller's `evaluate` function, which returns an
`Evaluation` (a zero-shot score or accuracy to maximise, a hardware figure — fps — to
maximise, and whether it is feasible). This keeps the strategies testable on their own
and lets the pipeline plug in the coarse cost model first and FINN's estimates later.

* `exhaustive` — every candidate (refused above `max_candidates`).
* `random` — `samples` distinct candidates, uniformly.
* `evolution` — regularised evolution (Real et al., 2019) with crossover: a population
  is seeded at random; each generation, tournament selection picks parents, children
  are made by uniform crossover and single-point mutation, and the oldest members are
  retired. Fitness is Pareto rank over (score, fps) with infeasible candidates last, so
  the hardware cost is in the fitness, not only a filter.

All strategies are deterministic for a given seed and never evaluate a candidate twice.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChoicePoint",
    "Candidate",
    "Evaluation",
    "SearchLog",
    "candidate_key",
    "space_size",
    "default_candidate",
    "exhaustive",
    "random_search",
    "evolution",
    "pareto_front",
]

ChoicePoint = tuple[str, str]
Candidate = dict[ChoicePoint, Any]
Choices = Mapping[ChoicePoint, Sequence[Any]]


@dataclass
class Evaluation:
    """What `evaluate` returns for one candidate."""

    score: float
    fps: float
    feasible: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchLog:
    """Every candidate evaluated, in order."""

    entries: list[tuple[Candidate, Evaluation]] = field(default_factory=list)
    stopped_early: bool = False

    def __len__(self) -> int:
        return len(self.entries)


def candidate_key(candidate: Mapping[ChoicePoint, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in candidate.items()))


def space_size(choices: Choices) -> int:
    size = 1
    for options in choices.values():
        size *= len(options)
    return size


def default_candidate(choices: Choices) -> Candidate:
    """The first option of every choice point (the declared network when it is listed first)."""
    return {k: v[0] for k, v in choices.items()}


def _sample(choices: Choices, rng: random.Random) -> Candidate:
    return {k: rng.choice(list(v)) for k, v in sorted(choices.items())}


def _run(evaluate: Callable[[Candidate], Evaluation], cand: Candidate, log: SearchLog,
         seen: dict[tuple, Evaluation]) -> Evaluation:
    key = candidate_key(cand)
    if key not in seen:
        ev = evaluate(cand)
        seen[key] = ev
        log.entries.append((dict(cand), ev))
    return seen[key]


def exhaustive(choices: Choices, evaluate: Callable[[Candidate], Evaluation],
               max_candidates: int = 100_000) -> SearchLog:
    size = space_size(choices)
    if size > max_candidates:
        raise ValueError(f"the space has {size} candidates; exhaustive search is limited to "
                         f"{max_candidates} (use random or evolution)")
    keys = sorted(choices)
    log = SearchLog()
    seen: dict[tuple, Evaluation] = {}
    try:
        for values in itertools.product(*(list(choices[k]) for k in keys)):
            _run(evaluate, dict(zip(keys, values)), log, seen)
    except KeyboardInterrupt:
        log.stopped_early = True
    return log


def random_search(choices: Choices, evaluate: Callable[[Candidate], Evaluation], samples: int,
                  seed: int = 0) -> SearchLog:
    rng = random.Random(seed)
    log = SearchLog()
    seen: dict[tuple, Evaluation] = {}
    target = min(samples, space_size(choices))
    tries = 0
    try:
        while len(log) < target and tries < 50 * target:
            tries += 1
            _run(evaluate, _sample(choices, rng), log, seen)
    except KeyboardInterrupt:
        log.stopped_early = True
    return log


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when maximising both coordinates, sorted by
    the second coordinate (fps) descending."""
    idx = []
    for i, (a, b) in enumerate(points):
        dominated = any((c >= a and d >= b) and (c > a or d > b) for c, d in points)
        if not dominated:
            idx.append(i)
    # drop exact duplicates, keep the first
    out, seen = [], set()
    for i in idx:
        if points[i] not in seen:
            seen.add(points[i])
            out.append(i)
    return sorted(out, key=lambda i: (-points[i][1], -points[i][0], i))


def _ranks(evals: Sequence[Evaluation]) -> list[int]:
    """Non-dominated sorting rank per evaluation (0 = front); infeasible ones rank last."""
    remaining = [i for i, e in enumerate(evals) if e.feasible]
    ranks = [len(evals)] * len(evals)
    rank = 0
    while remaining:
        pts = [(evals[i].score, evals[i].fps) for i in remaining]
        front = {remaining[j] for j in pareto_front(pts)}
        # pareto_front drops duplicates: give duplicates the same rank
        front |= {i for i in remaining if (evals[i].score, evals[i].fps) in
                  {(evals[f].score, evals[f].fps) for f in front}}
        for i in front:
            ranks[i] = rank
        remaining = [i for i in remaining if i not in front]
        rank += 1
    return ranks


def evolution(choices: Choices, evaluate: Callable[[Candidate], Evaluation], population: int,
              generations: int, seed: int = 0, tournament: int = 3,
              mutation_rate: float = 0.3) -> SearchLog:
    rng = random.Random(seed)
    log = SearchLog()
    seen: dict[tuple, Evaluation] = {}
    keys = sorted(choices)
    limit = space_size(choices)
    pop: list[tuple[Candidate, Evaluation]] = []
    try:
        tries = 0
        while len(pop) < min(population, limit) and tries < 50 * population:
            tries += 1
            cand = _sample(choices, rng)
            if candidate_key(cand) in seen:
                continue
            pop.append((cand, _run(evaluate, cand, log, seen)))
        for _ in range(generations):
            if len(seen) >= limit:
                break
            ranks = _ranks([e for _, e in pop])
            children: list[tuple[Candidate, Evaluation]] = []
            attempts = 0
            while len(children) < max(1, population // 2) and attempts < 20 * population:
                attempts += 1
                parents = []
                for _ in range(2):
                    group = rng.sample(range(len(pop)), min(tournament, len(pop)))
                    parents.append(pop[min(group, key=lambda i: (ranks[i], -pop[i][1].score))][0])
                child = {k: (parents[0] if rng.random() < 0.5 else parents[1])[k] for k in keys}
                for k in keys:
                    if rng.random() < mutation_rate / max(1, len(keys)) * 3:
                        child[k] = rng.choice(list(choices[k]))
                if candidate_key(child) in seen:
                    k = rng.choice(keys)
                    child[k] = rng.choice(list(choices[k]))
                    if candidate_key(child) in seen:
                        continue
                children.append((child, _run(evaluate, child, log, seen)))
                if len(seen) >= limit:
                    break
            if not children:
                break
            # regularised evolution: the oldest leave, the children join
            pop = pop[len(children):] + children if len(pop) >= population else pop + children
    except KeyboardInterrupt:
        log.stopped_early = True
    return log
