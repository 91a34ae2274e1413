"""Zero-shot (training-free) scores of candidate networks, hybrids included.

All scores take a PyTorch module (a freshly initialised candidate, as built by
`nashc.runtime.build.build_module`) and one batch of inputs, and return a float where
higher means "expected to train to a better accuracy". They run forward (and backward)
passes only; no weights are updated; with ``copy=True`` (the default) the module is left
as it was, with ``copy=False`` its statistics move and it keeps no hooks.

* `search_score` — what `metric zero_shot` ranks by: fewer adder layers first, then
  NASWOT per input (the choice measured in bench/RESULTS.md section 3, see
  `search_score`).
* `hybrid_score` — nashc's hybrid-aware zero-shot score (measured below the adder-count
  prior and not better than NASWOT as its tie-break: kept as a score to compare, not the
  default).
* `naswot_score` — NASWOT (Mellor et al., 2021): log-determinant of the Hamming-similarity
  kernel of the ReLU activation patterns of the batch, summed over all ReLUs.
* `synflow_score` — SynFlow (Tanaka et al., 2020): sum of |theta * dR/dtheta| for
  R = sum of the output of the network with |weights| on an all-ones input.
* `param_count` — the number of trainable parameters, a naive baseline.

Why a hybrid-aware score: known proxies compare layers on raw magnitudes. An adder
layer's outputs are all negative with magnitudes that grow with the fan-in (-sum|x-w|),
so before normalisation every ReLU after it is off and NASWOT's kernel collapses; a shift
layer's coarse power-of-two weights change gradient magnitudes, which skews SynFlow
towards or against shift layers independent of how well they train. `hybrid_score`
therefore measures every layer *after its normalisation* (BatchNorm in training mode, i.e.
batch statistics, which is what the first training steps see) and makes the per-layer
terms dimensionless:

    score = mean_l [ logdet(K_l) / N ]  +  mean_l [ log(1 + ||g_l||_2 / sqrt(n_l)) ]

where K_l = C_l C_l^T + (1 - C_l)(1 - C_l)^T / width_l is the normalised Hamming kernel of
the binary activation codes C_l (N x width_l) after the l-th normalised ReLU (expressivity:
how differently the batch's inputs are partitioned), and g_l is the gradient of the
cross-entropy loss on random labels (first 8 samples of the batch) with respect to the
l-th layer's (effective) weights, n_l their count (trainability: whether gradient
reaches every layer, whatever its op; an adder layer's plain gradient sum g * (x - w),
not AdderNet's rescaled one, whose norm is the same constant for every adder layer).
Both terms are per-layer averages, so a network is not rewarded merely for having more
layers or wider ones, and conv, shift and adder layers contribute on the same scale.

Known limits: the scores rank architectures of one search space; their absolute values
mean nothing across spaces. NASWOT's log-determinant grows with the number of ReLU units
(its kernel's diagonal), so it prefers wider networks (on the residual benchmark space,
the parameter count alone ranks trained accuracy within adder-count groups with tau
+0.23, NASWOT +0.17). Its quality is measured against trained accuracy in the benchmarks
(`bench/`), not assumed.
"""

from __future__ import annotations

import copy as _copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nashc.runtime.modules import forward_hooks, raw_adder_gradients

__all__ = ["SCORES", "ADDER_PENALTY", "NASWOT_CLAMP", "search_score", "combine_search_score", "adder_layers",
           "hybrid_score", "hybrid_terms", "naswot_score", "synflow_score", "param_count",
           "score"]


def _relu_like(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, nn.ReLU) or name in {"QuantReLU", "ReLU"}


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    out = []
    for m in model.modules():
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            out.append(m)
    return out


def _activation_codes(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The binary codes (N x units, bool) after every ReLU of one forward pass of `x` in
    training mode without autograd (BatchNorm on batch statistics, as the first training
    steps see it); the hooks are removed afterwards."""
    codes: list[torch.Tensor] = []

    def record(_mod: nn.Module, _inp: Any, out: Any) -> None:
        t = out.value if hasattr(out, "value") else out
        codes.append(t.detach().flatten(1) > 0)

    model.train()
    with forward_hooks((m, record) for m in model.modules() if _relu_like(m)), \
            torch.no_grad():
        model(x)
    return codes


def hamming_kernel(codes: torch.Tensor) -> torch.Tensor:
    """NASWOT's kernel of one layer's binary codes `codes` (N x U, bool or 0/1):
    ``C C^T + (1 - C)(1 - C)^T`` (how many units agree for each pair of inputs), as float64
    (N x N). Computed as ``2 C C^T - r 1^T - 1 r^T + U`` with r the row sums: one matrix
    product instead of two, exact (integer counts; float32 holds them exactly below 2^24
    units, float64 is used above)."""
    u = int(codes.shape[1])
    cf = codes.to(torch.float32 if u < 2 ** 24 else torch.float64)
    gram = (cf @ cf.T).double()
    r = cf.sum(1, dtype=torch.float64)
    return 2 * gram - r[:, None] - r[None, :] + u


def _logdet(k: torch.Tensor) -> float:
    sign, val = torch.linalg.slogdet(k.double())
    return float(val) if float(sign) > 0 else float("-inf")


def naswot_score(model: nn.Module, x: torch.Tensor, copy: bool = True) -> float:
    """NASWOT: logdet of the summed Hamming kernel of all ReLU activation codes.
    `copy=False` scores `model` itself (its BatchNorm/quantizer statistics move)."""
    if copy:
        model = _copy.deepcopy(model)  # the forward pass moves BatchNorm/quantizer statistics
    codes = _activation_codes(model, x)
    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)
    for c in codes:
        k += hamming_kernel(c)
    return _logdet(k)


def hybrid_score(model: nn.Module, x: torch.Tensor, seed: int = 0,
                 grad_batch: int = 8, copy: bool = True) -> float:
    """nashc's hybrid-aware score (see the module docstring for the formula): the sum of
    the two terms of `hybrid_terms`."""
    e, t = hybrid_terms(model, x, seed, grad_batch, copy)
    return e + t


def hybrid_terms(model: nn.Module, x: torch.Tensor, seed: int = 0,
                 grad_batch: int = 8, copy: bool = True) -> tuple[float, float]:
    """The (expressivity, trainability) terms of `hybrid_score`.

    The activation codes come from a forward pass of the whole batch without autograd;
    the gradient term from a forward/backward pass of its first `grad_batch` samples
    (the backward pass of adder layers costs O(N*L*O*K) and dominates otherwise).
    `copy=False` scores `model` itself: its BatchNorm/quantizer statistics and
    gradients change (the coarse stage scores a module built for the purpose)."""
    if copy:
        model = _copy.deepcopy(model)  # the passes move BatchNorm/quantizer statistics
    codes = _activation_codes(model, x)
    gen = torch.Generator().manual_seed(seed)
    model.zero_grad(set_to_none=True)
    xg = x[: max(2, min(grad_batch, x.shape[0]))]
    # adder layers' plain gradients: AdderNet's adaptive scaling gives every adder layer
    # the same gradient norm (eta * sqrt(n)) whatever reaches it
    with raw_adder_gradients():
        out = model(xg)
        out = out.value if hasattr(out, "value") else out
        out = out.flatten(1)
        labels = torch.randint(0, out.shape[1], (xg.shape[0],), generator=gen)
        loss = nn.functional.cross_entropy(out, labels)
        loss.backward()
    n = x.shape[0]
    expressivity = []
    for c in codes:
        width = max(c.shape[1], 1)
        k = hamming_kernel(c) / width + 1e-6 * torch.eye(n, dtype=torch.float64)
        val = _logdet(k)
        expressivity.append(val / n if math.isfinite(val) else -50.0)
    trainability = []
    for m in _weighted_layers(model):
        weight = m.weight
        assert isinstance(weight, torch.Tensor)
        g = weight.grad
        if g is None:
            trainability.append(0.0)
            continue
        trainability.append(math.log1p(float(g.norm()) / math.sqrt(g.numel())))
    e = float(np.mean(expressivity)) if expressivity else 0.0
    t = float(np.mean(trainability)) if trainability else 0.0
    return e, t


def synflow_score(model: nn.Module, x: torch.Tensor, copy: bool = True) -> float:
    """SynFlow: sum |theta * dR/dtheta| with |weights| and an all-ones input (double).
    `copy=False` works on `model` itself (its weights become |weights|)."""
    if copy:
        model = _copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    ones = torch.ones_like(x[:1])
    out = model(ones)
    out = out.value if hasattr(out, "value") else out
    out.sum().backward()
    total = 0.0
    for p in model.parameters():
        if p.grad is not None:
            total += float((p * p.grad).abs().sum())
    return math.log(total) if total > 0 else float("-inf")


def param_count(model: nn.Module, x: torch.Tensor | None = None, copy: bool = True) -> float:
    """Number of trainable parameters."""
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


#: What one adder layer costs in `search_score`: more than the whole range the NASWOT
#: term is clamped to (`NASWOT_CLAMP`), so candidates are ordered by their number of
#: adder layers first and by NASWOT among equals.
ADDER_PENALTY = 100.0

#: The NASWOT term of `search_score` (log-determinant per input) is clamped to
#: [-NASWOT_CLAMP, NASWOT_CLAMP]. Its upper bound is log(#ReLU units), below 17 for any
#: network of up to 2^24 values per frame (the language's limit); a near-singular kernel
#: can make it very negative, and the clamp keeps such a candidate inside its adder group.
NASWOT_CLAMP = 45.0


def adder_layers(model: nn.Module) -> int:
    """The number of adder layers (AdderConv2d / AdderLinear) of `model`."""
    return sum(1 for m in model.modules() if getattr(m, "kind", None) == "adder"
               and isinstance(getattr(m, "weight", None), torch.Tensor))


def combine_search_score(naswot: float, n_adder: int, batch: int) -> float:
    """`search_score` from its parts: ``clamp(naswot / batch) - ADDER_PENALTY * n_adder``
    (a singular kernel, NASWOT = -inf, gives -inf: the candidate ranks last)."""
    if not math.isfinite(naswot):
        return float("-inf")
    term = min(max(float(naswot) / batch, -NASWOT_CLAMP), NASWOT_CLAMP)
    return term - ADDER_PENALTY * int(n_adder)


def search_score(model: nn.Module, x: torch.Tensor, copy: bool = True) -> float:
    """The score `metric zero_shot` ranks candidates by: fewer adder layers first, then
    NASWOT (`naswot_score` divided by the batch size, which keeps its order):
    ``naswot / N - ADDER_PENALTY * #adder layers``.

    Why (bench/RESULTS.md section 3, `bench/bench_zeroshot.py`: 64 residual digits CNNs
    and 100 TFC-like MLPs of hybrid spaces, each trained 2 epochs): the number of adder
    layers alone ranks trained accuracy better (Kendall tau) than any zero-shot score
    measured, nashc's `hybrid_score` included; among candidates with the same number of
    adder layers NASWOT is the only score that ranks positively on both networks
    (Kendall tau +0.17 / +0.19, bootstrap 95% intervals [-0.02, +0.37] / [+0.03, +0.34];
    `hybrid_score` -0.08 / +0.25; SynFlow +0.26 on the residual CNN, constant within the
    MLP's groups). NASWOT needs one forward pass without gradients, a third of
    `hybrid_score`'s time."""
    n = int(x.shape[0])
    return combine_search_score(naswot_score(model, x, copy=copy), adder_layers(model), n)


SCORES: dict[str, Callable[..., float]] = {
    "zero_shot": search_score,
    "hybrid": hybrid_score,
    "naswot": naswot_score,
    "synflow": synflow_score,
    "params": param_count,
}


def score(name: str, model: nn.Module, x: torch.Tensor) -> float:
    """Computes the named score; deterministic for a given module and batch."""
    torch.manual_seed(0)
    return SCORES[name](model, x)
