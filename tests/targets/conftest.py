"""Fixtures for the FINN target tests: small Brevitas networks exported to QONNX."""

from __future__ import annotations

from pathlib import Path

import pytest


def export_brevitas(module, shape, path: Path) -> Path:  # type: ignore[no-untyped-def]
    import torch
    from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup

    module.eval()
    export_qonnx(module, torch.randn(*shape), export_path=str(path))
    cleanup(str(path), out_file=str(path))
    return path


@pytest.fixture(scope="session")
def tfc_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    model, _ = model_with_cfg("TFC_2W2A", pretrained=False)
    return export_brevitas(model, (1, 1, 28, 28), tmp_path_factory.mktemp("tfc") / "tfc.onnx")


@pytest.fixture(scope="session")
def cnv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    model, _ = model_with_cfg("CNV_2W2A", pretrained=False)
    return export_brevitas(model, (1, 3, 32, 32), tmp_path_factory.mktemp("cnv") / "cnv.onnx")


def residual_net():  # type: ignore[no-untyped-def]
    """conv-relu, then a residual block (conv-relu-conv + skip) joined by an add whose
    inputs share one quantizer, global average pool and a linear classifier."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv0 = qnn.QuantConv2d(3, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn0 = nn.BatchNorm2d(8)
            self.relu0 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn1 = nn.BatchNorm2d(8)
            self.relu1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn2 = nn.BatchNorm2d(8)
            self.shared = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.relu2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.pool_q = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8, 10, bias=False, weight_bit_width=4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self.relu0(self.bn0(self.conv0(self.inp(x))))
            skip = self.shared(x)
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.shared(self.bn2(self.conv2(y)))
            x = self.relu2(y + skip)
            x = self.pool_q(self.pool(x))
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    return Residual()


@pytest.fixture(scope="session")
def residual_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_brevitas(residual_net(), (1, 3, 8, 8),
                           tmp_path_factory.mktemp("res") / "residual.onnx")


@pytest.fixture(name="mvau_chain")
def mvau_chain_fixture():  # type: ignore[no-untyped-def]
    from helpers.finn_graphs import mvau_chain

    return mvau_chain
