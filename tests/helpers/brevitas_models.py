"""Small Brevitas networks of the model kinds FINN users bring, exported with
`export_qonnx` (random weights; BatchNorm statistics from a few random batches), for the
lowering and verification tests. Nothing is stored: each test builds its input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["export", "calibrated", "small_resnet", "vgg1d", "int32_bias_net", "fc_tail_net",
           "conv_feature_map_net", "bnn_pynq", "fc_to_conv",
           "transposed_conv_input_net"]


def calibrated(module: Any, shape: tuple[int, ...], seed: int = 0, batches: int = 3) -> Any:
    """`module` with BatchNorm running statistics from `batches` random batches of 8
    (so that thresholds are not all alike), in eval mode."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    module.train()
    with torch.no_grad():
        for _ in range(batches):
            module(torch.randn(8, *shape[1:], generator=gen))
    return module.eval()


def export(module: Any, shape: tuple[int, ...], path: Path, input_dtype: str | None = None,
           ) -> Path:
    """Exports `module` with `export_qonnx` (TorchScript exporter, as FINN's examples; the
    dynamo exporter rejects Brevitas' QuantTensor asserts) and qonnx's cleanup; with
    `input_dtype` the graph input gets that QONNX datatype (as FINN's ResNet-50 flow sets
    UINT8 on a network without input quantizer)."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup

    module.eval()
    export_qonnx(module, torch.randn(*shape), export_path=str(path), dynamo=False)
    cleanup(str(path), out_file=str(path))
    if input_dtype is not None:
        m = ModelWrapper(str(path))
        m.set_tensor_datatype(m.graph.input[0].name, DataType[input_dtype])
        m.save(str(path))
    return path


def bnn_pynq(name: str) -> Any:
    """A network of `brevitas_examples.bnn_pynq` (e.g. TFC_1W1A, CNV_1W1A), untrained."""
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    model, _ = model_with_cfg(name, pretrained=False)
    return model


def small_resnet(planes: tuple[int, ...] = (8, 16), blocks: tuple[int, ...] = (1, 1),
                 wbits: int = 4, abits: int = 4, size: int = 8,
                 input_quant: bool = True) -> Any:
    """`brevitas_examples.bnn_pynq`'s QuantResNet (the CIFAR ResNet-18 `resnet18_4w4a`) in
    small form: an 8-bit per-channel stem conv, `QuantBasicBlock`s (`blocks[i]` per stage
    of `planes[i]` channels, stride 2 from the second stage on, a shared quantizer on
    identity shortcuts), `TruncAvgPool2d` and an 8-bit linear with `Int32Bias`. With
    `input_quant` an 8-bit input quantizer comes first (the original has none)."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import (
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFloat,
        Int32Bias,
        TruncTo8bit,
    )
    from brevitas_examples.bnn_pynq.models.resnet import QuantBasicBlock, make_quant_conv2d
    from torch import nn

    class SmallResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inq = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True) \
                if input_quant else nn.Identity()
            self.conv1 = make_quant_conv2d(3, planes[0], 3, 8, Int8WeightPerChannelFloat,
                                           padding=1)
            self.bn1 = nn.BatchNorm2d(planes[0])
            shared = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.relu = shared
            layers = []
            inp = planes[0]
            for i, (p, nb) in enumerate(zip(planes, blocks)):
                for j in range(nb):
                    block = QuantBasicBlock(inp, p, stride=2 if i > 0 and j == 0 else 1,
                                            shared_quant_act=shared, act_bit_width=abits,
                                            weight_bit_width=wbits,
                                            weight_quant=Int8WeightPerChannelFloat)
                    layers.append(block)
                    shared, inp = block.relu_out, p
            self.layers = nn.Sequential(*layers)
            self.final_pool = qnn.TruncAvgPool2d(kernel_size=size // 2 ** (len(planes) - 1),
                                                 trunc_quant=TruncTo8bit,
                                                 float_to_int_impl_type="FLOOR")
            self.linear = qnn.QuantLinear(inp, 10, bias=True, weight_bit_width=8,
                                          bias_quant=Int32Bias,
                                          weight_quant=Int8WeightPerTensorFloat)

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(self.inq(x))))
            out = self.final_pool(self.layers(out))
            return self.linear(out.view(out.size(0), -1))

    torch.manual_seed(0)
    return calibrated(SmallResNet(), (1, 3, size, size))


def vgg1d(channels: int = 8, stages: int = 2, length: int = 32, wbits: int = 4,
          abits: int = 4) -> Any:
    """RadioML VGG10-style 1-D network (finn-examples' vgg10 in small form): 8-bit I/Q
    input (2 x `length`), `stages` x (QuantConv1d k3 pad 1, BatchNorm1d, QuantReLU,
    MaxPool1d 2), flatten, QuantLinear-BN-QuantReLU and an 8-bit QuantLinear head."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    class VGG1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            layers: list[nn.Module] = []
            cin = 2
            for _ in range(stages):
                layers += [qnn.QuantConv1d(cin, channels, 3, padding=1, bias=False,
                                           weight_bit_width=wbits),
                           nn.BatchNorm1d(channels),
                           qnn.QuantReLU(bit_width=abits, return_quant_tensor=True),
                           nn.MaxPool1d(2)]
                cin = channels
            self.features = nn.Sequential(*layers)
            self.fc0 = qnn.QuantLinear(channels * (length >> stages), 16, bias=False,
                                       weight_bit_width=wbits)
            self.bn = nn.BatchNorm1d(16)
            self.relu = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(16, 6, bias=False, weight_bit_width=8)

        def forward(self, x: Any) -> Any:
            x = torch.flatten(self.features(self.inp(x)), 1)
            return self.fc1(self.relu(self.bn(self.fc0(x))))

    torch.manual_seed(0)
    return calibrated(VGG1d(), (1, 2, length))


def int32_bias_net(wbits: int = 4, abits: int = 4, channels: int = 16) -> Any:
    """Convolutions and a linear layer with biases quantized by Brevitas' `Int32Bias`
    (8-bit input quantizer, two 3x3 convs with QuantReLU, linear head), on 3x8x8."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int32Bias
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.c0 = qnn.QuantConv2d(3, channels, 3, padding=1, bias=True,
                                      weight_bit_width=wbits, bias_quant=Int32Bias)
            self.r0 = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(channels, channels, 3, padding=1, bias=True,
                                      weight_bit_width=wbits, bias_quant=Int32Bias)
            self.r1 = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(channels * 64, 10, bias=True, weight_bit_width=wbits,
                                      bias_quant=Int32Bias)

        def forward(self, x: Any) -> Any:
            x = self.r1(self.c1(self.r0(self.c0(self.inp(x)))))
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    return Net().eval()


def fc_tail_net(tail: str, wbits: int = 4, abits: int = 4) -> Any:
    """An fc classifier on 1x8x8 (8-bit input quantizer, QuantLinear-BN-QuantReLU, a
    QuantLinear head) whose output is the logits (`tail` "none"), their `Softmax`
    ("softmax") or their `ArgMax` ("argmax")."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.f0 = qnn.QuantLinear(64, 32, bias=False, weight_bit_width=wbits)
            self.bn0 = nn.BatchNorm1d(32)
            self.r0 = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(32, 10, bias=False, weight_bit_width=wbits)

        def forward(self, x: Any) -> Any:
            y = self.fc(self.r0(self.bn0(self.f0(self.inp(torch.flatten(x, 1))))))
            if tail == "softmax":
                y = torch.softmax(y, 1)
            elif tail == "argmax":
                y = torch.argmax(y, 1)
            return y

    torch.manual_seed(0)
    return calibrated(Net(), (1, 1, 8, 8))


def conv_feature_map_net(channels: int = 8, out_channels: int = 4, per_channel: bool = True,
                         ) -> Any:
    """A network whose output is a feature map (segmentation-head style): 8-bit input,
    two 3x3 QuantConv2d-BN-QuantReLU, a 1x1 QuantConv2d head (per-channel weight scales
    when `per_channel`, so the output scale is a per-channel Mul), on 3x8x8."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.c0 = qnn.QuantConv2d(3, channels, 3, padding=1, bias=False, weight_bit_width=4)
            self.b0 = nn.BatchNorm2d(channels)
            self.r0 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(channels, channels, 3, padding=1, bias=False,
                                      weight_bit_width=4)
            self.b1 = nn.BatchNorm2d(channels)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.head = qnn.QuantConv2d(
                channels, out_channels, 1, bias=False, weight_bit_width=8,
                weight_quant=Int8WeightPerChannelFloat if per_channel
                else Int8WeightPerTensorFloat)

        def forward(self, x: Any) -> Any:
            x = self.r0(self.b0(self.c0(self.inp(x))))
            return self.head(self.r1(self.b1(self.c1(x))))

    torch.manual_seed(0)
    return calibrated(Net(), (1, 3, 8, 8))


def fc_to_conv(dims: int = 1, channels: int = 4, length: int = 16, wbits: int = 4,
               abits: int = 4, how: str = "reshape") -> Any:
    """An fc layer whose output is reshaped to a feature map and convolved (a RadioML- or
    decoder-style net): 8-bit input of 32 features, QuantLinear-BN-QuantReLU to
    `channels` x `length` (x `length` when `dims` is 2), reshaped (`how` "reshape":
    ``x.reshape(N, C, L)``; "unsqueeze", 1-D only: one channel, ``x.unsqueeze(1)``; "permute", 1-D only:
    ``x.reshape(N, L, C).transpose(1, 2)``), a
    QuantConv{dims}d k3 pad 1 with BN-QuantReLU, flatten and an 8-bit QuantLinear head
    of 6 classes. Input shape (1, 32)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    c = 1 if how == "unsqueeze" else channels
    spatial = (length,) * dims
    size = c * length ** dims
    conv = qnn.QuantConv1d if dims == 1 else qnn.QuantConv2d
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d

    class FcToConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(32, size, bias=False, weight_bit_width=wbits)
            self.bn0 = nn.BatchNorm1d(size)
            self.relu0 = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.conv = conv(c, 8, 3, padding=1, bias=False, weight_bit_width=wbits)
            self.bn1 = bn(8)
            self.relu1 = qnn.QuantReLU(bit_width=abits, return_quant_tensor=True)
            self.head = qnn.QuantLinear(8 * length ** dims, 6, bias=False,
                                        weight_bit_width=8)

        def forward(self, x: Any) -> Any:
            x = self.relu0(self.bn0(self.fc(self.inp(x))))
            if how == "unsqueeze":  # QuantTensor has no unsqueeze: on its value (1-D)
                x = torch.unsqueeze(x.value, 1)
            elif how == "permute":  # channels last in the fc output, then moved (1-D)
                x = torch.transpose(x.value.reshape(x.shape[0], length, c), 1, 2)
            else:
                x = x.reshape(x.shape[0], c, *spatial)
            x = self.relu1(self.bn1(self.conv(x)))
            return self.head(torch.flatten(x, 1))

    torch.manual_seed(0)
    return calibrated(FcToConv(), (1, 32))


def transposed_conv_input_net() -> Any:
    """Two QuantConv2d k3 pad 1 on a 2 x 4 x 8 input with the feature map's H and W
    swapped between them (``torch.transpose(x, 2, 3)``, node `Transpose_0` after qonnx's
    cleanup), flatten and an 8-bit QuantLinear head: a reorder of the stream between
    hardware layers (FINN's Shuffle)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    class TransposedConvInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.c0 = qnn.QuantConv2d(2, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.r0 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, weight_bit_width=4)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 8 * 4, 6, bias=False, weight_bit_width=8)

        def forward(self, x: Any) -> Any:
            x = torch.transpose(self.r0(self.c0(self.inp(x))).value, 2, 3)
            return self.fc(torch.flatten(self.r1(self.c1(x)), 1))

    torch.manual_seed(0)
    return calibrated(TransposedConvInput(), (1, 2, 4, 8))
