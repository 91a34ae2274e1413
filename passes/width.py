"""Width passes: remove output channels of layers, consistently through the whole graph.

A *channel group* is a set of tensors that share one channel axis: the output of a layer
(Conv, Gemm, MatMul or a hybrid op) and everything that carries its channels on, through
channel-wise ops (BatchNormalization, Relu, Quant, MultiThreshold, pools, Mul/Add with a
constant, depthwise Conv, ...) and shape-only ops (Flatten, Reshape, Transpose,
Squeeze). An elementwise op with two channel-carrying inputs (a residual ``Add``) joins
their groups: both branches, and every layer writing into either, must keep the same
channels. Removing channels from a group slices

- the output axis of each *producer* (weights, per-channel quantizer scales, bias),
- every per-channel parameter on the way (BN statistics, per-channel Quant scales,
  thresholds, constants of Mul/Add, depthwise weights and their ``group``),
- the input axis of each *reader* (the next Conv's weight axis 1; for a Gemm/MatMul
  after a Flatten, the rows of the kept channels' features),

and rewrites the shapes of the tensors in the group. Weight ``Quant`` nodes stay in place:
their float weights (and per-channel scales) are sliced, so bit widths and quantization
grids are unchanged.

`SetChannelWidth(selector, multiplier)` keeps ``max(1, round(C0 * multiplier))`` of the
``C0`` channels the group had before any width pass (read from the metadata, so applying
the same multiplier twice is a no-op). Kept channels are ranked by the L1 norm of the
producers' output-channel weights (each producer normalised by its mean, so layers of
different scale count equally; ``rank="first"`` keeps the first channels instead) and
stay in their original order. Channels can only be removed: a multiplier above the
current width is an error (train a wider network instead).

Without a trained network the kept channels compute exactly what they computed before;
the removed channels' contributions to the readers are gone, which is what channel
pruning does. The test suite checks that the sliced graph equals the original with the
readers' weights of the removed channels set to zero (for multiplication and shift
readers, whose zero weights contribute nothing).

*Compensation* (``activations=``, for trained networks that are not fine-tuned): a
removed channel's contribution to a reader is not zero on average (ReLU outputs are
positive), so removing it shifts every later pre-activation. Given the readers' input
activations on a calibration batch (`layer_inputs`), the pass restores each reader's
per-channel output statistics (over the batch and the output pixels) with a per-channel
``Mul`` and ``Add`` right after the reader (FINN's streamlining absorbs them into the
thresholds). ``compensate="affine"`` (the default) restores the mean and the standard
deviation the output had before; ``compensate="mean"`` only adds the removed channels'
mean contribution (exact for the mean). Both work for every op kind (the contribution of
a set of input channels is the layer applied to those channels alone, adder layers
included); the metadata records each compensated reader.

qonnx has ``qonnx.transformation.pruning.PruneChannels`` (sparsity masks propagated and
removed). It needs static weights (no weight ``Quant`` nodes: it asks for cleanup with
``preserve_qnt_ops=False``), has no rule for Flatten/Reshape before a MatMul, Gemm or
nashc's hybrid ops, and stops on assertions; hence this pass. On graphs both accept the
results agree (tested).

Groups that cannot be sliced (they reach a graph output, a Concat, an op this pass does
not know, a grouped non-depthwise Conv) are marked with the reason; selecting a layer of
such a group raises `PassError` naming the node and op type.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

from nashc.passes.graph import (
    QUANT_DOMAINS,
    PassError,
    record_metadata,
    select_nodes,
    weight_values,
)
from nashc.runtime.load import COMPUTE_OP_TYPES

__all__ = ["ChannelGroup", "channel_groups", "layer_inputs", "SliceChannels",
           "SetChannelWidth"]

CONV_OPS = ("Conv", "ShiftConv", "AdderConv")
FC_OPS = ("Gemm", "MatMul", "ShiftMatMul", "AdderMatMul")
# ops whose output carries their first input's channels unchanged
CHANNELWISE = ("BatchNormalization", "Relu", "Clip", "Sigmoid", "Tanh", "Identity", "Neg",
               "Abs", "Floor", "Ceil", "Round", "Sign", "LeakyRelu", "Quant",
               "BipolarQuant", "Trunc", "MultiThreshold", "MaxPool", "AveragePool",
               "GlobalAveragePool", "GlobalMaxPool", "Dropout", "Cast")
# ops with two data inputs that combine elementwise
ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Max", "Min")
SHAPE_OPS = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")
META_KEY = "SetChannelWidth"


@dataclass(frozen=True)
class _Chan:
    """Where a group's channels sit in a tensor: feature index along ``axis`` is
    ``o * (C * inner) + c * inner + i`` for channel ``c`` (plain NCHW: outer=inner=1)."""

    gid: int
    axis: int
    outer: int = 1
    inner: int = 1

    def plain(self) -> bool:
        return self.outer == 1 and self.inner == 1

    def features(self, kept: np.ndarray, channels: int) -> np.ndarray:
        """Indices along ``axis`` that belong to the ``kept`` channels."""
        o = np.arange(self.outer)[:, None, None] * (channels * self.inner)
        c = np.asarray(kept)[None, :, None] * self.inner
        i = np.arange(self.inner)[None, None, :]
        return (o + c + i).reshape(-1)


@dataclass
class ChannelGroup:
    """Tensors sharing one channel axis (see module docstring)."""

    channels: int
    producers: list[str] = field(default_factory=list)  # layer node names
    readers: list[str] = field(default_factory=list)  # layer node names reading the group
    blocked: list[str] = field(default_factory=list)  # why the group cannot be sliced


@dataclass
class _Analysis:
    tensors: dict[str, _Chan]
    parent: list[int]
    sizes: list[int]
    blocked: dict[int, list[str]]
    # (node, input index, where the channels sit in that input's value): per-channel
    # parameters (BN statistics, scales, thresholds, biases, constants)
    params: list[tuple[NodeProto, int, _Chan]]
    producers: list[tuple[NodeProto, int]]  # (layer node, gid)
    readers: list[tuple[NodeProto, _Chan]]
    depthwise: list[tuple[NodeProto, int]]

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int, where: NodeProto) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.sizes[ra] != self.sizes[rb]:
            raise PassError(f"node {where.name!r} ({where.op_type}): joins {self.sizes[ra]} "
                            f"and {self.sizes[rb]} channels")
        self.parent[rb] = ra
        self.blocked.setdefault(ra, []).extend(self.blocked.pop(rb, []))

    def block(self, chan: _Chan, why: str) -> None:
        self.blocked.setdefault(self.find(chan.gid), []).append(why)

    def root_groups(self) -> dict[int, ChannelGroup]:
        out: dict[int, ChannelGroup] = {}
        for g in range(len(self.parent)):
            r = self.find(g)
            if r not in out:
                out[r] = ChannelGroup(self.sizes[r], blocked=list(self.blocked.get(r, [])))
        for node, g in self.producers:
            out[self.find(g)].producers.append(node.name)
        for node, chan in self.readers:
            out[self.find(chan.gid)].readers.append(node.name)
        return out


def _attr(node: NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _desc(node: NodeProto) -> str:
    return f"node {node.name!r} ({node.op_type})"


def _weight_shape(model: ModelWrapper, node: NodeProto) -> tuple[int, ...]:
    try:
        return tuple(weight_values(model, node.input[1])[0].shape)
    except PassError as err:
        raise PassError(f"{_desc(node)}: {err}") from None


def _out_axis(node: NodeProto) -> int:
    """The weight axis of a layer's output channels."""
    if node.op_type in CONV_OPS:
        return 0
    if node.op_type == "Gemm" and int(_attr(node, "transB", 0)):
        return 0
    return 1


def _in_axis(node: NodeProto) -> int:
    return 1 - _out_axis(node) if node.op_type in FC_OPS else 1


def _is_depthwise(node: NodeProto, wshape: tuple[int, ...]) -> bool:
    g = int(_attr(node, "group", 1))
    return node.op_type in CONV_OPS and g > 1 and len(wshape) == 4 and wshape[1] == 1 \
        and wshape[0] == g


def _analyse(model: ModelWrapper) -> _Analysis:
    an = _Analysis({}, [], [], {}, [], [], [], [])
    outputs = {o.name for o in model.graph.output}

    def new_group(size: int) -> int:
        an.parent.append(len(an.parent))
        an.sizes.append(size)
        return len(an.parent) - 1

    def dynamic(t: str) -> bool:
        return bool(t) and model.get_initializer(t) is None and \
            not _constant_quant(model, t)

    for node in model.graph.node:
        ins = [(k, t, an.tensors[t]) for k, t in enumerate(node.input) if t in an.tensors]
        op = node.op_type
        if op in COMPUTE_OP_TYPES:
            wshape = _weight_shape(model, node)
            if _is_depthwise(node, wshape) and ins and ins[0][0] == 0:
                chan = ins[0][2]
                if not chan.plain() or chan.axis != 1:
                    an.block(chan, f"{_desc(node)} reads the channels in another layout")
                an.depthwise.append((node, chan.gid))
                an.tensors[node.output[0]] = chan
                continue
            if ins and ins[0][0] == 0:
                chan = ins[0][2]
                if op in CONV_OPS:
                    if int(_attr(node, "group", 1)) != 1:
                        an.block(chan, f"{_desc(node)} is a grouped convolution")
                    elif not chan.plain() or chan.axis != 1:
                        an.block(chan, f"{_desc(node)} reads the channels in another layout")
                elif chan.axis != len(model.get_tensor_shape(node.input[0]) or ()) - 1:
                    an.block(chan, f"{_desc(node)} reduces over another axis")
                an.readers.append((node, chan))
            g = new_group(int(wshape[_out_axis(node)]))
            an.producers.append((node, g))
            rank = len(model.get_tensor_shape(node.output[0]) or ())
            an.tensors[node.output[0]] = _Chan(g, 1 if op in CONV_OPS else max(rank - 1, 1))
            _params_of(model, node, an, an.tensors[node.output[0]], first=2)
        elif not ins:
            continue
        elif op in CHANNELWISE:
            k0, t0, chan = ins[0]
            if k0 != 0:
                for _, _, c in ins:
                    an.block(c, f"{_desc(node)} takes the channels as a parameter")
                continue
            if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool") and \
                    (chan.axis != 1 or not chan.plain()):
                an.block(chan, f"{_desc(node)} pools a tensor whose channel axis is not 1")
            an.tensors[node.output[0]] = chan
            _params_of(model, node, an, chan, first=1)
        elif op in ELEMENTWISE:
            dyn = [(k, t) for k, t in enumerate(node.input) if dynamic(t)]
            chans = [c for _, _, c in ins]
            if len(dyn) == 2 and len(chans) == 2:
                a, b = chans
                if (a.axis, a.outer, a.inner) != (b.axis, b.outer, b.inner):
                    an.block(a, f"{_desc(node)} joins the channels in two layouts")
                an.union(a.gid, b.gid, node)
            elif len(dyn) == 2:
                for c in chans:
                    an.block(c, f"{_desc(node)} combines the channels with a tensor of no "
                             "known channel layout")
            an.tensors[node.output[0]] = chans[0]
            if len(dyn) == 1:
                _params_of(model, node, an, chans[0], first=0)
        elif op in SHAPE_OPS:
            chan = ins[0][2]
            new = _reshaped(model, node, chan) if ins[0][0] == 0 else None
            if new is None:
                an.block(chan, f"{_desc(node)} moves the channel axis in a way this pass "
                         "cannot follow")
            else:
                an.tensors[node.output[0]] = new
        else:
            for _, _, c in ins:
                an.block(c, f"{_desc(node)} is not a channel-wise op this pass knows")
    for t, chan in an.tensors.items():
        if t in outputs:
            an.block(chan, f"tensor {t!r} is a graph output (its channels are the "
                     "network's outputs)")
    return an


def _constant_quant(model: ModelWrapper, t: str) -> bool:
    prod = model.find_producer(t)
    return prod is not None and prod.op_type in ("Quant", "BipolarQuant") and \
        prod.domain in QUANT_DOMAINS and \
        all(model.get_initializer(i) is not None for i in prod.input)


def _params_of(model: ModelWrapper, node: NodeProto, an: _Analysis, chan: _Chan,
               first: int) -> None:
    """Registers the constant inputs (from index ``first``) that are per-channel for
    ``chan``; blocks the group if one is per-feature in a layout we cannot slice."""
    shape = model.get_tensor_shape(node.output[0]) or []
    for k in range(first, len(node.input)):
        t = node.input[k]
        val = model.get_initializer(t) if t else None
        if val is None and t and _constant_quant(model, t):
            val = weight_values(model, t)[0]  # e.g. a quantized bias
        if val is None:
            continue
        if node.op_type == "BatchNormalization" or (node.op_type == "MultiThreshold" and k == 1):
            if val.shape[0] > 1:
                an.params.append((node, k, _Chan(chan.gid, 0, chan.outer, chan.inner)))
            continue
        if node.op_type in COMPUTE_OP_TYPES:  # bias: (C,) for a Conv, (N,) or (1, N) for a Gemm
            if val.size > 1:
                an.params.append((node, k, _Chan(chan.gid, val.ndim - 1)))
            continue
        ax = chan.axis - (len(shape) - val.ndim)
        if val.ndim == 0 or val.size == 1 or ax < 0 or val.shape[ax] == 1:
            continue
        an.params.append((node, k, _Chan(chan.gid, ax, chan.outer, chan.inner)))


def _reshaped(model: ModelWrapper, node: NodeProto, chan: _Chan) -> _Chan | None:
    shp_in = list(model.get_tensor_shape(node.input[0]) or [])
    shp_out = list(model.get_tensor_shape(node.output[0]) or [])
    if not shp_in or not shp_out:
        return None
    if node.op_type == "Transpose":
        perm = list(_attr(node, "perm", list(reversed(range(len(shp_in))))))
        return _Chan(chan.gid, perm.index(chan.axis), chan.outer, chan.inner) \
            if chan.plain() else None
    if len(shp_out) == 2 and shp_out[0] == shp_in[0] and chan.axis >= 1:
        # flatten everything after the batch axis
        outer = int(np.prod(shp_in[1:chan.axis], dtype=np.int64)) * chan.outer
        inner = int(np.prod(shp_in[chan.axis + 1:], dtype=np.int64)) * chan.inner
        return _Chan(chan.gid, 1, outer, inner)
    if not chan.plain():
        return None
    # only size-1 axes added or removed: follow the channel axis among the others
    big_in = [(i, d) for i, d in enumerate(shp_in) if d != 1]
    big_out = [(i, d) for i, d in enumerate(shp_out) if d != 1]
    if [d for _, d in big_in] != [d for _, d in big_out]:
        return None
    for (i, _), (j, _) in zip(big_in, big_out):
        if i == chan.axis:
            return _Chan(chan.gid, j)
    return None


def channel_groups(model: ModelWrapper) -> list[ChannelGroup]:
    """The channel groups of a graph (producers in graph order)."""
    model = model.transform(SortGraph())
    return list(_analyse(model).root_groups().values())


# -- slicing --------------------------------------------------------------------------


def _take(model: ModelWrapper, node: NodeProto, k: int, axis: int, idx: np.ndarray) -> None:
    """Replaces input ``k`` of ``node`` (an initializer) by its slice along ``axis``."""
    old = node.input[k]
    val = model.get_initializer(old)
    assert val is not None
    new = model.make_new_valueinfo_name()
    model.set_initializer(new, np.take(val, idx, axis=axis))
    dt = model.get_tensor_datatype(old)
    model.set_tensor_datatype(new, dt)
    node.input[k] = new
    if not model.find_consumers(old):
        model.del_initializer(old)


def _slice_const(model: ModelWrapper, node: NodeProto, k: int, axis: int,
                 idx: np.ndarray) -> None:
    """Slices the constant input ``k`` of ``node`` along ``axis``: an initializer, or the
    float values and per-channel parameters of the Quant producing it from initializers
    (copied first if other nodes read it)."""
    t = node.input[k]
    if model.get_initializer(t) is not None:
        _take(model, node, k, axis, idx)
        return
    q = model.find_producer(t)
    assert q is not None
    if len(model.find_consumers(t)) > 1:  # shared quantizer: give this node its own
        q2 = helper.make_node(q.op_type, list(q.input), [model.make_new_valueinfo_name()],
                              name=model.make_new_valueinfo_name(), domain=q.domain)
        q2.attribute.extend(q.attribute)
        model.graph.node.insert(list(model.graph.node).index(q) + 1, q2)
        model.set_tensor_datatype(q2.output[0], model.get_tensor_datatype(t))
        node.input[k] = q2.output[0]
        q = q2
    rank = np.asarray(model.get_initializer(q.input[0])).ndim
    for i in range(len(q.input)):
        val = np.asarray(model.get_initializer(q.input[i]))
        ax = axis - (rank - val.ndim)
        if i == 0 or (val.ndim > 0 and ax >= 0 and val.shape[ax] > 1):
            _take(model, q, i, ax if i else axis, idx)
    shape = list(np.asarray(model.get_initializer(q.input[0])).shape)
    model.set_tensor_shape(q.output[0], shape)


def _slice_weight(model: ModelWrapper, node: NodeProto, axis: int, idx: np.ndarray) -> None:
    """Slices a layer's weights (input 1) along ``axis``."""
    _slice_const(model, node, 1, axis, idx)


def _rank_channels(model: ModelWrapper, producers: list[NodeProto], channels: int,
                   rank: str) -> np.ndarray:
    """Channel indices ordered by importance (most important first)."""
    if rank == "first" or not producers:
        return np.arange(channels)
    score = np.zeros(channels, dtype=np.float64)
    for node in producers:
        w = np.moveaxis(weight_values(model, node.input[1])[0], _out_axis(node), 0)
        l1 = np.abs(w.reshape(channels, -1)).sum(axis=1).astype(np.float64)
        mean = l1.mean()
        score += l1 / mean if mean > 0 else l1
    return np.argsort(-score, kind="stable")


def _apply_slices(model: ModelWrapper, an: _Analysis, kept: dict[int, np.ndarray],
                  acts: dict[str, np.ndarray] | None = None,
                  mode: str = "affine") -> list[dict[str, Any]]:
    """Slices every group root in ``kept`` to the given (sorted) channel indices; with
    ``acts``, compensates the readers (module docstring). Returns compensation records."""
    comp = _compensations(model, an, kept, acts, mode) if acts else []
    sizes = {r: an.sizes[r] for r in kept}
    for node, g in an.producers:
        r = an.find(g)
        if r in kept:
            _slice_weight(model, node, _out_axis(node), kept[r])
    for node, chan in an.readers:
        r = an.find(chan.gid)
        if r in kept:
            _slice_weight(model, node, _in_axis(node), chan.features(kept[r], sizes[r]))
    for node, g in an.depthwise:
        r = an.find(g)
        if r in kept:
            _slice_weight(model, node, 0, kept[r])
            for a in node.attribute:
                if a.name == "group":
                    a.i = len(kept[r])
    for node, k, chan in an.params:
        r = an.find(chan.gid)
        if r in kept:
            _slice_const(model, node, k, chan.axis, chan.features(kept[r], sizes[r]))
    for t, chan in an.tensors.items():
        r = an.find(chan.gid)
        if r in kept:
            shape = list(model.get_tensor_shape(t) or [])
            if shape:
                shape[chan.axis] = chan.outer * len(kept[r]) * chan.inner
                model.set_tensor_shape(t, shape)
    records = []
    producer_group = {n.name: an.find(g) for n, g in an.producers}
    for node, scale, bias in comp:  # after slicing: the reader's outputs may be sliced too
        own = producer_group.get(node.name)
        if own is not None and own in kept:
            scale, bias = scale[kept[own]], bias[kept[own]]
        _affine_after(model, node, scale, bias)
        records.append({"reader": node.name, "mode": mode,
                        "scale": [float(scale.min()), float(scale.max())],
                        "bias_max_abs": float(np.abs(bias).max())})
    return records


def layer_inputs(model: ModelWrapper, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The input activation of every layer on ``batch`` (N samples of the graph input,
    run one by one in onnxruntime): tensor name -> array with N rows."""
    from nashc.runtime.golden import SampleRunner

    wanted = list(dict.fromkeys(n.input[0] for n in model.graph.node
                                if n.op_type in COMPUTE_OP_TYPES))
    acts = SampleRunner(model, wanted)(batch)
    return {t: acts[t] for t in wanted}


def _layer_out(model: ModelWrapper, node: NodeProto, x: np.ndarray,
               axis_idx: np.ndarray) -> np.ndarray:
    """The layer's output (bias excluded) computed from the input features ``axis_idx``
    alone (float64): what those features contribute, for every op kind."""
    from nashc.runtime.ops import adder_conv_reference, adder_matmul_reference, conv_reference

    w = weight_values(model, node.input[1])[0]
    if node.op_type in CONV_OPS:
        xs, ws = x[:, axis_idx], w[:, axis_idx]
        kw: dict[str, Any] = {
              "kernel_shape": list(_attr(node, "kernel_shape", list(w.shape[2:]))),
              "strides": list(_attr(node, "strides", [1, 1])),
              "pads": list(_attr(node, "pads", [0, 0, 0, 0])), "group": 1,
              "dilations": list(_attr(node, "dilations", [1, 1]))}
        ref = adder_conv_reference if node.op_type == "AdderConv" else conv_reference
        return ref(xs, ws, None, **kw).astype(np.float64)
    wk = np.take(w, axis_idx, axis=_in_axis(node))
    if _out_axis(node) == 0:
        wk = wk.T  # Gemm transB: (N, K) -> (K, N)
    xs = x.reshape(len(x), -1)[:, axis_idx]
    y = adder_matmul_reference(xs, wk) if node.op_type == "AdderMatMul" else xs @ wk
    if node.op_type == "Gemm":
        y = y * float(_attr(node, "alpha", 1.0))
    return np.asarray(y, dtype=np.float64)


def _channel_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes = (0, 2, 3) if y.ndim == 4 else (0,)
    return y.mean(axis=axes), y.std(axis=axes)


def _compensations(model: ModelWrapper, an: _Analysis, kept: dict[int, np.ndarray],
                   acts: dict[str, np.ndarray], mode: str
                   ) -> list[tuple[NodeProto, np.ndarray, np.ndarray]]:
    """(reader, scale, bias) per output channel for every reader whose input group is
    sliced and whose calibration activation has the group's current size: ``mean`` adds
    the removed features' mean contribution; ``affine`` also rescales so the output keeps
    its per-channel standard deviation on the calibration batch."""
    out = []
    for node, chan in an.readers:
        r = an.find(chan.gid)
        x = acts.get(node.input[0])
        if r not in kept or x is None:
            continue
        size = an.sizes[r]
        axis_len = x.shape[1] if node.op_type in CONV_OPS else int(np.prod(x.shape[1:]))
        if axis_len != chan.outer * size * chan.inner:
            continue  # activations of another width (the group was sliced before)
        gone = chan.features(np.setdiff1d(np.arange(size), kept[r]), size)
        removed = _layer_out(model, node, x, gone)
        if mode == "mean":
            bias = _channel_stats(removed)[0]
            out.append((node, np.ones_like(bias), bias))
            continue
        full = _layer_out(model, node, x, np.arange(axis_len))
        m_full, s_full = _channel_stats(full)
        m_kept, s_kept = _channel_stats(full - removed)
        scale = np.where(s_kept > 1e-9 * np.maximum(s_full, 1e-30), s_full / np.maximum(
            s_kept, 1e-300), 1.0)
        out.append((node, scale, m_full - scale * m_kept))
    return out


def _affine_after(model: ModelWrapper, node: NodeProto, scale: np.ndarray,
                  bias: np.ndarray) -> None:
    """Inserts ``node.output * scale + bias`` (per output channel) right after ``node``
    (the Mul only when some scale is not 1)."""
    out = node.output[0]
    shape = model.get_tensor_shape(out)
    rank = len(shape) if shape else 2
    cshape = (1, -1) + (1,) * (rank - 2) if rank > 2 else (-1,)
    pos = list(model.graph.node).index(node) + 1
    t = model.make_new_valueinfo_name()
    node.output[0] = t
    if shape is not None:
        model.set_tensor_shape(t, shape)
    if np.any(scale != 1.0):
        sname, t2 = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
        model.set_initializer(sname, scale.astype(np.float32).reshape(cshape))
        model.graph.node.insert(pos, helper.make_node(
            "Mul", [t, sname], [t2], name=f"{node.name}_compensation_scale"))
        if shape is not None:
            model.set_tensor_shape(t2, shape)
        t, pos = t2, pos + 1
    bname = model.make_new_valueinfo_name()
    model.set_initializer(bname, bias.astype(np.float32).reshape(cshape))
    model.graph.node.insert(pos, helper.make_node("Add", [t, bname], [out],
                                                  name=f"{node.name}_compensation"))


def _originals(model: ModelWrapper) -> dict[str, int]:
    """Layer -> its channel count before the first width pass (from the metadata)."""
    raw = model.get_metadata_prop(f"nashc.{META_KEY}")
    out: dict[str, int] = {}
    for rec in json.loads(raw) if raw else []:
        for layer in rec.get("layers", []):
            out.setdefault(layer, int(rec["from_channels"]))
    return out


def _check_sliceable(an: _Analysis, root: int, layer: NodeProto) -> None:
    why = an.blocked.get(root)
    if why:
        raise PassError(f"{_desc(layer)}: its output channels cannot be changed: "
                        + "; ".join(dict.fromkeys(why)))


class SliceChannels(Transformation):
    """Replaces the output channels of the given layers (and their channel groups) with
    the given subsets: ``{layer name: kept channel indices}``."""

    def __init__(self, keep: dict[str, list[int]],
                 activations: dict[str, np.ndarray] | None = None,
                 compensate: str = "affine") -> None:
        super().__init__()
        self.keep = {k: sorted(int(i) for i in v) for k, v in keep.items()}
        self.activations = activations
        self.compensate = _check_mode(compensate)

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        model = model.transform(SortGraph())
        an = _analyse(model)
        by_name = {n.name: (n, g) for n, g in an.producers}
        kept: dict[int, np.ndarray] = {}
        for name, idx in self.keep.items():
            if name not in by_name:
                raise PassError(f"no layer named {name!r} in the graph")
            node, g = by_name[name]
            r = an.find(g)
            arr = np.asarray(idx, dtype=np.int64)
            if len(arr) == 0 or arr.min() < 0 or arr.max() >= an.sizes[r] or \
                    len(set(idx)) != len(idx):
                raise PassError(f"{_desc(node)}: kept channels must be distinct indices in "
                                f"[0, {an.sizes[r]}), at least one")
            if r in kept and not np.array_equal(kept[r], arr):
                raise PassError(f"{_desc(node)}: its channel group was given two different "
                                "channel sets")
            if len(arr) < an.sizes[r]:
                _check_sliceable(an, r, node)
                kept[r] = arr
        _slice_and_record(model, an, kept, {"rank": "given"}, self.activations,
                          self.compensate)
        return model, False


def _check_mode(mode: str) -> str:
    if mode not in ("affine", "mean"):
        raise PassError(f"compensate must be 'affine' or 'mean', got {mode!r}")
    return mode


def _slice_and_record(model: ModelWrapper, an: _Analysis, kept: dict[int, np.ndarray],
                      how: dict[str, Any], acts: dict[str, np.ndarray] | None,
                      mode: str) -> None:
    """Slices the groups in ``kept`` (`_apply_slices`) and records each in the metadata:
    its layers and readers, the channel counts, the kept indices, ``how`` they were
    chosen and the compensated readers."""
    groups = an.root_groups()
    records = [{"layers": groups[r].producers, "readers": groups[r].readers,
                "from_channels": an.sizes[r], "to_channels": len(idx),
                "kept": [int(i) for i in idx], **how} for r, idx in kept.items()]
    comp = {c["reader"]: c for c in _apply_slices(model, an, kept, acts, mode)}
    for rec in records:
        rec["compensated"] = [comp[r] for r in rec["readers"] if r in comp]
    if records:
        record_metadata(model, META_KEY, records)


class SetChannelWidth(Transformation):
    """Replaces the output channels of selected layers with ``round(C0 * multiplier)`` of
    them (C0: before any width pass), slicing their channel groups through the graph."""

    def __init__(self, selector: str, multiplier: float, rank: str = "l1",
                 activations: dict[str, np.ndarray] | None = None,
                 compensate: str = "affine") -> None:
        super().__init__()
        self.activations = activations
        self.compensate = _check_mode(compensate)
        if not (isinstance(multiplier, (int, float)) and 0 < multiplier and
                math.isfinite(multiplier)):
            raise PassError(f"width multiplier must be a positive number, got {multiplier!r}")
        if rank not in ("l1", "first"):
            raise PassError(f"rank must be 'l1' or 'first', got {rank!r}")
        self.selector = selector
        self.multiplier = float(multiplier)
        self.rank = rank

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        model = model.transform(SortGraph())
        an = _analyse(model)
        selected = {n.name for n in select_nodes(model, self.selector, COMPUTE_OP_TYPES)}
        originals = _originals(model)
        groups = an.root_groups()
        kept: dict[int, np.ndarray] = {}
        nodes = {n.name: n for n, _ in an.producers}
        for node, g in an.producers:
            r = an.find(g)
            if node.name not in selected or r in kept:
                continue
            now = an.sizes[r]
            c0 = max(originals.get(p, now) for p in groups[r].producers)
            target = max(1, int(round(c0 * self.multiplier)))
            if target == now:
                continue
            if target > now:
                raise PassError(f"{_desc(node)}: width {self.multiplier:g} needs {target} "
                                f"channels but the layer has {now} (of {c0} originally); "
                                "this pass only removes channels")
            _check_sliceable(an, r, node)
            order = _rank_channels(model, [nodes[p] for p in groups[r].producers], now,
                                   self.rank)
            kept[r] = np.sort(order[:target])
        _slice_and_record(model, an, kept, {"rank": self.rank, "multiplier": self.multiplier},
                          self.activations, self.compensate)
        return model, False
