"""PyTorch modules for the hybrid (multiplication-reduced) layers, usable inside a
Brevitas network and exported to our QONNX custom ops.

- `ShiftConv2d` / `ShiftLinear` (DeepShift): the forward pass uses the weight
  ``sign(w) * 2^round(log2|w|)``, magnitude clamped to ``[2^-(2^(b-1)-1), 1]`` for
  ``b = weight_bits`` (zeros stay zero), with a straight-through gradient to the
  full-precision weight.
- `AdderConv2d` / `AdderLinear` (AdderNet): ``y = -sum |x - w|`` over the receptive
  field. A custom autograd function gives the weight the full-precision gradient
  ``(x - w)`` rescaled adaptively to ``eta * sqrt(numel(w)) / ||grad||`` and the input
  the gradient ``HardTanh(w - x)``. When the input lies on a quantizer's grid (a
  Brevitas activation's output: every value ``code * scale`` with at most
  `MAX_GRID_LEVELS` codes) the op is dense BLAS work (`adder_conv2d`): ``sum |x - w|``
  is a convolution of thermometer codes plus window sums, the weight gradient a
  convolution weight gradient, the input gradient one transposed convolution per input
  level; exact in evaluation mode (bit-equal to the numpy reference). Other inputs use
  ``torch.cdist(p=1)`` on the unfolded input and a backward pass in chunks of output
  channels, so no ``N x O x K x L`` tensor is ever built whole. Shift layers need no
  kernel of their own: they are ordinary convolutions with power-of-two weights.
  When the input is a Brevitas ``QuantTensor`` its (per-tensor) scale is remembered in
  the buffer ``input_scale`` and the weights are rounded onto that grid (signed
  ``weight_bits``-bit integers times the scale, half to even, straight-through), so
  hardware computes ``-sum |x_int - w_int|``. With a plain tensor input and no scale
  seen yet, the weights stay in float.

Export: during ``torch.onnx.export`` (which ``brevitas.export.export_qonnx`` calls) the
modules emit nodes of domain ``nashc.runtime.ops`` (`ShiftConv`, `AdderConv`,
`ShiftMatMul`, `AdderMatMul`, see `nashc.runtime.ops`) whose weight input is the already
shifted / grid-rounded weight: under the TorchScript exporter (``dynamo=False``) through
the ``symbolic`` method of an autograd function, under the dynamo exporter
(``dynamo=True``) through ``torch.onnx.ops.symbolic``. Both are tested. Conv forms carry
``kernel_shape, strides, pads, group, dilations, weight_bits``; MatMul forms take
``W`` as (K, N) (the transposed ``nn.Linear`` weight) and have no bias.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import grad as _nn_grad

__all__ = [
    "DOMAIN",
    "forward_hooks",
    "ShiftConv2d",
    "ShiftLinear",
    "AdderConv2d",
    "AdderLinear",
    "HYBRID_MODULES",
    "shift_weight",
    "adder_weight",
    "adder_core",
    "adder_conv2d",
    "adaptive_grad_scale",
    "raw_adder_gradients",
]

DOMAIN = "nashc.runtime.ops"
_CHUNK_ELEMS = 1 << 22  # elements per chunk of the adder input-gradient computation


@contextlib.contextmanager
def forward_hooks(hooks: Iterable[tuple[nn.Module, Callable[..., Any]]]) -> Iterator[None]:
    """Registers each (module, hook) pair as a forward hook (``hook(module, inputs,
    output)``) for the duration of the block and removes them all on the way out, also
    on error: a module that is scored again (a pooled one) must not keep them."""
    handles = [m.register_forward_hook(h) for m, h in hooks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _unpack(x: Any) -> tuple[Tensor, Tensor | None]:
    """(value, per-tensor scale or None) of a Tensor or Brevitas QuantTensor."""
    if isinstance(x, Tensor):
        return x, None
    value = getattr(x, "value", None)
    if value is None:
        raise TypeError(f"expected a Tensor or QuantTensor, got {type(x).__name__}")
    scale = getattr(x, "scale", None)
    if scale is not None and scale.numel() != 1:
        scale = None  # only per-tensor input grids are supported
    return value, scale


def _exporting_dynamo() -> bool:
    return bool(torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export())


def _exporting_torchscript() -> bool:
    return bool(torch.onnx.is_in_onnx_export() and not torch.compiler.is_exporting())


# -- weight transforms -----------------------------------------------------------------


class _ShiftWeightFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: Tensor, bits: int) -> Tensor:
        lo = -(2 ** (bits - 1) - 1)
        mag = w.abs()
        e = torch.clamp(torch.round(torch.log2(torch.where(mag > 0, mag, 1.0))), lo, 0)
        return torch.where(mag > 0, torch.sign(w) * torch.exp2(e), torch.zeros_like(w))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def shift_weight(w: Tensor, bits: int) -> Tensor:
    """``sign(w) * 2^round(log2|w|)``, magnitude clamped to ``[2^-(2^(b-1)-1), 1]``;
    straight-through gradient."""
    if bits < 2:
        raise ValueError(f"shift weights need at least 2 bits, got {bits}")
    out: Tensor = _ShiftWeightFn.apply(w, bits)
    return out


class _GridWeightFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: Tensor, scale: Tensor, bits: int) -> Tensor:
        q = torch.clamp(torch.round(w / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return q * scale

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad, None, None


def adder_weight(w: Tensor, scale: Tensor | None, bits: int) -> Tensor:
    """``w`` rounded onto the grid ``scale * [-2^(b-1), 2^(b-1)-1]`` (half to even, as
    `nashc.runtime.ops.to_adder_weights`), straight-through; ``w`` itself if ``scale``
    is None or not positive."""
    if scale is None:
        return w
    s = scale.detach().reshape(())
    if not bool(s > 0):
        return w
    out: Tensor = _GridWeightFn.apply(w, s, bits)
    return out


#: Whether adder weight gradients get AdderNet's adaptive scaling (`raw_adder_gradients`
#: turns it off, e.g. for a score that compares gradient magnitudes across layer types).
_ADAPTIVE = [True]


@contextlib.contextmanager
def raw_adder_gradients() -> Iterator[None]:
    """Within this block adder layers give their weights the plain gradient
    ``sum g * (X - W)`` without `adaptive_grad_scale` (whose norm is ``eta*sqrt(numel)``
    whatever reaches the layer)."""
    old = _ADAPTIVE[0]
    _ADAPTIVE[0] = False
    try:
        yield
    finally:
        _ADAPTIVE[0] = old


def adaptive_grad_scale(grad: Tensor, eta: float) -> Tensor:
    """AdderNet's adaptive learning-rate scaling: ``grad * eta * sqrt(numel) / ||grad||_2``."""
    norm = grad.norm(p=2)
    if not bool(norm > 0):
        return grad
    return grad * (eta * math.sqrt(grad.numel()) / norm)


# -- adder arithmetic --------------------------------------------------------------------


class _AdderFn(torch.autograd.Function):
    """cols (N, K, L), w (O, K) -> y (N, O, L) = -sum_k |cols[n,k,l] - w[o,k]|."""

    @staticmethod
    def forward(ctx: Any, cols: Tensor, w: Tensor, eta: float, exact: bool) -> Tensor:
        ctx.save_for_backward(cols, w)
        ctx.eta = eta
        a, b = cols.transpose(1, 2).contiguous(), w.unsqueeze(0).contiguous()
        if exact:
            # float64 sums rounded once, as the QONNX reference computes them: a float32
            # sum in another order can flip the next quantizer at a rounding tie
            return -torch.cdist(a.double(), b.double(), p=1).transpose(1, 2).to(cols.dtype)
        return -torch.cdist(a, b, p=1).transpose(1, 2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        cols, w = ctx.saved_tensors
        g = grad  # (N, O, L)
        grad_cols = grad_w = None
        if ctx.needs_input_grad[1]:
            # full-precision gradient dY/dW = X - W
            gw = torch.einsum("nol,nkl->ok", g, cols) - w * g.sum(dim=(0, 2)).unsqueeze(1)
            grad_w = adaptive_grad_scale(gw, ctx.eta) if _ADAPTIVE[0] else gw
        if ctx.needs_input_grad[0]:
            # dY/dX = HardTanh(W - X), accumulated in chunks of output channels
            grad_cols = _adder_input_grad(cols, w, g)
        return grad_cols, grad_w, None, None


def adder_core(cols: Tensor, w: Tensor, eta: float = 0.2, exact: bool = False) -> Tensor:
    """``y[n,o,l] = -sum_k |cols[n,k,l] - w[o,k]|`` with AdderNet's gradients; `exact`
    sums in float64 (evaluation mode: bit-exact against the QONNX reference). The direct
    (``torch.cdist``) kernel for inputs on no small grid; `adder_conv2d` is the fast path."""
    out: Tensor = _AdderFn.apply(cols, w, eta, exact)
    return out


# -- adder arithmetic on a quantization grid (dense BLAS) ---------------------------------

#: Largest number of grid levels (input codes incl. 0) the threshold kernel takes; inputs
#: spread over more levels (e.g. 8-bit activations) use the direct kernel.
MAX_GRID_LEVELS = 32


class _Grid:
    """The input as integer codes on the grid of its quantizer: every entry of ``x`` is
    exactly ``levels[code - lo]`` with ``levels = fl32(arange(lo, hi + 1) * scale)`` and
    ``lo <= 0 <= hi`` (so zero padding is a grid point)."""

    def __init__(self, codes: Tensor, lo: int, levels: Tensor) -> None:
        self.codes = codes  # float tensor of code - lo, in [0, T]
        self.lo = lo
        self.levels = levels  # (T + 1,) float32 values of the levels
        self.t = int(levels.numel()) - 1  # number of thresholds

    @staticmethod
    def of(x: Tensor, scale: Tensor | float | None) -> _Grid | None:
        """The grid of ``x``, or None if ``x`` is not exactly on ``scale``'s grid within
        `MAX_GRID_LEVELS` levels (then the direct kernel is used)."""
        if scale is None or x.dtype != torch.float32 or x.numel() == 0:
            return None
        s = torch.as_tensor(scale, dtype=x.dtype).detach().reshape(())
        if not bool(torch.isfinite(s)) or not bool(s > 0):
            return None
        codes = torch.round(x.detach() / s)
        lo, hi = min(int(codes.min()), 0), max(int(codes.max()), 0)
        if hi - lo + 1 > MAX_GRID_LEVELS:
            return None
        levels = torch.arange(lo, hi + 1, dtype=x.dtype) * s
        codes -= lo
        if not torch.equal(levels[codes.long()], x.detach()):
            return None
        return _Grid(codes, lo, levels)

    def weight_codes(self, w: Tensor) -> tuple[Tensor, Tensor] | None:
        """(codes of ``w`` clamped into the grid's range, ``|w - clamped|`` in float64), or
        None if a clamped weight is not a grid level."""
        wd = w.detach()
        lv = self.levels
        wc = torch.clamp(wd, float(lv[0]), float(lv[-1]))
        s = lv[1] - lv[0] if self.t > 0 else torch.ones(())
        q = torch.round((wc - lv[0]) / s).clamp(0, self.t)
        if not torch.equal(lv[q.long()], wc):
            return None
        return q, (wd.double() - wc.double()).abs()


def _thermometer(codes: Tensor, t: int) -> Tensor:
    """``[codes > j]`` for j = 0..t-1 of codes (N, C, H, W), as float32 0/1 of shape
    (N, C*T, H, W) (channel ``c*T + j``) in channels-last memory, which oneDNN
    convolves about twice as fast as the default layout here."""
    n, c, h, w = codes.shape
    table = (torch.arange(t + 1).unsqueeze(1) > torch.arange(t)).to(torch.float32)
    # a row lookup writes the output once (a compare-then-convert writes it twice)
    cl = F.embedding(codes.permute(0, 2, 3, 1).long(), table)  # (N, H, W, C, T)
    return cl.reshape(n, h, w, c * t).permute(0, 3, 1, 2)


#: Above this many thresholds an exact (float64) adder on a grid with unequal level steps
#: uses the direct kernel: one count per threshold costs more than it saves.
_PER_THRESHOLD_MAX = 4


def _grid_adder_forward(grid: _Grid, wq: Tensor, wres: Tensor, stride: int, pad: int,
                        exact: bool) -> Tensor | None:
    """``-sum |x - w|`` of a (zero-padded) conv window by the threshold decomposition.

    For levels ``g_0 < ... < g_T`` and ``a, b`` on them, ``|a - b| = sum_j d_j |[a > g_j] -
    [b > g_j]|`` with ``d_j = g_{j+1} - g_j``, and ``|[a>g]-[b>g]| = [a>g] + [b>g] -
    2 [a>g][b>g]``: the cross term is an ordinary convolution of the thermometer codes
    of the input (C*T channels) with those of the weights, so the whole op is dense BLAS
    work (oneDNN) of T times a convolution. Weights outside the input range are clamped
    into it; ``|w - clamp(w)|`` is a per-output constant. The counts are exact integers in
    float32; with `exact` they are combined with the level steps in float64, which sums
    the same terms as the float64 reference exactly, so both round to the same float32.
    Returns None (use the direct kernel) for an exact sum on a grid with unequal steps
    and more than `_PER_THRESHOLD_MAX` thresholds."""
    xc = grid.codes
    t = grid.t
    o, c, k, _ = wq.shape
    zero = float(-grid.lo)  # code of the value 0 (the padding)
    if pad:
        xc = F.pad(xc, (pad, pad, pad, pad), value=zero)
    n, _, hp, wp = xc.shape
    if t == 0:  # every input and clamped weight is 0
        oh, ow = (hp - k) // stride + 1, (wp - k) // stride + 1
        y = wres.sum(dim=(1, 2, 3)).reshape(1, o, 1, 1).expand(n, o, oh, ow)
        return (-y).to(torch.float32).contiguous()
    steps = (grid.levels[1:].double() - grid.levels[:-1].double())
    uniform = bool(torch.all(steps == steps[0]))
    if exact and not uniform:
        if t > _PER_THRESHOLD_MAX:
            return None
        return _grid_adder_per_threshold(xc, wq, wres, steps, stride).to(torch.float32)
    a = _thermometer(xc, t)  # (N, C*T, Hp, Wp)
    b = _thermometer(wq, t)  # (O, C*T, k, k)
    ones = torch.ones(1, c, k, k)
    # one convolution: sum_k min(xq, wq) in code units
    m = F.conv2d(a, b, stride=stride)
    sx = F.conv2d(xc, ones, stride=stride)  # (N, 1, OH, OW) sum of codes
    sw = wq.sum(dim=(1, 2, 3)).reshape(1, o, 1, 1)
    d = sx + sw - 2.0 * m  # sum_k |xq - wq| in code units, exact integers
    res = wres.sum(dim=(1, 2, 3)).reshape(1, o, 1, 1)
    if exact:
        return (-(d.double() * steps[0] + res)).to(torch.float32)
    # training: level steps equal up to float32 rounding of code * scale
    step = float(grid.levels[1] - grid.levels[0]) if uniform else float(steps.mean())
    return -(d * step + res.to(torch.float32))


def _grid_adder_per_threshold(xc: Tensor, wq: Tensor, wres: Tensor, steps: Tensor,
                              stride: int) -> Tensor:
    """float64 ``-sum |x - w|`` with one count per threshold (a grouped convolution),
    for grids whose level steps differ (scales that are not powers of two)."""
    n, c, hp, wp = xc.shape
    o, _, k, _ = wq.shape
    t = int(steps.numel())
    th = torch.arange(t, dtype=xc.dtype).reshape(1, t, 1, 1, 1)
    at = (xc.unsqueeze(1) > th).to(torch.float32).reshape(n, t * c, hp, wp)
    bt = (wq.unsqueeze(0) > th.reshape(t, 1, 1, 1, 1)).to(torch.float32)  # (T, O, C, k, k)
    m = F.conv2d(at, bt.reshape(t * o, c, k, k), stride=stride, groups=t)  # (N, T*O, OH, OW)
    oh, ow = m.shape[2], m.shape[3]
    m = m.reshape(n, t, o, oh, ow)
    cx = F.conv2d(at, torch.ones(t, c, k, k), stride=stride, groups=t)  # (N, T, OH, OW)
    cw = bt.sum(dim=(2, 3, 4))  # (T, O)
    dt = cx.unsqueeze(2) + cw.reshape(1, t, o, 1, 1) - 2.0 * m  # exact counts
    y = torch.einsum("ntohw,t->nohw", dt.double(), steps)
    y = y + wres.sum(dim=(1, 2, 3)).reshape(1, o, 1, 1)
    return -y


class _AdderConvFn(torch.autograd.Function):
    """x (N, C, H, W), w (O, C, k, k) -> y (N, O, OH, OW) = -sum |xpad - w| per window."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, scale: Tensor | None, stride: int, pad: int,
                eta: float, exact: bool) -> Tensor:
        grid = _Grid.of(x, scale)
        wcodes = grid.weight_codes(w) if grid is not None else None
        ctx.save_for_backward(x, w)
        ctx.eta, ctx.stride, ctx.pad = eta, stride, pad
        ctx.grid = grid if wcodes is not None else None
        k = w.shape[-1]
        if grid is not None and wcodes is not None:
            y = _grid_adder_forward(grid, wcodes[0], wcodes[1], stride, pad, exact)
            if y is not None:
                return y
        n, _, h, wd = x.shape
        oh, ow = _conv_out_hw(h, wd, k, stride, pad)
        cols = F.unfold(x, k, padding=pad, stride=stride)
        return _AdderFn.forward(_NoCtx(), cols, w.reshape(w.shape[0], -1), eta,
                                exact).reshape(n, w.shape[0], oh, ow)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        stride, pad = ctx.stride, ctx.pad
        o, c, k, _ = w.shape
        grad_x = grad_w = None
        g = grad.contiguous()
        if ctx.needs_input_grad[1]:
            # full-precision gradient dY/dW = X - W: the convolution weight gradient
            gw = _nn_grad.conv2d_weight(x, w.shape, g, stride=stride, padding=pad)
            gw = gw - w * g.sum(dim=(0, 2, 3)).reshape(o, 1, 1, 1)
            grad_w = adaptive_grad_scale(gw, ctx.eta) if _ADAPTIVE[0] else gw
        if ctx.needs_input_grad[0]:
            grid = ctx.grid
            if grid is not None:
                # dY/dX = HardTanh(W - X): per input level v a transposed convolution
                # with HardTanh(W - g_v), then each input picks its own level
                lv = grid.levels
                v = int(lv.numel())
                h = F.hardtanh(w.unsqueeze(2) - lv.reshape(1, 1, v, 1, 1))  # (O, C, V, k, k)
                n, _, hh, ww = x.shape
                gx = _nn_grad.conv2d_input(
                    (n, c * v, hh, ww), h.reshape(o, c * v, k, k),
                    g.contiguous(memory_format=torch.channels_last), stride=stride,
                    padding=pad).contiguous()
                grad_x = torch.gather(gx.reshape(n, c, v, hh, ww), 2,
                                      grid.codes.long().unsqueeze(2)).squeeze(2)
            else:
                n, _, hh, ww = x.shape
                cols = F.unfold(x, k, padding=pad, stride=stride)
                gcols = _adder_input_grad(cols, w.reshape(o, -1), g.reshape(n, o, -1))
                grad_x = F.fold(gcols, (hh, ww), k, padding=pad, stride=stride)
        return grad_x, grad_w, None, None, None, None, None


class _NoCtx:
    """Stand-in context for calling `_AdderFn.forward` as a plain function."""

    def save_for_backward(self, *args: Any) -> None:
        pass


def _adder_input_grad(cols: Tensor, w: Tensor, g: Tensor) -> Tensor:
    """``sum_o g[n,o,l] HardTanh(w[o,k] - cols[n,k,l])`` in chunks of output channels."""
    n, k, length = cols.shape
    o = w.shape[0]
    step = max(1, _CHUNK_ELEMS // max(1, n * k * length))
    grad_cols = torch.zeros_like(cols)
    for o0 in range(0, o, step):
        wc = w[o0:o0 + step]  # (Oc, K)
        ht = F.hardtanh(wc.unsqueeze(0).unsqueeze(-1) - cols.unsqueeze(1))
        grad_cols += torch.einsum("nol,nokl->nkl", g[:, o0:o0 + step], ht)
    return grad_cols


def adder_conv2d(x: Tensor, w: Tensor, scale: Tensor | float | None = None, stride: int = 1,
                 padding: int = 0, eta: float = 0.2, exact: bool = False) -> Tensor:
    """AdderNet convolution ``y[n,o,i,j] = -sum_{c,kh,kw} |xpad[n,c,i*s+kh,j*s+kw] -
    w[o,c,kh,kw]|`` for x (N, C, H, W), w (O, C, k, k), zero padding; returns
    (N, O, OH, OW) with AdderNet's gradients (weights: ``X - W`` rescaled by
    `adaptive_grad_scale`; input: ``HardTanh(W - X)``).

    When every input is on the grid of `scale` (``fl32(code * scale)``, at most
    `MAX_GRID_LEVELS` codes including 0, as after a Brevitas activation quantizer) and
    the weights are grid levels after clamping to the input range (`adder_weight`
    rounds them there), forward and backward are convolutions of thermometer codes
    (`_grid_adder_forward`); otherwise the direct ``torch.cdist`` kernel. `exact` sums in
    float64 and rounds once: bit-exact against `nashc.runtime.ops.adder_conv_reference`
    on either path."""
    out: Tensor = _AdderConvFn.apply(x, w, scale, int(stride), int(padding), eta, exact)
    return out


# -- ONNX emission -------------------------------------------------------------------------


def _conv_attrs(k: int, stride: int, pad: int, bits: int) -> dict[str, Any]:
    return {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [pad] * 4,
            "group": 1, "dilations": [1, 1], "weight_bits": bits}


class _EmitFn(torch.autograd.Function):
    """Export-only: its forward returns a zero tensor of the right shape (the exporter
    only needs shapes), its symbolic emits our custom op (TorchScript exporter)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None, op_type: str,
                attrs: dict[str, Any], out_shape: tuple[int, ...]) -> Tensor:
        return x.new_zeros(out_shape)

    @staticmethod
    def symbolic(g: Any, x: Any, w: Any, b: Any, op_type: str, attrs: dict[str, Any],
                 out_shape: tuple[int, ...]) -> Any:
        kw: dict[str, Any] = {}
        for key, val in attrs.items():
            kw[f"{key}_i"] = val
        inputs = [x, w] if b is None else [x, w, b]
        out = g.op(f"{DOMAIN}::{op_type}", *inputs, **kw)
        out.setType(x.type().with_sizes(list(out_shape)))
        return out


def _emit(op_type: str, x: Tensor, w: Tensor, b: Tensor | None, attrs: dict[str, Any],
          out_shape: tuple[int, ...]) -> Tensor:
    if _exporting_dynamo():
        inputs = (x, w) if b is None else (x, w, b)
        out: Tensor = torch.onnx.ops.symbolic(f"{DOMAIN}::{op_type}", inputs, attrs,
                                              dtype=x.dtype, shape=out_shape, version=1)
        return out
    out = _EmitFn.apply(x, w, b, op_type, attrs, out_shape)
    return out


def _remember_scale(buffer: Tensor, scale: Tensor | None) -> Tensor:
    """Stores a seen input scale in `buffer`; returns the scale to use."""
    if scale is not None:
        buffer.copy_(scale.detach().reshape(()))
        return scale
    return buffer


def _conv_out_hw(h: int, w: int, k: int, stride: int, pad: int) -> tuple[int, int]:
    return (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


# -- modules --------------------------------------------------------------------------------


class _AdderWeights:
    """Adder weights live on the grid of the layer's input: the last input scale seen is
    kept in the `input_scale` buffer (shared by AdderConv2d and AdderLinear)."""

    weight: nn.Parameter
    weight_bits: int
    input_scale: Tensor

    def _scale(self, scale: Tensor | None) -> Tensor:
        return _remember_scale(self.input_scale, scale)

    def effective_weight(self, scale: Tensor | None = None) -> Tensor:
        return adder_weight(self.weight, self.input_scale if scale is None else scale,
                            self.weight_bits)


def _reset_hybrid(m: Any) -> None:
    """The constructor's weight initialisation of a hybrid layer, repeated in place:
    kaiming uniform (a = sqrt(5), as nn.Conv2d/nn.Linear), then kaiming normal for adder
    layers (AdderNet), bias zero, the remembered input scale cleared and the export
    weight taken from the new weights."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
        if m.kind == "adder":
            nn.init.kaiming_normal_(m.weight)
            m.input_scale.zero_()
        if m.bias is not None:
            m.bias.zero_()
        w = m.effective_weight()
        m.export_weight = (w if w.dim() == 4 else w.t()).detach().clone().contiguous()


class _HybridConvBase(nn.Module):
    kind = "shift"
    export_weight: Tensor  # buffer: the weight of the last forward pass, as exported

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False, weight_bits: int = 4) -> None:
        super().__init__()
        if weight_bits < 2:
            raise ValueError(f"{type(self).__name__} needs weight_bits >= 2, got {weight_bits}")
        self.in_channels = in_ch
        self.out_channels = out_ch
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)
        self.weight_bits = int(weight_bits)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, self.kernel_size, self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def reset_parameters(self) -> None:
        """Draws the initial weights again, as the constructor does (the same draws from
        torch's global generator, in the same order; bias zero): a module reused for
        another candidate (`nashc.runtime.build.ModulePool`) starts as a new one would."""
        _reset_hybrid(self)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
                f"weight_bits={self.weight_bits}")

    def _attrs(self) -> dict[str, Any]:
        return _conv_attrs(self.kernel_size, self.stride, self.padding, self.weight_bits)

    def _out_shape(self, x: Tensor) -> tuple[int, ...]:
        oh, ow = _conv_out_hw(int(x.shape[2]), int(x.shape[3]), self.kernel_size, self.stride,
                              self.padding)
        return (int(x.shape[0]), self.out_channels, oh, ow)


class ShiftConv2d(_HybridConvBase):
    """Conv2d whose weights are signed powers of two (DeepShift, straight-through)."""

    kind = "shift"

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False, weight_bits: int = 4) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias, weight_bits)
        self.register_buffer("export_weight", self.effective_weight().detach().clone(),
                             persistent=False)

    def effective_weight(self) -> Tensor:
        return shift_weight(self.weight, self.weight_bits)

    def forward(self, x: Any) -> Tensor:
        v, _ = _unpack(x)
        if torch.onnx.is_in_onnx_export():
            return _emit("ShiftConv", v, self.export_weight, self.bias, self._attrs(),
                         self._out_shape(v))
        w = self.effective_weight()
        self.export_weight = w.detach().clone()
        return F.conv2d(v, w, self.bias, self.stride, self.padding)


class AdderConv2d(_AdderWeights, _HybridConvBase):
    """AdderNet convolution ``y = -sum |x - w|`` (zero padding contributes ``|0 - w|``)."""

    kind = "adder"

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False, weight_bits: int = 4,
                 eta: float = 0.2) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias, weight_bits)
        self.eta = eta
        nn.init.kaiming_normal_(self.weight)
        self.register_buffer("input_scale", torch.zeros(()))
        self.register_buffer("export_weight", self.weight.detach().clone(), persistent=False)

    def forward(self, x: Any) -> Tensor:
        v, scale = _unpack(x)
        if torch.onnx.is_in_onnx_export():
            return _emit("AdderConv", v, self.export_weight, self.bias, self._attrs(),
                         self._out_shape(v))
        s = self._scale(scale)
        w = self.effective_weight(s)
        self.export_weight = w.detach().clone()
        y = adder_conv2d(v, w, s, self.stride, self.padding, self.eta, exact=not self.training)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y


class _HybridLinearBase(nn.Module):
    kind = "shift"
    export_weight: Tensor  # buffer: (K, N) weight of the last forward pass, as exported

    def __init__(self, in_f: int, out_f: int, bias: bool = False, weight_bits: int = 4) -> None:
        super().__init__()
        if weight_bits < 2:
            raise ValueError(f"{type(self).__name__} needs weight_bits >= 2, got {weight_bits}")
        self.in_features = in_f
        self.out_features = out_f
        self.weight_bits = int(weight_bits)
        self.weight = nn.Parameter(torch.empty(out_f, in_f))
        self.bias = nn.Parameter(torch.zeros(out_f)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def reset_parameters(self) -> None:
        """As `_HybridConvBase.reset_parameters`."""
        _reset_hybrid(self)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight_bits={self.weight_bits}")

    def _emit(self, op_type: str, v: Tensor, w: Tensor) -> Tensor:
        shape = (*[int(d) for d in v.shape[:-1]], self.out_features)
        y = _emit(op_type, v, w, None, {"weight_bits": self.weight_bits}, shape)
        if self.bias is not None:
            y = y + self.bias
        return y


class ShiftLinear(_HybridLinearBase):
    """Linear layer with signed power-of-two weights (DeepShift, straight-through)."""

    kind = "shift"

    def __init__(self, in_f: int, out_f: int, bias: bool = False, weight_bits: int = 4) -> None:
        super().__init__(in_f, out_f, bias, weight_bits)
        self.register_buffer("export_weight", self.effective_weight().detach().t().contiguous(),
                             persistent=False)

    def effective_weight(self) -> Tensor:
        return shift_weight(self.weight, self.weight_bits)

    def forward(self, x: Any) -> Tensor:
        v, _ = _unpack(x)
        if torch.onnx.is_in_onnx_export():
            return self._emit("ShiftMatMul", v, self.export_weight)
        w = self.effective_weight()
        self.export_weight = w.detach().t().contiguous()
        return F.linear(v, w, self.bias)


class AdderLinear(_AdderWeights, _HybridLinearBase):
    """AdderNet fully-connected layer ``y[..., o] = -sum_k |x[..., k] - w[o, k]|``."""

    kind = "adder"

    def __init__(self, in_f: int, out_f: int, bias: bool = False, weight_bits: int = 4,
                 eta: float = 0.2) -> None:
        super().__init__(in_f, out_f, bias, weight_bits)
        self.eta = eta
        nn.init.kaiming_normal_(self.weight)
        self.register_buffer("input_scale", torch.zeros(()))
        self.register_buffer("export_weight", self.weight.detach().t().contiguous(),
                             persistent=False)

    def forward(self, x: Any) -> Tensor:
        v, scale = _unpack(x)
        if torch.onnx.is_in_onnx_export():
            return self._emit("AdderMatMul", v, self.export_weight)
        s = self._scale(scale)
        w = self.effective_weight(s)
        self.export_weight = w.detach().t().contiguous()
        lead = v.shape[:-1]
        x4 = v.reshape(-1, self.in_features, 1, 1)
        w4 = w.reshape(self.out_features, self.in_features, 1, 1)
        y = adder_conv2d(x4, w4, s, 1, 0, self.eta, exact=not self.training)
        y = y.reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y


HYBRID_MODULES = (ShiftConv2d, ShiftLinear, AdderConv2d, AdderLinear)
