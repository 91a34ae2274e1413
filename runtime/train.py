"""A small, deterministic training loop and the bundled digits data set.

`digits_loaders` serves scikit-learn's real 8x8 digit images (values 0..16) scaled to
the uint8 range 0..255 that a network built by `nashc.runtime.build` expects for a
`uint8` input (its input quantizer has scale 1), split 80/20 into train/validation
with a seeded shuffle. `train` runs Adam (or SGD) on the cross-entropy loss and reports
the mean training loss and the validation accuracy per epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["TrainResult", "train", "evaluate", "digits_loaders", "seed_everything"]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    val_accuracy: list[float] = field(default_factory=list)  # per epoch, in [0, 1]
    step_losses: list[float] = field(default_factory=list)  # every optimizer step


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
          max_steps: int | None = None) -> TrainResult:
    """Trains `module` with cross-entropy; `max_steps` stops early (for smoke tests)."""
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
    for _ in range(epochs):
        module.train()
        total, count = 0.0, 0
        for x, y in loader_train:
            opt.zero_grad()
            loss = loss_fn(module(x), y)
            loss.backward()
            opt.step()
            result.step_losses.append(float(loss.detach()))
            total += float(loss) * int(y.numel())
            count += int(y.numel())
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        sched.step()
        result.losses.append(total / max(1, count))
        if loader_val is not None:
            result.val_accuracy.append(evaluate(module, loader_val))
        if max_steps is not None and steps >= max_steps:
            break
    return result


def digits_loaders(batch: int, seed: int = 0, image: tuple[int, int, int] = (1, 8, 8),
                   val_fraction: float = 0.2) -> tuple[DataLoader, DataLoader]:
    """Train/validation loaders over scikit-learn's digits, pixels in 0..255 (float32).

    `image` is (C, H, W): H, W must be 8 (the data is 8x8); C > 1 repeats the gray
    channel.
    """
    from sklearn.datasets import load_digits

    c, h, w = image
    if (h, w) != (8, 8) or c < 1:
        raise ValueError(f"digits images are 1x8x8 (channels may repeat), got {image}")
    data = load_digits()
    x = np.round(data.images.astype(np.float64) * (255.0 / 16.0)).astype(np.float32)
    x = np.repeat(x[:, None, :, :], c, axis=1)
    y = data.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(len(y) * val_fraction))
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    ds_tr = TensorDataset(torch.from_numpy(x[tr_idx]), torch.from_numpy(y[tr_idx]))
    ds_val = TensorDataset(torch.from_numpy(x[val_idx]), torch.from_numpy(y[val_idx]))
    gen = torch.Generator().manual_seed(seed)
    return (DataLoader(ds_tr, batch_size=batch, shuffle=True, generator=gen),
            DataLoader(ds_val, batch_size=256, shuffle=False))
