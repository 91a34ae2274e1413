"""`ModulePool`: networks built from reused layer modules are bit-identical to fresh
builds (same seed -> same weights, same quantizer state, same scores), across a sequence
of candidates that reuse layers in every role (conv/fc of each op kind, activation and
residual-add quantizers, TruncAvgPool, input quantizer)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from nashc.dsl import check_program, parse
from nashc.passes.zeroshot import SCORES
from nashc.runtime.build import ModulePool
from nashc.training import build_candidate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MLP = """
network m {
  input 1x8x8 uint8
  weights int4
  activations uint4
  fc fc0 out 16
  fc fc1 out 16
  fc fc2 out 16
  fc head out 10 weights int8
}
space {
  op    fc1, fc2, head in {conv, shift, adder}
  wbits fc*          in {2, 4, 8}
  abits fc*          in {2, 4}
}
"""

RES = """
network r {
  input 3x12x12 uint8
  weights int4
  activations uint4
  conv  stem out 8 kernel 3
  block b1   residual out 8
  block b2   residual out 16 stride 2
  pool  gap  global avg
  fc    head out 10 weights int8
}
space {
  op     b*.conv*, stem in {conv, shift, adder}
  kernel b*.conv*     in {1, 3}
  width  b*           in {0.5, 1.0}
  wbits  *            in {2, 4, 8}
  abits  *            in {2, 4}
  fix    head
}
"""


def _program(text: str):
    return check_program(parse(text, "pool_test.nash"))


def _samples(program, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    keys = sorted(program.choices)
    return [{k: rng.choice(list(program.choices[k])) for k in keys} for _ in range(n)]


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _batch(program, n: int = 8) -> torch.Tensor:
    shape = tuple(program.network.input_shape)
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(3)).float()


@pytest.mark.parametrize("text", [MLP, RES], ids=["mlp", "rescnn"])
@pytest.mark.parametrize("metric", ["zero_shot", "hybrid", "synflow"])
def test_pooled_builds_equal_fresh_builds(text: str, metric: str) -> None:
    program = _program(text)
    x = _batch(program)
    pool = ModulePool()
    # few candidates drawn from a small space: layers are reused in every role
    choices = _samples(program, 10, seed=1)
    for i, choice in enumerate(choices):
        seed = i % 2
        fresh = build_candidate(program, choice, seed)
        pooled = build_candidate(program, choice, seed, pool=pool)
        a, b = _state(fresh), _state(pooled)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (i, k)
        torch.manual_seed(0)
        s_fresh = SCORES[metric](fresh, x, copy=False)
        torch.manual_seed(0)
        s_pooled = SCORES[metric](pooled, x, copy=False)
        assert s_fresh == s_pooled or (s_fresh != s_fresh and s_pooled != s_pooled), i
    assert pool.hits > 0 and pool.misses > 0


def test_pool_hands_out_each_module_once_per_network_and_bounds_its_size() -> None:
    program = _program(RES)
    pool = ModulePool(max_modules=6)
    choice = _samples(program, 1, seed=2)[0]
    net = build_candidate(program, choice, 0, pool=pool)
    mods = [m for m in net.modules() if hasattr(m, "nashc_layer")]
    assert len({id(m) for m in mods}) == len(mods)
    assert len(pool) <= 6
    small = ModulePool(max_bytes=4096)
    for c in _samples(program, 3, seed=5):
        build_candidate(program, c, 0, pool=small)
        assert small.bytes <= 4096 or len(small) == 1
    assert small.bytes == sum(item[3] for item in small._items.values())


def test_reset_for_reuse_repeats_the_constructors_draws() -> None:
    """Each reusable layer class: reset under a seed == constructed under that seed."""
    import brevitas.nn as qnn

    from nashc.runtime.build import reset_for_reuse
    from nashc.runtime.modules import AdderConv2d, AdderLinear, ShiftConv2d, ShiftLinear

    makers = [lambda: qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4),
              lambda: qnn.QuantLinear(5, 4, bias=False, weight_bit_width=4),
              lambda: ShiftConv2d(3, 4, 3), lambda: AdderConv2d(3, 4, 3),
              lambda: ShiftLinear(5, 4), lambda: AdderLinear(5, 4)]
    for make in makers:
        torch.manual_seed(7)
        fresh = make()
        m = make()  # other weights
        torch.manual_seed(7)
        reset_for_reuse(m)
        for (k, a), (_, b) in zip(fresh.state_dict().items(), m.state_dict().items(),
                                  strict=True):
            assert torch.equal(a, b), (type(m).__name__, k)
        assert torch.equal(fresh.export_weight, m.export_weight) \
            if hasattr(fresh, "export_weight") else True


@pytest.mark.parametrize("metric", ["zero_shot", "hybrid", "params"])
def test_coarse_measurements_equal_the_unpooled_path(metric: str, monkeypatch) -> None:
    """`DeclaredNetwork.scored` (pooled build, layer work read off the score's forward)
    gives the score and layer work of build + score + layer_work on fresh modules, for
    the language's metric and for scores with two forward passes (hybrid) or none
    (params: the layer work then comes from its own forward pass)."""
    from nashc.candidate import DeclaredNetwork

    monkeypatch.setattr(DeclaredNetwork, "metric", property(lambda self: metric))
    program = _program(RES)
    source = DeclaredNetwork(program)
    source.prepare(8, 0)
    for choice in _samples(program, 6, seed=4):
        score, works = source.scored(choice, 0)
        built = source.build(choice, 0)
        torch.manual_seed(0)
        ref_score = source.score(built)
        ref_works = source.layer_work(source.build(choice, 0), choice)
        assert score == ref_score
        assert works == ref_works
