"""Networks from the AST as Brevitas modules, their QONNX export, and loading of
existing ONNX/QONNX models.

`build_module(net, choices)` turns a `ResolvedNetwork` into a Brevitas network:

- the input goes through a `QuantIdentity` with a constant scale of 1, so the network
  takes integer-valued inputs in the range of the declared input datatype (uint8:
  0..255) and the exported input tensor carries that datatype;
- conv -> `QuantConv2d` (or `ShiftConv2d` / `AdderConv2d`) -> `BatchNorm2d` ->
  `QuantReLU` (activation bits); fc -> `QuantLinear` (or `ShiftLinear` /
  `AdderLinear`) -> `BatchNorm1d` -> `QuantReLU` for hidden layers. Weights are
  per-tensor signed integers of the layer's weight bits, `bipolar` -> binary {-1, +1};
  no biases (BatchNorm follows). The last conv/fc layer of the network (normally the
  fc head) has no BatchNorm and no activation unless it is an adder layer, which keeps a
  `BatchNorm1d/2d` to bring its ``-sum|x - w|`` outputs into range (AdderNet practice);
- max pools -> `MaxPool2d`, avg pools and `global avg` -> Brevitas `TruncAvgPool2d`
  (floor truncation, as FINN requires; exported as AveragePool + Trunc), the input is flattened before the first fc;
- a residual block -> conv1/bn/relu, conv2/bn, shortcut (identity or `NAME.down`
  1x1 conv + bn); both branches go through one shared signed `QuantIdentity` (so they
  are on one grid), are added with a real elementwise add and re-quantized by a
  `QuantReLU`. The exported graph has a real `Add` of two branches.

`choices` maps layer names to a `LayerChoice` (operator, kernel, width multiplier,
weight/activation bits). The width of a residual block is the choice of the block's
name (`b1`); its conv1, conv2 and shortcut all use the block's scaled width; a block
with an identity shortcut (no `NAME.down`) keeps the channel count of its input, so its
own width choice has no effect (the add needs equal channels). Widths of
other layers are their own; the network's last layer keeps its output count. A kernel
choice keeps "same" padding (pad = kernel // 2) if the layer had it.

`export_qonnx_model(module, net, path)` exports with `brevitas.export.export_qonnx`
(TorchScript exporter by default, ``dynamo=True`` also works), runs qonnx's
`cleanup_model`, names every Conv/Gemm/MatMul/hybrid node after its layer (``stem``,
``b1.conv1``; each such node also carries ``doc_string = "nashc.layer=NAME"``), sets the
input's QONNX datatype and saves one self-contained ``.onnx`` file (external data is
loaded into memory first; no ``.onnx.data`` side file remains).

`load_onnx_network(path)` (in `nashc.runtime.load`, which needs no PyTorch; re-exported
here) loads QONNX or plain ONNX, rejects unsupported ops, cleans it up and names its
layers as the language does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import brevitas.nn as qnn
import onnx
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.export import export_qonnx
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFloat,
    SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst,
    TruncTo8bit,
    Uint8ActPerTensorFloat,
)
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model
from torch import Tensor, nn

from nashc.dsl.ast import DType, ResolvedLayer, ResolvedNetwork
from nashc.dsl.errors import NashcError
from nashc.runtime.load import (
    COMPUTE_OP_TYPES,
    LAYER_TAG,
    SUPPORTED_OPS,
    UnsupportedOpsError,
    layer_nodes,
    load_onnx_network,
    rename_tagged,
)
from nashc.runtime.modules import (
    AdderConv2d,
    AdderLinear,
    ShiftConv2d,
    ShiftLinear,
    forward_hooks,
)

__all__ = [
    "calibrate_batchnorm",
    "ModulePool",
    "reset_for_reuse",
    "LayerChoice",
    "NashNet",
    "ResidualBlock",
    "BuildError",
    "UnsupportedOpsError",
    "SUPPORTED_OPS",
    "COMPUTE_OP_TYPES",
    "LAYER_TAG",
    "build_module",
    "export_qonnx_model",
    "load_onnx_network",
    "layer_nodes",
]

OpKind = Literal["conv", "shift", "adder"]

class BuildError(NashcError):
    """A network cannot be built or exported as asked."""


@dataclass(frozen=True)
class LayerChoice:
    """What the search chose for one layer; None means "as declared"."""

    op: OpKind = "conv"
    kernel: int | None = None
    width: float = 1.0
    wbits: int | None = None
    abits: int | None = None


_DEFAULT_W = DType("int8")
_DEFAULT_A = DType("uint8")


# -- quantizer helpers ---------------------------------------------------------------------


def _input_quant(dtype: DType) -> nn.Module:
    """Constant scale 1: the input is given in integer units of its datatype."""
    if dtype.bipolar:
        raise BuildError("a bipolar network input is not supported")
    b = dtype.bits
    if dtype.signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=b,
                                 scaling_impl_type=ScalingImplType.CONST,
                                 scaling_init=float(2 ** (b - 1)), return_quant_tensor=True)
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=b,
                             scaling_impl_type=ScalingImplType.CONST,
                             scaling_init=float(2 ** b - 1), return_quant_tensor=True)


def _act(dtype: DType) -> nn.Module:
    if dtype.bipolar:
        return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                 return_quant_tensor=True)
    if dtype.signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=dtype.bits,
                                 return_quant_tensor=True)
    return qnn.QuantReLU(bit_width=dtype.bits, return_quant_tensor=True)


def _pooled_act(pool: Any, layer: str, dtype: DType) -> nn.Module:
    """`_act`, taken from `pool` (a `ModulePool`) when there is one."""
    return _take(pool, (layer, "act", dtype.name), _act, dtype)


def _weight_kw(dtype: DType) -> dict[str, Any]:
    if dtype.bipolar:
        return {"weight_quant": SignedBinaryWeightPerTensorConst}
    return {"weight_quant": Int8WeightPerTensorFloat, "weight_bit_width": dtype.bits}


def _hybrid_bits(layer: str, op: str, dtype: DType) -> int:
    if dtype.bipolar or dtype.bits < 2:
        raise BuildError(f"layer {layer!r}: {op} weights need at least 2 bits, got {dtype}")
    return dtype.bits


def _value(x: Any) -> Tensor:
    v = x if isinstance(x, Tensor) else x.value
    assert isinstance(v, Tensor)
    return v


def _conv(name: str, op: str, cin: int, cout: int, k: int, stride: int, pad: int,
          wdt: DType) -> nn.Module:
    if op == "conv":
        m: nn.Module = qnn.QuantConv2d(cin, cout, k, stride=stride, padding=pad, bias=False,
                                       **_weight_kw(wdt))
    elif op == "shift":
        m = ShiftConv2d(cin, cout, k, stride, pad, bias=False,
                        weight_bits=_hybrid_bits(name, op, wdt))
    elif op == "adder":
        m = AdderConv2d(cin, cout, k, stride, pad, bias=False,
                        weight_bits=_hybrid_bits(name, op, wdt))
    else:
        raise BuildError(f"layer {name!r}: unknown op {op!r} (expected conv, shift, adder)")
    m.nashc_layer = name  # type: ignore[assignment]
    return m


def _linear(name: str, op: str, fin: int, fout: int, wdt: DType) -> nn.Module:
    if op == "conv":
        m: nn.Module = qnn.QuantLinear(fin, fout, bias=False, **_weight_kw(wdt))
    elif op == "shift":
        m = ShiftLinear(fin, fout, bias=False, weight_bits=_hybrid_bits(name, op, wdt))
    elif op == "adder":
        m = AdderLinear(fin, fout, bias=False, weight_bits=_hybrid_bits(name, op, wdt))
    else:
        raise BuildError(f"layer {name!r}: unknown op {op!r} (expected conv, shift, adder)")
    m.nashc_layer = name  # type: ignore[assignment]
    return m


# -- stages ------------------------------------------------------------------------------


class _Stage(nn.Module):
    """compute -> [bn] -> [act], optionally flattening the input first."""

    def __init__(self, compute: nn.Module, bn: nn.Module | None, act: nn.Module | None,
                 flatten: bool = False) -> None:
        super().__init__()
        self.compute = compute
        self.bn = bn if bn is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()
        self.flatten = flatten

    def forward(self, x: Any) -> Any:
        if self.flatten:
            x = torch.flatten(x, 1)
        return self.act(self.bn(self.compute(x)))


class _Pool(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Any) -> Any:
        return self.pool(x)


class ResidualBlock(nn.Module):
    """conv1-bn-act, conv2-bn; shortcut identity or down-bn; shared quantizer; add; act."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, down: nn.Module | None,
                 c_mid: int, c_out: int, act1: nn.Module, add_quant: nn.Module,
                 act_out: nn.Module) -> None:
        super().__init__()
        self.conv1 = conv1
        self.bn1 = nn.BatchNorm2d(c_mid)
        self.act1 = act1
        self.conv2 = conv2
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = down
        self.bn_down = nn.BatchNorm2d(c_out) if down is not None else None
        self.add_quant = add_quant  # one quantizer for both branches: one grid
        self.act_out = act_out

    def forward(self, x: Any) -> Any:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.down is not None:
            assert self.bn_down is not None
            s: Any = self.bn_down(self.down(x))
        else:
            s = _value(x)
        out = _value(self.add_quant(y)) + _value(self.add_quant(s))
        return self.act_out(out)


class NashNet(nn.Module):
    """A network built from a `ResolvedNetwork`: input quantizer, then stages in order."""

    def __init__(self, name: str, input_shape: tuple[int, int, int], input_dtype: DType,
                 stages: list[tuple[str, nn.Module]],
                 input_quant: nn.Module | None = None) -> None:
        super().__init__()
        self.net_name = name
        self.input_shape = input_shape
        self.input_dtype = input_dtype
        self.input_quant = input_quant if input_quant is not None else \
            _input_quant(input_dtype)
        self.stages = nn.ModuleDict()
        self.stage_names: list[str] = []
        for lname, mod in stages:
            self.stages[_key(lname)] = mod
            self.stage_names.append(lname)

    def forward(self, x: Tensor) -> Tensor:
        y: Any = self.input_quant(x)
        for mod in self.stages.values():
            y = mod(y)
        return _value(y)

    def compute_layers(self) -> dict[str, nn.Module]:
        """Layer name -> its conv/fc module (QuantConv2d, ShiftLinear, ...)."""
        return {str(m.nashc_layer): m for m in self.modules() if hasattr(m, "nashc_layer")}


def _key(name: str) -> str:
    return name.replace(".", "__")


def _scaled(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


# -- module reuse across candidates --------------------------------------------------------


_REDRAWN = (nn.Conv2d, nn.Linear, ShiftConv2d, ShiftLinear, AdderConv2d, AdderLinear)


def _resettable(module: nn.Module) -> list[nn.Module]:
    """The submodules of `module` that `reset_for_reuse` touches, in module order."""
    return [sub for sub in module.modules()
            if isinstance(sub, (*_REDRAWN, nn.modules.batchnorm._BatchNorm))
            or (hasattr(sub, "collect_stats_steps") and hasattr(sub, "counter"))]


def reset_for_reuse(module: nn.Module, subs: list[nn.Module] | None = None,
                    params: list[nn.Parameter] | None = None) -> nn.Module:
    """Puts a built module back into the state its constructor left it in, drawing its
    weights again from torch's global generator in the same order the constructor did
    (conv/linear and hybrid layers' `reset_parameters`); BatchNorm parameters and running
    statistics reset; Brevitas runtime-statistics scalers (activation quantizers) back to
    "no statistics collected" (counter 0, buffer and value 1, as
    `brevitas.core.scaling.standalone.ParameterFromRuntimeStatsScaling.__init__` sets
    them); gradients cleared; training mode. `subs`, `params`: `_resettable(module)` and
    its parameters, when the caller keeps them. Returns `module`."""
    with torch.no_grad():
        for sub in _resettable(module) if subs is None else subs:
            if isinstance(sub, (*_REDRAWN, nn.modules.batchnorm._BatchNorm)):
                sub.reset_parameters()
            else:  # ParameterFromRuntimeStatsScaling (checked by `_resettable`)
                scaler: Any = sub
                scaler.counter = 0
                scaler.buffer.fill_(1.0)
                scaler.value.fill_(1.0)
    for p in module.parameters() if params is None else params:
        p.grad = None
    if not module.training:  # a whole-tree walk: only when some caller switched it to eval
        module.train()
    return module


class ModulePool:
    """Layer modules kept across the candidates of one search, so that each layer shape
    is built once ("build once per shape"): `build_module(..., pool=pool)` takes every
    quantized layer, activation quantizer and pool it needs from here by a key of the
    layer's name, role and constructor arguments, building it on the first request and
    `reset_for_reuse`-ing it on later ones. Because the reset draws the same weights at
    the same point of the build as construction would, a network built from the pool is
    bit-identical to a freshly built one for the same seed (tests/runtime/test_build_pool.py).

    A network built from a pool is valid until the next `build_module` from the same pool
    (its layers are handed out again); the coarse stage scores each candidate and drops
    it. The least recently used modules are dropped beyond `max_modules` modules or
    `max_bytes` bytes of parameters and buffers (default 256 MiB per process)."""

    def __init__(self, max_modules: int = 4096, max_bytes: int = 256 * 2 ** 20) -> None:
        self.max_modules = max_modules
        self.max_bytes = max_bytes
        # key -> (module, its resettable submodules, its parameters, its bytes)
        self._items: dict[tuple[Any, ...], tuple[nn.Module, list[nn.Module],
                                                 list[nn.Parameter], int]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def take(self, key: tuple[Any, ...], factory: Any) -> Any:
        """The module for `key`: reset for reuse when kept, else ``factory()``."""
        item = self._items.pop(key, None)
        if item is None:
            self.misses += 1
            mod = factory()
            size = sum(t.numel() * t.element_size()
                       for t in (*mod.parameters(), *mod.buffers()))
            item = (mod, _resettable(mod), list(mod.parameters()), size)
            self.bytes += size
        else:
            self.hits += 1
            reset_for_reuse(*item[:3])
        self._items[key] = item  # most recently used last
        while len(self._items) > 1 and (len(self._items) > self.max_modules
                                        or self.bytes > self.max_bytes):
            self.bytes -= self._items.pop(next(iter(self._items)))[3]
        return item[0]

    def __len__(self) -> int:
        return len(self._items)


def _take(pool: ModulePool | None, key: tuple[Any, ...], make: Any, *args: Any,
          **kwargs: Any) -> Any:
    """``make(*args, **kwargs)``, or the pool's module for `key` when there is a pool."""
    if pool is None:
        return make(*args, **kwargs)
    return pool.take(key, lambda: make(*args, **kwargs))


# -- build ---------------------------------------------------------------------------------


def build_module(net: ResolvedNetwork,
                 choices: Mapping[str, LayerChoice] | None = None,
                 pool: ModulePool | None = None) -> NashNet:
    """A Brevitas module for `net` with the per-layer `choices` applied; with `pool`, its
    layers come from (and stay in) the pool (`ModulePool`: the same module, reused)."""
    if net.input_shape is None or net.input_dtype is None:
        raise BuildError(f"network {net.name!r} has no input declaration"
                         + (" (it comes from an ONNX file)" if net.source else ""))
    choices = dict(choices or {})
    known = {layer.name for layer in net.layers}
    unknown = sorted(set(choices) - known)
    if unknown:
        raise BuildError(f"choices name unknown layers: {', '.join(unknown)}")

    def choice(name: str) -> LayerChoice:
        return choices.get(name, LayerChoice())

    def wdtype(layer: ResolvedLayer) -> DType:
        c = choice(layer.name)
        if c.wbits is not None:
            return DType(f"int{c.wbits}")
        return layer.weights or _DEFAULT_W

    def adtype(layer: ResolvedLayer, key: str | None = None) -> DType:
        c = choice(key or layer.name)
        if c.abits is not None:
            return DType(f"uint{c.abits}")
        return layer.activations or _DEFAULT_A

    def geometry(layer: ResolvedLayer) -> tuple[int, int, int]:
        k0 = layer.kernel or 1
        k = choice(layer.name).kernel or k0
        pad0 = layer.pad if layer.pad is not None else k0 // 2
        pad = k // 2 if pad0 == k0 // 2 else pad0
        return k, layer.stride or 1, pad

    compute = [ly for ly in net.layers if ly.kind in ("conv", "fc") and ly.parent is None]
    last = compute[-1].name if compute else None

    c, h, w = net.input_shape
    flat: int | None = None  # feature count once flattened
    stages: list[tuple[str, nn.Module]] = []
    quant_out = True  # does the running tensor carry a quant grid?
    layers = list(net.layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        i += 1
        if layer.kind == "conv":
            if flat is not None:
                raise BuildError(f"layer {layer.name!r}: conv after an fc layer")
            k, s, p = geometry(layer)
            cout = layer.out_shape[0] if layer.name == last else \
                _scaled(layer.out_shape[0], choice(layer.name).width)
            op = choice(layer.name).op
            wdt = wdtype(layer)
            conv = _take(pool, (layer.name, "conv", op, c, cout, k, s, p, wdt.name),
                         _conv, layer.name, op, c, cout, k, s, p, wdt)
            is_last = layer.name == last
            bn: nn.Module | None = (nn.BatchNorm2d(cout) if (not is_last or op == "adder")
                                    else None)
            act = None if is_last else _pooled_act(pool, layer.name, adtype(layer))
            stages.append((layer.name, _Stage(conv, bn, act)))
            c, h, w = cout, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            quant_out = not is_last
        elif layer.kind == "fc":
            fin = flat if flat is not None else c * h * w
            is_last = layer.name == last
            fout = layer.out_shape[0] if is_last else \
                _scaled(layer.out_shape[0], choice(layer.name).width)
            op = choice(layer.name).op
            wdt = wdtype(layer)
            lin = _take(pool, (layer.name, "fc", op, fin, fout, wdt.name),
                        _linear, layer.name, op, fin, fout, wdt)
            bn = nn.BatchNorm1d(fout) if (not is_last or op == "adder") else None
            act = None if is_last else _pooled_act(pool, layer.name, adtype(layer))
            stages.append((layer.name, _Stage(lin, bn, act, flatten=flat is None)))
            flat = fout
            quant_out = not is_last
        elif layer.kind in ("pool", "gap"):
            if flat is not None:
                raise BuildError(f"layer {layer.name!r}: pool after an fc layer")
            if layer.kind == "gap" or layer.kernel is None:
                kh, kw, sh, sw = h, w, 1, 1
                mode = "avg"
            else:
                kh = kw = layer.kernel
                sh = sw = layer.stride or layer.kernel
                mode = layer.mode or "max"
            if mode == "max":
                pool_mod: nn.Module = nn.MaxPool2d((kh, kw), (sh, sw))
            elif quant_out:
                # floor truncation: FINN's QONNX import accepts only rounding_mode FLOOR
                pool_mod = _take(pool, (layer.name, "truncavg", kh, kw, sh, sw),
                                 qnn.TruncAvgPool2d, (kh, kw), (sh, sw),
                                 trunc_quant=TruncTo8bit, return_quant_tensor=True)
            else:
                pool_mod = nn.AvgPool2d((kh, kw), (sh, sw))
            stages.append((layer.name, _Pool(pool_mod)))
            h, w = (h - kh) // sh + 1, (w - kw) // sw + 1
        elif layer.kind == "block":
            members: dict[str, ResolvedLayer] = {}
            while i < len(layers) and layers[i].parent == layer.name:
                members[layers[i].name.rsplit(".", 1)[-1]] = layers[i]
                i += 1
            if "conv1" not in members or "conv2" not in members:
                raise BuildError(f"block {layer.name!r} lacks its conv1/conv2 layers")
            if flat is not None:
                raise BuildError(f"block {layer.name!r} after an fc layer")
            c1, c2 = members["conv1"], members["conv2"]
            width = choice(layer.name).width
            # an identity shortcut forces the block to keep its input's (scaled) width
            cb = _scaled(c2.out_shape[0], width) if "down" in members else c
            k1, s1, p1 = geometry(c1)
            k2, s2, p2 = geometry(c2)
            op1, op2, wd1, wd2 = choice(c1.name).op, choice(c2.name).op, wdtype(c1), wdtype(c2)
            conv1 = _take(pool, (c1.name, "conv", op1, c, cb, k1, s1, p1, wd1.name),
                          _conv, c1.name, op1, c, cb, k1, s1, p1, wd1)
            conv2 = _take(pool, (c2.name, "conv", op2, cb, cb, k2, s2, p2, wd2.name),
                          _conv, c2.name, op2, cb, cb, k2, s2, p2, wd2)
            h1, w1 = (h + 2 * p1 - k1) // s1 + 1, (w + 2 * p1 - k1) // s1 + 1
            h2, w2 = (h1 + 2 * p2 - k2) // s2 + 1, (w1 + 2 * p2 - k2) // s2 + 1
            down = None
            if "down" in members:
                d = members["down"]
                kd, sd, pd = geometry(d)
                opd, wdd = choice(d.name).op, wdtype(d)
                down = _take(pool, (d.name, "conv", opd, c, cb, kd, sd, pd, wdd.name),
                             _conv, d.name, opd, c, cb, kd, sd, pd, wdd)
                hd, wd = (h + 2 * pd - kd) // sd + 1, (w + 2 * pd - kd) // sd + 1
            else:
                hd, wd = h, w
            if (hd, wd) != (h2, w2):
                raise BuildError(f"block {layer.name!r}: branch shapes {(h2, w2)} and "
                                 f"{(hd, wd)} differ")
            add = members.get("add")
            out_dt = adtype(add, layer.name) if add is not None else adtype(c2, layer.name)
            add_bits = max(2, out_dt.bits)
            add_quant = _take(pool, (layer.name, "add_quant", add_bits), qnn.QuantIdentity,
                              act_quant=Int8ActPerTensorFloat, bit_width=add_bits,
                              return_quant_tensor=True)
            block = ResidualBlock(conv1, conv2, down, cb, cb,
                                  _pooled_act(pool, c1.name, adtype(c1)), add_quant,
                                  _pooled_act(pool, layer.name, out_dt))
            stages.append((layer.name, block))
            c, h, w = cb, h2, w2
            quant_out = True
        elif layer.kind == "add":
            raise BuildError(f"layer {layer.name!r}: an add outside a residual block")
        else:
            raise BuildError(f"layer {layer.name!r}: unknown kind {layer.kind!r}")
    in_dt = net.input_dtype
    return NashNet(net.name, net.input_shape, in_dt, stages,
                   _take(pool, ("", "input", in_dt.name), _input_quant, in_dt))


# -- export --------------------------------------------------------------------------------


def _compute_order(module: nn.Module, dummy: Tensor) -> list[nn.Module]:
    """The compute modules (those with `nashc_layer`) in the order a forward calls them."""
    order: list[nn.Module] = []
    with forward_hooks((m, lambda mod, _i, _o: order.append(mod))
                       for m in module.modules() if hasattr(m, "nashc_layer")), \
            torch.no_grad():
        module(dummy)
    return order


def _kind_ok(mod: nn.Module, op_type: str) -> bool:
    if isinstance(mod, (qnn.QuantConv2d, ShiftConv2d, AdderConv2d)):
        return op_type in ("Conv", "ShiftConv", "AdderConv")
    return op_type in ("Gemm", "MatMul", "ShiftMatMul", "AdderMatMul")


def calibrate_batchnorm(module: nn.Module, batch: Tensor) -> nn.Module:
    """Sets every BatchNorm's running statistics from `batch` (a train-mode forward pass,
    cumulative averages) and leaves the module in eval mode; returns it.

    An untrained network has identity BatchNorms: adder layers' all-negative outputs then
    switch every following ReLU off and quantizer inputs sit on rounding ties, so neither
    estimates nor golden checks would say much. Calibrated statistics are what training
    starts from."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    with torch.no_grad():
        module(batch)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    module.eval()
    return module


def export_qonnx_model(module: nn.Module, net: ResolvedNetwork, path: str | Path,
                       dynamo: bool = False) -> ModelWrapper:
    """Exports `module` (built from `net`) to a cleaned, self-contained QONNX file at
    `path`, compute nodes named after their layers; returns the model."""
    if net.input_shape is None or net.input_dtype is None:
        raise BuildError(f"network {net.name!r} has no input shape to export with")
    path = Path(path)
    was_training = module.training
    module.eval()
    gen = torch.Generator().manual_seed(0)
    hi = 2 ** net.input_dtype.bits - 1
    dummy = torch.randint(0, hi + 1, (1, *net.input_shape), generator=gen).float()
    if net.input_dtype.signed:
        dummy = dummy - 2 ** (net.input_dtype.bits - 1)
    order = _compute_order(module, dummy)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_qonnx(module, dummy, export_path=str(raw), dynamo=dynamo)
        proto = onnx.load(str(raw), load_external_data=True)
    module.train(was_training)
    nodes = [n for n in proto.graph.node if n.op_type in COMPUTE_OP_TYPES]
    if len(nodes) != len(order) or not all(_kind_ok(m, n.op_type) for m, n in zip(order, nodes)):
        raise BuildError(
            "exported compute nodes do not match the network's layers: "
            f"{[n.op_type for n in nodes]} vs {[str(m.nashc_layer) for m in order]}")
    for mod, node in zip(order, nodes):
        node.doc_string = LAYER_TAG + str(mod.nashc_layer)
    model = cleanup_model(ModelWrapper(proto))
    rename_tagged(model)
    model.set_tensor_datatype(model.graph.input[0].name, DataType[net.input_dtype.qonnx_name])
    model.set_metadata_prop("nashc.network", net.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model.model, str(path), save_as_external_data=False)
    return model


