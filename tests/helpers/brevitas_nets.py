"""Small Brevitas networks (random weights) exported as FINN users export them, for the
model-kind tests: dynamic batch axes, old opsets, BNN-PYNQ layers, unsupported structure.

Every builder returns an `nn.Module` in eval mode taking (1, C, H, W); `export` writes it
with `brevitas.export.export_qonnx` (the TorchScript exporter, as FINN's notebooks use,
which honours `opset_version` and `dynamic_axes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import brevitas.nn as qnn
import torch
from torch import nn

__all__ = ["export", "conv_net", "fc_net", "concat_net", "pool_before_act_net",
           "float_avgpool_net", "per_channel_act_net", "float_net", "bipolar_input_net"]


def export(module: nn.Module, shape: tuple[int, ...], path: Path, *,
           opset: int | None = None, dynamic_batch: bool = False) -> Path:
    """`export_qonnx` with the TorchScript exporter; the input is named ``inp``."""
    from brevitas.export import export_qonnx

    kwargs: dict[str, Any] = {"dynamo": False, "input_names": ["inp"]}
    if opset is not None:
        kwargs["opset_version"] = opset
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"inp": {0: "batch"}}
    module.eval()
    export_qonnx(module, torch.randn(*shape), export_path=str(path), **kwargs)
    return path


def _q8() -> nn.Module:
    return qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)


def _relu(bits: int, **kw: Any) -> nn.Module:
    return qnn.QuantReLU(bit_width=bits, return_quant_tensor=True, **kw)


class _Seq(nn.Module):
    def __init__(self, *mods: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def conv_net(c: int = 3, hw: int = 8, bits: int = 4, seed: int = 0) -> nn.Module:
    """input quant -> conv 3x3 (no pad) -> BN -> ReLU quant -> flatten -> linear."""
    torch.manual_seed(seed)
    o = hw - 2
    return _Seq(_q8(), qnn.QuantConv2d(c, 4, 3, bias=False, weight_bit_width=bits),
                nn.BatchNorm2d(4), _relu(bits), nn.Flatten(),
                qnn.QuantLinear(4 * o * o, 10, bias=False, weight_bit_width=bits)).eval()


def fc_net(c: int = 1, hw: int = 8, bits: int = 4, seed: int = 0,
           hidden: int = 16) -> nn.Module:
    """flatten -> input quant -> linear -> BN -> ReLU quant -> linear."""
    torch.manual_seed(seed)
    return _Seq(nn.Flatten(), _q8(),
                qnn.QuantLinear(c * hw * hw, hidden, bias=False, weight_bit_width=bits),
                nn.BatchNorm1d(hidden), _relu(bits),
                qnn.QuantLinear(hidden, 10, bias=False, weight_bit_width=bits)).eval()


class _Concat(nn.Module):
    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.inp = _q8()
        self.branch_a = qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=4)
        self.branch_b = qnn.QuantConv2d(3, 4, 1, bias=False, weight_bit_width=4)
        self.relu_a = _relu(4)
        self.relu_b = self.relu_a if shared else _relu(4)
        self.fc = qnn.QuantLinear(8 * 8 * 8, 10, bias=False, weight_bit_width=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        y = torch.cat([self.relu_a(self.branch_a(x)).value,
                       self.relu_b(self.branch_b(x)).value], 1)
        return self.fc(torch.flatten(y, 1))


def concat_net(shared: bool = False, seed: int = 0) -> nn.Module:
    """Two conv branches joined by a channel Concat (Inception-style), then fc; with
    `shared` both branches end in the same activation quantizer (one scale)."""
    torch.manual_seed(seed)
    return _Concat(shared).eval()


def pool_before_act_net(seed: int = 0) -> nn.Module:
    """conv -> MaxPool -> ReLU quant (pool before the activation) -> fc."""
    torch.manual_seed(seed)
    return _Seq(_q8(), qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4),
                nn.MaxPool2d(2), _relu(4), nn.Flatten(),
                qnn.QuantLinear(4 * 3 * 3, 10, bias=False, weight_bit_width=4)).eval()


def float_avgpool_net(seed: int = 0) -> nn.Module:
    """conv -> ReLU quant -> float AvgPool (no quantizer after it) -> conv -> fc."""
    torch.manual_seed(seed)
    return _Seq(_q8(), qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4),
                qnn.QuantReLU(bit_width=4), nn.AvgPool2d(2),
                qnn.QuantConv2d(4, 4, 3, bias=False, weight_bit_width=4),
                _relu(4), nn.Flatten(),
                qnn.QuantLinear(4, 10, bias=False, weight_bit_width=4)).eval()


def per_channel_act_net(seed: int = 0) -> nn.Module:
    """conv -> ReLU quant with one scale per channel (MobileNet-style) -> fc."""
    torch.manual_seed(seed)
    relu = _relu(4, scaling_per_output_channel=True,
                 per_channel_broadcastable_shape=(1, 4, 1, 1),
                 scaling_stats_permute_dims=(1, 0, 2, 3))
    return _Seq(_q8(), qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=4),
                relu, nn.Flatten(),
                qnn.QuantLinear(4 * 6 * 6, 10, bias=False, weight_bit_width=4)).eval()


def float_net(seed: int = 0) -> nn.Module:
    """A plain float (unquantized) PyTorch network: conv -> ReLU -> fc."""
    torch.manual_seed(seed)
    return _Seq(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(),
                nn.Linear(4 * 6 * 6, 10)).eval()


def bipolar_input_net(seed: int = 0) -> nn.Module:
    """A BNN-PYNQ-style fc network whose input quantizer is bipolar (+-1)."""
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    torch.manual_seed(seed)
    return _Seq(nn.Flatten(),
                qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                  return_quant_tensor=True),
                qnn.QuantLinear(64, 16, bias=False,
                                weight_quant=SignedBinaryWeightPerTensorConst),
                nn.BatchNorm1d(16),
                qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                  return_quant_tensor=True),
                qnn.QuantLinear(16, 10, bias=False, weight_bit_width=4)).eval()
