"""Search strategies: determinism, no repeats, coverage, and Pareto fronts."""

from __future__ import annotations

import pytest

from nashc.passes.nas import (
    Evaluation,
    candidate_key,
    evolution,
    exhaustive,
    pareto_front,
    random_search,
    space_size,
)

CHOICES = {
    ("b1.conv1", "op"): ("conv", "shift", "adder"),
    ("b1.conv2", "op"): ("conv", "shift", "adder"),
    ("b1", "width"): (0.5, 1.0),
    ("b1.conv1", "wbits"): (2, 4, 8),
}
COST = {"conv": 1.0, "shift": 0.3, "adder": 0.4}


def toy_eval(c):
    """Accuracy proxy prefers conv and more bits; fps prefers hybrids and narrow widths."""
    acc = sum({"conv": 1.0, "shift": 0.6, "adder": 0.8}[c[(n, "op")]] for n in ("b1.conv1", "b1.conv2"))
    acc += 0.1 * c[("b1.conv1", "wbits")] + c[("b1", "width")]
    cost = sum(COST[c[(n, "op")]] for n in ("b1.conv1", "b1.conv2")) * c[("b1", "width")]
    cost *= c[("b1.conv1", "wbits")] / 4
    return Evaluation(score=acc, fps=1000.0 / cost, feasible=cost < 2.0)


def test_exhaustive_covers_the_space_once():
    log = exhaustive(CHOICES, toy_eval)
    assert len(log) == space_size(CHOICES) == 54
    assert len({candidate_key(c) for c, _ in log.entries}) == 54


def test_exhaustive_refuses_huge_spaces():
    with pytest.raises(ValueError, match="exhaustive"):
        exhaustive(CHOICES, toy_eval, max_candidates=10)


@pytest.mark.parametrize("strategy", ["random", "evolution"])
@pytest.mark.parametrize("seed", [0, 1])
def test_strategies_are_deterministic_and_never_repeat(strategy, seed):
    def run():
        if strategy == "random":
            return random_search(CHOICES, toy_eval, samples=20, seed=seed)
        return evolution(CHOICES, toy_eval, population=8, generations=4, seed=seed)

    a, b = run(), run()
    keys_a = [candidate_key(c) for c, _ in a.entries]
    assert keys_a == [candidate_key(c) for c, _ in b.entries]
    assert len(keys_a) == len(set(keys_a))


def test_evolution_finds_most_of_the_true_front():
    full = exhaustive(CHOICES, toy_eval)
    feas = [(c, e) for c, e in full.entries if e.feasible]
    true_front = {candidate_key(feas[i][0])
                  for i in pareto_front([(e.score, e.fps) for _, e in feas])}
    found = evolution(CHOICES, toy_eval, population=10, generations=6, seed=0)
    ff = [(c, e) for c, e in found.entries if e.feasible]
    found_front = {candidate_key(ff[i][0]) for i in pareto_front([(e.score, e.fps) for _, e in ff])}
    assert len(found) < 54
    assert len(true_front & found_front) >= len(true_front) // 2


def test_pareto_front_maximises_both():
    pts = [(1.0, 10.0), (2.0, 5.0), (0.5, 5.0), (2.0, 5.0), (3.0, 1.0), (1.0, 9.0)]
    assert pareto_front(pts) == [0, 1, 4]


@pytest.mark.parametrize("strategy", ["exhaustive", "random", "evolution"])
def test_batched_evaluation_gives_the_same_search(strategy):
    batches = []

    def many(cands):
        batches.append(len(cands))
        return [toy_eval(c) for c in cands]

    def run(**kw):
        if strategy == "exhaustive":
            return exhaustive(CHOICES, **kw)
        if strategy == "random":
            return random_search(CHOICES, samples=30, seed=3, **kw)
        return evolution(CHOICES, population=8, generations=4, seed=3, **kw)

    single = run(evaluate=toy_eval)
    batched = run(evaluate_many=many)
    assert [candidate_key(c) for c, _ in single.entries] == [
        candidate_key(c) for c, _ in batched.entries]
    assert max(batches) > 1


@pytest.mark.parametrize("strategy", ["exhaustive", "random", "evolution"])
def test_deadline_stops_the_search_cleanly(strategy):
    import time

    past = time.monotonic() - 1
    if strategy == "exhaustive":
        log = exhaustive(CHOICES, toy_eval, deadline=past)
    elif strategy == "random":
        log = random_search(CHOICES, toy_eval, samples=30, deadline=past)
    else:
        log = evolution(CHOICES, toy_eval, population=8, generations=4, deadline=past)
    assert log.stopped_early and log.stop_reason == "time limit"
    assert len(log) == 0
