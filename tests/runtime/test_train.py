"""Training loop and digits data: determinism, loss going down for each op kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nashc.dsl.ast import DType, Pos, ResolvedLayer, ResolvedNetwork
from nashc.runtime.build import LayerChoice, build_module
from nashc.runtime.train import digits_loaders, evaluate, train

P = Pos("t.nash", 1, 1)
W4, A4 = DType("int4"), DType("uint4")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks train 10-30x faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_net() -> ResolvedNetwork:
    kw = {"weights": W4, "activations": A4}
    return ResolvedNetwork("tiny", (1, 8, 8), DType("uint8"), (
        ResolvedLayer("stem", "conv", (1, 8, 8), (8, 8, 8), P, kernel=3, stride=1, pad=1, **kw),
        ResolvedLayer("mid", "conv", (8, 8, 8), (16, 8, 8), P, kernel=3, stride=1, pad=1, **kw),
        ResolvedLayer("pool", "pool", (16, 8, 8), (16, 4, 4), P, kernel=2, stride=2, mode="max"),
        ResolvedLayer("hid", "fc", (256,), (32,), P, **kw),
        ResolvedLayer("head", "fc", (32,), (10,), P, **kw),
    ))


def _hybrid(op: str):
    torch.manual_seed(0)
    return build_module(tiny_net(), {"mid": LayerChoice(op=op), "hid": LayerChoice(op=op)})  # type: ignore[arg-type]


def test_digits_loaders_are_real_and_deterministic() -> None:
    tr1, va1 = digits_loaders(32, seed=3)
    tr2, _ = digits_loaders(32, seed=3)
    tr3, _ = digits_loaders(32, seed=4)
    x1, y1 = next(iter(tr1))
    x2, y2 = next(iter(tr2))
    x3, _ = next(iter(tr3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (32, 1, 8, 8) and x1.dtype == torch.float32
    assert float(x1.min()) >= 0 and float(x1.max()) <= 255 and float(x1.max()) > 200
    assert torch.equal(x1, x1.round())
    n_tr = sum(len(y) for _, y in tr1)
    n_va = sum(len(y) for _, y in va1)
    assert n_tr + n_va == 1797 and abs(n_va - 359) <= 1
    assert set(np.unique(np.concatenate([y.numpy() for _, y in va1]))) == set(range(10))
    x4, _ = next(iter(digits_loaders(8, seed=0, image=(3, 8, 8))[0]))
    assert x4.shape == (8, 3, 8, 8) and torch.equal(x4[:, 0], x4[:, 2])


@pytest.mark.parametrize("op", ["conv", "shift", "adder"])
def test_smoke_30_steps_loss_goes_down(op: str) -> None:
    tr, va = digits_loaders(32, seed=0)
    module = _hybrid(op)
    res = train(module, tr, None, epochs=1, lr=0.02, seed=0, max_steps=30)
    sl = res.step_losses
    assert len(sl) == 30
    assert np.mean(sl[-5:]) < 0.85 * np.mean(sl[:5]), sl


def test_training_is_deterministic() -> None:
    tr, _ = digits_loaders(32, seed=0)
    a = train(_hybrid("adder"), tr, None, epochs=1, lr=0.01, seed=0, max_steps=5).step_losses
    tr, _ = digits_loaders(32, seed=0)
    b = train(_hybrid("adder"), tr, None, epochs=1, lr=0.01, seed=0, max_steps=5).step_losses
    assert a == b


@pytest.mark.slow
@pytest.mark.parametrize("op", ["conv", "shift", "adder"])
def test_few_epochs_reach_sensible_accuracy(op: str) -> None:
    tr, va = digits_loaders(32, seed=0)
    module = _hybrid(op)
    res = train(module, tr, va, epochs=5, lr=0.01, seed=0)
    assert len(res.losses) == 5 and len(res.val_accuracy) == 5
    assert res.losses[-1] < res.losses[0]
    assert res.val_accuracy[-1] >= 0.85, res.val_accuracy
    assert evaluate(module, va) == pytest.approx(res.val_accuracy[-1])


def test_callbacks_report_every_step_and_epoch() -> None:
    tr, va = digits_loaders(256, seed=0)
    steps: list[tuple[int, int, float]] = []
    epochs: list[tuple[int, float, float | None]] = []
    res = train(_hybrid("shift"), tr, va, epochs=2, lr=0.01, seed=0,
                on_step=lambda e, i, loss: steps.append((e, i, loss)),
                on_epoch=lambda e, loss, acc: epochs.append((e, loss, acc)))
    assert [(e, i) for e, i, _ in steps] == [(e, i) for e in range(2) for i in range(len(tr))]
    assert [s[2] for s in steps] == res.step_losses
    assert epochs == [(e, res.losses[e], res.val_accuracy[e]) for e in range(2)]
    assert res.seconds > 0
