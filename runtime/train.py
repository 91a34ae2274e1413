"""A small, deterministic training loop (quantization-aware: the modules are Brevitas').

`train` runs Adam (or SGD) on the cross-entropy loss with a cosine learning-rate schedule
and reports the mean training loss and the validation accuracy per epoch; `on_step` and
`on_epoch` callbacks drive progress bars. `digits_loaders` (scikit-learn's real 8x8
digits scaled to the uint8 range 0..255 that a network built by `nashc.runtime.build`
expects, split 80/20 with a seeded shuffle) lives in `nashc.runtime.data` with the other
data sets and is re-exported here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nashc.runtime.data import ArrayLoader
from nashc.runtime.data import digits_loaders as _digits_loaders

__all__ = ["TrainResult", "train", "evaluate", "digits_loaders", "seed_everything"]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    val_accuracy: list[float] = field(default_factory=list)  # per epoch, in [0, 1]
    step_losses: list[float] = field(default_factory=list)  # every optimizer step
    seconds: float = 0.0  # wall time of the training loop
    data: dict[str, Any] = field(default_factory=dict)  # what was trained on (set by callers)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(module: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy of `module` on `loader` (eval mode; restores the mode)."""
    was = module.training
    module.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in loader:
            right += int((module(x).argmax(dim=1) == y).sum())
            total += int(y.numel())
    module.train(was)
    return right / max(1, total)


def train(module: nn.Module, loader_train: Iterable[tuple[torch.Tensor, torch.Tensor]],
          loader_val: Iterable[tuple[torch.Tensor, torch.Tensor]] | None, epochs: int,
          lr: float, seed: int = 0, optimizer: Literal["adam", "sgd"] = "adam",
          max_steps: int | None = None,
          on_step: Callable[[int, int, float], None] | None = None,
          on_epoch: Callable[[int, float, float | None], None] | None = None) -> TrainResult:
    """Trains `module` with cross-entropy; `max_steps` stops early (for smoke tests).

    `on_step(epoch, step_in_epoch, loss)` runs after every optimizer step and
    `on_epoch(epoch, mean_loss, val_accuracy or None)` after every epoch (0-based epochs).
    """
    t0 = time.perf_counter()
    seed_everything(seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    loss_fn = nn.CrossEntropyLoss()
    result = TrainResult()
    steps = 0
    for epoch in range(epochs):
        module.train()
        total, count = 0.0, 0
        for i, (x, y) in enumerate(loader_train):
            opt.zero_grad()
            loss = loss_fn(module(x), y)
            loss.backward()
            opt.step()
            result.step_losses.append(float(loss.detach()))
            total += result.step_losses[-1] * int(y.numel())
            count += int(y.numel())
            steps += 1
            if on_step is not None:
                on_step(epoch, i, result.step_losses[-1])
            if max_steps is not None and steps >= max_steps:
                break
        sched.step()
        result.losses.append(total / max(1, count))
        if loader_val is not None:
            result.val_accuracy.append(evaluate(module, loader_val))
        if on_epoch is not None:
            on_epoch(epoch, result.losses[-1],
                     result.val_accuracy[-1] if loader_val is not None else None)
        if max_steps is not None and steps >= max_steps:
            break
    result.seconds = time.perf_counter() - t0
    return result


def digits_loaders(batch: int, seed: int = 0, image: tuple[int, int, int] = (1, 8, 8)
                   ) -> tuple[ArrayLoader, ArrayLoader]:
    """Train/validation loaders over scikit-learn's digits, pixels in 0..255 (float32).

    `image` is (C, H, W): H, W must be 8 (the data is 8x8); C > 1 repeats the gray
    channel. Kept for existing callers; `nashc.runtime.data` has the other formats.
    """
    return _digits_loaders(batch, seed=seed, image=image)
