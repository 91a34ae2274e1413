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
