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
They hand candidates over in batches (`evaluate_many`), so the caller can evaluate a batch
in parallel, and stop cleanly at a `deadline` (time.monotonic()) or on Ctrl-C, keeping
everything evaluated so far.
"""

from __future__ import annotations

import itertools
import random
import time
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
    stop_reason: str | None = None  # "interrupted" (Ctrl-C) or "time limit"

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


Evaluate = Callable[[Candidate], Evaluation]
EvaluateMany = Callable[[list[Candidate]], list[Evaluation]]

#: Candidates handed to `evaluate_many` at once by the random and exhaustive strategies
#: (evolution hands over one generation); the deadline is checked between chunks.
CHUNK = 16


class _Runner:
    """Evaluates candidates once each, in batches, until done or past the deadline."""

    def __init__(self, evaluate: Evaluate | None, evaluate_many: EvaluateMany | None,
                 deadline: float | None) -> None:
        if evaluate is None and evaluate_many is None:
            raise ValueError("give evaluate or evaluate_many")
        self.evaluate_many = evaluate_many or (lambda cs: [evaluate(c) for c in cs])  # type: ignore[misc]
        self.deadline = deadline
        self.log = SearchLog()
        self.seen: dict[tuple, Evaluation] = {}

    def expired(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.log.stopped_early = True
            self.log.stop_reason = "time limit"
            return True
        return False

    def run(self, cands: list[Candidate]) -> list[Evaluation]:
        fresh: list[Candidate] = []
        keys = set()
        for c in cands:
            k = candidate_key(c)
            if k not in self.seen and k not in keys:
                keys.add(k)
                fresh.append(c)
        if fresh:
            for c, ev in zip(fresh, self.evaluate_many(fresh)):
                self.seen[candidate_key(c)] = ev
                self.log.entries.append((dict(c), ev))
        return [self.seen[candidate_key(c)] for c in cands]


def exhaustive(choices: Choices, evaluate: Evaluate | None = None,
               max_candidates: int = 100_000, *, evaluate_many: EvaluateMany | None = None,
               deadline: float | None = None) -> SearchLog:
    size = space_size(choices)
    if size > max_candidates:
        raise ValueError(f"the space has {size} candidates; exhaustive search is limited to "
                         f"{max_candidates} (use random or evolution)")
    keys = sorted(choices)
    runner = _Runner(evaluate, evaluate_many, deadline)
    every = itertools.product(*(list(choices[k]) for k in keys))
    try:
        while not runner.expired():
            chunk = [dict(zip(keys, v)) for v in itertools.islice(every, CHUNK)]
            if not chunk:
                break
            runner.run(chunk)
    except KeyboardInterrupt:
        runner.log.stopped_early = True
        runner.log.stop_reason = "interrupted"
    return runner.log


def random_search(choices: Choices, evaluate: Evaluate | None = None, samples: int = 100,
                  seed: int = 0, *, evaluate_many: EvaluateMany | None = None,
                  deadline: float | None = None) -> SearchLog:
    rng = random.Random(seed)
    runner = _Runner(evaluate, evaluate_many, deadline)
    target = min(samples, space_size(choices))
    # the sample is drawn first, so it does not depend on how it is evaluated
    picked: list[Candidate] = []
    keys: set[tuple] = set()
    tries = 0
    while len(picked) < target and tries < 50 * target:
        tries += 1
        c = _sample(choices, rng)
        if candidate_key(c) not in keys:
            keys.add(candidate_key(c))
            picked.append(c)
    try:
        for i in range(0, len(picked), CHUNK):
            if runner.expired():
                break
            runner.run(picked[i:i + CHUNK])
    except KeyboardInterrupt:
        runner.log.stopped_early = True
        runner.log.stop_reason = "interrupted"
    return runner.log


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


def evolution(choices: Choices, evaluate: Evaluate | None = None, population: int = 64,
              generations: int = 20, seed: int = 0, tournament: int = 3,
              mutation_rate: float = 0.3, *, evaluate_many: EvaluateMany | None = None,
              deadline: float | None = None) -> SearchLog:
    """`population` random candidates, then `generations` generations of population/2
    children each (at most population + generations * population / 2 evaluations)."""
    rng = random.Random(seed)
    runner = _Runner(evaluate, evaluate_many, deadline)
    keys = sorted(choices)
    limit = space_size(choices)
    pop: list[tuple[Candidate, Evaluation]] = []
    try:
        first: list[Candidate] = []
        seen_keys: set[tuple] = set()
        tries = 0
        while len(first) < min(population, limit) and tries < 50 * population:
            tries += 1
            cand = _sample(choices, rng)
            if candidate_key(cand) not in seen_keys:
                seen_keys.add(candidate_key(cand))
                first.append(cand)
        for i in range(0, len(first), CHUNK):
            if runner.expired():
                return runner.log
            pop += list(zip(first[i:i + CHUNK], runner.run(first[i:i + CHUNK])))
        for _ in range(generations):
            if len(runner.seen) >= limit or runner.expired():
                break
            ranks = _ranks([e for _, e in pop])
            kids: list[Candidate] = []
            kid_keys: set[tuple] = set()
            attempts = 0
            while len(kids) < max(1, population // 2) and attempts < 20 * population:
                attempts += 1
                parents = []
                for _ in range(2):
                    group = rng.sample(range(len(pop)), min(tournament, len(pop)))
                    parents.append(pop[min(group, key=lambda i: (ranks[i], -pop[i][1].score))][0])
                child = {k: (parents[0] if rng.random() < 0.5 else parents[1])[k] for k in keys}
                for k in keys:
                    if rng.random() < mutation_rate / max(1, len(keys)) * 3:
                        child[k] = rng.choice(list(choices[k]))
                known = runner.seen.keys() | kid_keys
                if candidate_key(child) in known:
                    k = rng.choice(keys)
                    child[k] = rng.choice(list(choices[k]))
                    if candidate_key(child) in runner.seen.keys() | kid_keys:
                        continue
                kid_keys.add(candidate_key(child))
                kids.append(child)
                if len(runner.seen) + len(kids) >= limit:
                    break
            if not kids:
                break
            children = list(zip(kids, runner.run(kids)))
            # regularised evolution: the oldest leave, the children join
            pop = pop[len(children):] + children if len(pop) >= population else pop + children
    except KeyboardInterrupt:
        runner.log.stopped_early = True
        runner.log.stop_reason = "interrupted"
    return runner.log
