"""Zero-shot scores: deterministic, side-effect free, and sensitive to what they claim."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nashc.passes.zeroshot import SCORES, hybrid_score, naswot_score, score


class NegAbs(nn.Module):
    """A stand-in adder layer: y = -sum |x - w| over a 3x3 window (all outputs <= 0)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = nn.functional.unfold(x, 3, padding=1)  # N, C*9, L
        w = self.weight.flatten(1)  # O, C*9
        y = -(cols.unsqueeze(1) - w[None, :, :, None]).abs().sum(2)
        return y.view(x.shape[0], -1, x.shape[2], x.shape[3])


def net(kind: str, width: int = 8, bn: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
    mid = NegAbs(width, width) if kind == "adder" else nn.Conv2d(width, width, 3, padding=1)
    layers += [mid] + ([nn.BatchNorm2d(width)] if bn else []) + [nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(SCORES))
@pytest.mark.parametrize("kind", ["conv", "adder"])
def test_scores_are_deterministic_and_leave_the_module_unchanged(name, kind, batch):
    model = net(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = score(name, model, batch)
    b = score(name, model, batch)
    assert a == b
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_hybrid_score_sees_adder_layers_after_normalisation(batch):
    # without normalisation every ReLU after an adder layer is off: NASWOT's kernel
    # loses that layer's information; the hybrid score measures it after BatchNorm
    raw = net("adder", bn=False)
    normed = net("adder", bn=True)
    assert hybrid_score(normed, batch) > hybrid_score(raw, batch)
    assert math.isfinite(hybrid_score(normed, batch))


def test_dead_network_scores_lower(batch):
    alive = net("conv")
    dead = net("conv")
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.zero_()
    assert hybrid_score(alive, batch) > hybrid_score(dead, batch)
    assert naswot_score(alive, batch) > naswot_score(dead, batch)


def _adder_net(n_adder: int) -> nn.Sequential:
    """conv stem, then two middle layers of which the first `n_adder` are AdderConv2d."""
    from nashc.runtime.modules import AdderConv2d

    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
    for i in range(2):
        mid = AdderConv2d(8, 8, 3, 1, 1) if i < n_adder else nn.Conv2d(8, 8, 3, padding=1)
        layers += [mid, nn.BatchNorm2d(8), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("n_adder", [0, 1, 2])
def test_search_score_ranks_fewer_adder_layers_first(n_adder, batch):
    from nashc.passes.zeroshot import (
        ADDER_PENALTY,
        NASWOT_CLAMP,
        adder_layers,
        combine_search_score,
        search_score,
    )

    model = _adder_net(n_adder)
    assert adder_layers(model) == n_adder
    nw = naswot_score(model, batch)
    n = batch.shape[0]
    s = search_score(model, batch)
    assert s == combine_search_score(nw, n_adder, n)
    assert s == pytest.approx(nw / n - ADDER_PENALTY * n_adder)
    # the NASWOT term is clamped inside a band narrower than one adder layer's penalty:
    # one more adder layer always ranks lower, whatever NASWOT says
    assert 2 * NASWOT_CLAMP < ADDER_PENALTY and SCORES["zero_shot"] is search_score
    assert combine_search_score(1e9, 0, 1) - combine_search_score(-1e9, 0, 1) \
        == 2 * NASWOT_CLAMP
    assert combine_search_score(-1e9, 0, 1) > combine_search_score(1e9, 1, 1)
    assert combine_search_score(float("-inf"), 0, n) == float("-inf")


def test_scores_in_place_equal_scores_of_a_copy(batch):
    for name in ("hybrid", "naswot", "synflow"):
        a = SCORES[name](_adder_net(1), batch)
        b = SCORES[name](_adder_net(1), batch, copy=False)
        assert a == b, name


def test_hybrid_trainability_uses_plain_adder_gradients(batch):
    """AdderNet's adaptive scaling gives every adder layer the gradient norm
    eta*sqrt(n); the trainability term must see the plain gradient instead."""
    from nashc.passes.zeroshot import hybrid_terms
    from nashc.runtime.modules import AdderConv2d

    model = _adder_net(2)
    hybrid_terms(model, batch, copy=False)
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            assert m.weight.grad is not None
            norm = float(m.weight.grad.norm())
            assert norm != pytest.approx(m.eta * math.sqrt(m.weight.numel()), rel=1e-3)


@pytest.mark.parametrize("units", [1, 7, 300, 5000])
def test_hamming_kernel_equals_the_two_product_form(units):
    """The one-product NASWOT kernel is exactly C C^T + (1 - C)(1 - C)^T."""
    from nashc.passes.zeroshot import hamming_kernel

    gen = torch.Generator().manual_seed(units)
    c = torch.rand(16, units, generator=gen) > 0.3
    d = c.double()
    assert torch.equal(hamming_kernel(c), d @ d.T + (1 - d) @ (1 - d).T)


def test_scoring_in_place_leaves_no_hooks(batch):
    """A module scored in place (copy=False) keeps no forward hooks: a pooled module is
    scored again and again (nashc.runtime.build.ModulePool)."""
    from nashc.passes.zeroshot import search_score

    model = net("conv")
    for fn in (naswot_score, hybrid_score, search_score):
        fn(model, batch, copy=False)
    assert all(not m._forward_hooks for m in model.modules())
