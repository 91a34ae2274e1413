"""Hybrid PyTorch modules: the arithmetic of README/docs/passes.md, training gradients, export to our ops."""

from __future__ import annotations

import math
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from brevitas.export import export_qonnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.cleanup import cleanup_model
from torch import nn

from nashc.runtime.modules import (
    DOMAIN,
    AdderConv2d,
    AdderLinear,
    ShiftConv2d,
    ShiftLinear,
    _Grid,
    adder_conv2d,
    shift_weight,
)
from nashc.runtime.ops import (
    adder_conv_reference,
    adder_matmul_reference,
    is_shift_weights,
    to_adder_weights,
    to_shift_weights,
)


def _adder_conv_np(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Direct loops: y[n,o,i,j] = -sum |xpad[n,c,i*s+kh,j*s+kw] - w[o,c,kh,kw]|."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, hp, wp = xp.shape
    o, _, k, _ = w.shape
    oh, ow = (hp - k) // stride + 1, (wp - k) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            y[:, :, i, j] = -np.abs(win[:, None] - w[None].astype(np.float64)).sum(
                axis=(2, 3, 4))
    return y


# -- shift ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_shift_weight_is_power_of_two_in_range(bits: int) -> None:
    torch.manual_seed(bits)
    w = torch.randn(64) * 2.0
    lo = -(2 ** (bits - 1) - 1)
    w[:3] = torch.tensor([0.0, 2.0 ** (lo - 2), -50.0])  # zero, below range, above range
    ws = shift_weight(w, bits).numpy()
    assert is_shift_weights(ws, bits)
    np.testing.assert_array_equal(ws, to_shift_weights(w.numpy(), bits))
    assert ws[0] == 0.0 and ws[1] == 2.0 ** lo and ws[2] == -1.0
    assert ws[3:].min() >= -1.0 and ws[3:].max() <= 1.0


@pytest.mark.parametrize("stride,pad,k", [(1, 1, 3), (2, 0, 1), (2, 1, 3)])
def test_shift_conv_forward_and_straight_through(stride: int, pad: int, k: int) -> None:
    torch.manual_seed(0)
    m = ShiftConv2d(3, 4, k, stride, pad, weight_bits=4)
    x = torch.randn(2, 3, 6, 6)
    y = m(x)
    ws = m.effective_weight().detach()
    assert is_shift_weights(ws.numpy(), 4)
    torch.testing.assert_close(y, F.conv2d(x, ws, None, stride, pad))
    g = torch.randn_like(y)
    (y * g).sum().backward()
    leaf = ws.clone().requires_grad_(True)
    (F.conv2d(x, leaf, None, stride, pad) * g).sum().backward()
    assert m.weight.grad is not None and leaf.grad is not None
    torch.testing.assert_close(m.weight.grad, leaf.grad)  # straight through


def test_shift_linear_forward() -> None:
    torch.manual_seed(1)
    m = ShiftLinear(5, 3, weight_bits=3)
    x = torch.randn(4, 5)
    ws = m.effective_weight().detach()
    assert is_shift_weights(ws.numpy(), 3)
    torch.testing.assert_close(m(x), x @ ws.t())


def test_shift_rejects_one_bit() -> None:
    with pytest.raises(ValueError):
        ShiftConv2d(1, 1, 1, weight_bits=1)


# -- adder ------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,pad,k", [(1, 0, 1), (1, 1, 3), (2, 1, 3), (2, 2, 5)])
def test_adder_conv_forward_matches_numpy(stride: int, pad: int, k: int) -> None:
    torch.manual_seed(2)
    m = AdderConv2d(3, 4, k, stride, pad, weight_bits=4)
    x = torch.randn(2, 3, 7, 7)
    y = m(x).detach().numpy()  # plain tensor input: float weights
    ref = _adder_conv_np(x.numpy(), m.weight.detach().numpy(), stride, pad)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)


def test_adder_linear_forward_matches_numpy() -> None:
    torch.manual_seed(3)
    m = AdderLinear(6, 4)
    x = torch.randn(3, 6)
    w = m.weight.detach().numpy().astype(np.float64)
    ref = -np.abs(x.numpy()[:, None, :] - w[None]).sum(-1)
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_adder_weights_on_input_grid(bits: int) -> None:
    torch.manual_seed(bits)
    quant = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
    m = AdderConv2d(2, 3, 3, 1, 1, weight_bits=bits)
    with torch.no_grad():
        m.weight.mul_(3.0)
    qx = quant(torch.randn(2, 2, 5, 5))
    y = m(qx)
    scale = float(qx.scale)
    assert float(m.input_scale) == scale
    w = m.effective_weight().detach().numpy()
    q = w / scale
    np.testing.assert_allclose(q, np.round(q), atol=1e-5)
    assert q.min() >= -(2 ** (bits - 1)) and q.max() <= 2 ** (bits - 1) - 1
    np.testing.assert_array_equal(w, to_adder_weights(m.weight.detach().numpy(), scale, bits))
    ref = _adder_conv_np(qx.value.detach().numpy(), w, 1, 1)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-5, atol=1e-4)


def test_adder_linear_gradients_tiny_case() -> None:
    x = torch.tensor([[0.5, -2.0, 0.1]], requires_grad=True)
    m = AdderLinear(3, 2, eta=0.2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.0, 1.0, -0.3], [2.0, -1.5, 0.1]]))
    g = torch.tensor([[1.0, -2.0]])
    (m(x) * g).sum().backward()
    xn, wn, gn = x.detach().numpy(), m.weight.detach().numpy(), g.numpy()
    raw = np.einsum("no,nk->ok", gn, xn) - wn * gn.sum(0)[:, None]  # sum g * (x - w)
    want_w = raw * 0.2 * math.sqrt(raw.size) / np.linalg.norm(raw)
    want_x = np.einsum("no,nok->nk", gn, np.clip(wn[None] - xn[:, None], -1, 1))
    assert m.weight.grad is not None and x.grad is not None
    np.testing.assert_allclose(m.weight.grad.numpy(), want_w, rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), want_x, rtol=1e-5)
    # the scaled gradient has norm eta * sqrt(numel)
    assert float(m.weight.grad.norm()) == pytest.approx(0.2 * math.sqrt(6), rel=1e-5)
    # and it is not the true gradient sign(x - w) of -|x - w| (AdderNet rule, not autograd)
    assert not np.allclose(m.weight.grad.numpy(), np.einsum(
        "no,nok->ok", gn, np.sign(xn[:, None] - wn[None])))


def test_adder_conv_gradients_match_bruteforce() -> None:
    torch.manual_seed(4)
    stride, pad, k = 2, 1, 3
    m = AdderConv2d(2, 3, k, stride, pad, eta=0.2)
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    y = m(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    xn, wn, gn = x.detach().numpy(), m.weight.detach().numpy(), g.numpy()
    xp = np.pad(xn, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    raw = np.zeros_like(wn)
    gx = np.zeros_like(xp)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            win = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            gij = gn[:, :, i, j]  # (N, O)
            raw += np.einsum("no,nchw->ochw", gij, win) - wn * gij.sum(0)[:, None, None, None]
            gx[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "no,nochw->nchw", gij, np.clip(wn[None] - win[:, None], -1, 1))
    want_w = raw * 0.2 * math.sqrt(raw.size) / np.linalg.norm(raw)
    assert m.weight.grad is not None and x.grad is not None
    np.testing.assert_allclose(m.weight.grad.numpy(), want_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), gx[:, :, pad:-pad, pad:-pad], rtol=1e-4,
                               atol=1e-5)


def test_adder_quantized_weight_gets_straight_through_gradient() -> None:
    torch.manual_seed(5)
    quant = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
    m = AdderLinear(4, 2, weight_bits=4)
    m(quant(torch.randn(3, 4))).sum().backward()
    assert m.weight.grad is not None and bool(m.weight.grad.abs().sum() > 0)


# -- adder on a quantization grid (threshold kernel) --------------------------------------


@pytest.mark.parametrize("scale", [0.25, 0.4, 0.0371])
@pytest.mark.parametrize("lo,hi", [(0, 1), (0, 15), (-8, 7)])
@pytest.mark.parametrize("k,stride,pad", [(1, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 2)])
def test_adder_grid_kernel_bit_exact_against_reference(scale: float, lo: int, hi: int, k: int,
                                                       stride: int, pad: int) -> None:
    """Inputs and weights on the grid of a per-tensor scale (powers of two and not):
    the exact (evaluation) kernel equals the numpy reference bit for bit, the training
    kernel within float32 rounding."""
    torch.manual_seed(k * 7 + stride + hi)
    s = torch.tensor(scale)
    x = torch.randint(lo, hi + 1, (2, 3, 7, 6)).float() * s
    w = torch.randint(-8, 8, (4, 3, k, k)).float() * s  # also outside the input range
    grid = _Grid.of(x, s)
    assert grid is not None and grid.weight_codes(w) is not None
    ref = adder_conv_reference(x.numpy(), w.numpy(), None, [k, k], [stride, stride],
                               [pad] * 4, 1, [1, 1])
    np.testing.assert_array_equal(adder_conv2d(x, w, s, stride, pad, exact=True).numpy(), ref)
    y = adder_conv2d(x, w, s, stride, pad, exact=False).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6 * scale * float(np.abs(ref).max()))


@pytest.mark.parametrize("scale", [0.25, 0.4])
@pytest.mark.parametrize("levels", [2, 4, 16])
def test_adder_grid_kernel_gradients_equal_direct_kernel(scale: float, levels: int) -> None:
    """The threshold kernel's backward (conv weight gradient, per-level transposed
    convolution of HardTanh) gives the direct kernel's gradients."""
    torch.manual_seed(levels)
    s = torch.tensor(scale)
    x = torch.randint(0, levels, (3, 4, 6, 6)).float() * s
    w = torch.randint(-4, 4, (5, 4, 3, 3)).float() * s
    grads = []
    for sc in (s, None):  # None: no grid, the direct (cdist/einsum) kernel
        xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = adder_conv2d(xa, wa, sc, 2, 1, eta=0.2)
        g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        (y * g).sum().backward()
        assert xa.grad is not None and wa.grad is not None
        grads.append((y.detach(), xa.grad, wa.grad))
    for a, b in zip(grads[0], grads[1], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_adder_grid_detection_refuses_off_grid_and_wide_inputs() -> None:
    s = torch.tensor(0.5)
    assert _Grid.of(torch.tensor([0.0, 0.5, 1.0]), s) is not None
    assert _Grid.of(torch.tensor([0.0, 0.5, 1.1]), s) is None  # not a grid point
    assert _Grid.of(torch.arange(0, 200).float() * s, s) is None  # too many levels
    assert _Grid.of(torch.tensor([0.0, 0.5]), None) is None
    assert _Grid.of(torch.tensor([0.0, 0.5]), torch.tensor(0.0)) is None
    grid = _Grid.of(torch.tensor([0.0, 0.5, 1.0]), s)
    assert grid is not None and grid.weight_codes(torch.tensor([0.25])) is None


@pytest.mark.parametrize("bits", [2, 4])
def test_adder_modules_after_brevitas_relu_bit_exact(bits: int) -> None:
    """The real path: a Brevitas QuantReLU (learned float scale) feeds AdderConv2d and
    AdderLinear; in eval mode the outputs equal the numpy references exactly."""
    torch.manual_seed(bits)
    act = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
    conv = AdderConv2d(3, 4, 3, 1, 1, weight_bits=4)
    lin = AdderLinear(12, 5, weight_bits=4)
    qx = act(torch.randn(2, 3, 5, 5) * 3)
    qv = act(torch.randn(2, 12) * 3)
    conv.eval()
    lin.eval()
    assert _Grid.of(qx.value, qx.scale) is not None
    y = conv(qx).detach().numpy()
    ref = adder_conv_reference(qx.value.detach().numpy(), conv.export_weight.numpy(), None,
                               [3, 3], [1, 1], [1, 1, 1, 1], 1, [1, 1])
    np.testing.assert_array_equal(y, ref)
    z = lin(qv).detach().numpy()
    np.testing.assert_array_equal(
        z, adder_matmul_reference(qv.value.detach().numpy(), lin.export_weight.numpy()))


# -- export -----------------------------------------------------------------------------


def _export_and_run(mod: nn.Module, x: torch.Tensor, tmp: Path, dynamo: bool
                    ) -> tuple[ModelWrapper, np.ndarray, np.ndarray]:
    net = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True), mod)
    net.train()
    net(x)
    net.eval()
    ref = net(x).detach().numpy()
    path = tmp / "m.onnx"
    export_qonnx(net, x, export_path=str(path), dynamo=dynamo)
    model = cleanup_model(ModelWrapper(onnx.load(str(path))))
    out = execute_onnx(model, {model.graph.input[0].name: x.numpy()})
    return model, ref, out[model.graph.output[0].name]


CASES = [
    ("ShiftConv", lambda: ShiftConv2d(2, 3, 3, 2, 1, weight_bits=4), (1, 2, 6, 6)),
    ("AdderConv", lambda: AdderConv2d(2, 3, 3, 1, 1, weight_bits=4), (1, 2, 6, 6)),
    ("ShiftMatMul", lambda: ShiftLinear(6, 3, weight_bits=3), (2, 6)),
    ("AdderMatMul", lambda: AdderLinear(6, 3, weight_bits=8), (2, 6)),
]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("op_type,make,shape", CASES, ids=[c[0] for c in CASES])
def test_export_emits_custom_op_and_matches_torch(op_type: str, make, shape, dynamo: bool,
                                                 tmp_path: Path) -> None:
    torch.manual_seed(6)
    mod = make()
    model, ref, out = _export_and_run(mod, torch.randn(*shape), tmp_path, dynamo)
    nodes = [n for n in model.graph.node if n.op_type == op_type]
    assert len(nodes) == 1
    node = nodes[0]
    assert node.domain == DOMAIN
    attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}
    assert attrs["weight_bits"] == mod.weight_bits
    w = model.get_initializer(node.input[1])
    assert w is not None
    if "Conv" in op_type:
        assert attrs["kernel_shape"] == [3, 3]
        assert attrs["strides"] == [mod.stride] * 2
        assert attrs["pads"] == [mod.padding] * 4
        assert attrs["group"] == 1 and attrs["dilations"] == [1, 1]
        assert w.shape == tuple(mod.weight.shape)
    else:
        assert w.shape == (mod.in_features, mod.out_features)  # (K, N)
    if op_type.startswith("Shift"):
        assert is_shift_weights(w, mod.weight_bits)
    else:  # adder weights lie on the input's grid
        scale = float(mod.input_scale)
        assert scale > 0
        np.testing.assert_allclose(w / scale, np.round(w / scale), atol=1e-4)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
