"""Semantic checks of a parsed `.nash` file and its resolution into a `Program`.

- the network: `repeat` expanded (copies get `_0`, `_1`, ... suffixes, outer index first),
  residual blocks expanded into `NAME.conv1`, `NAME.conv2`, `NAME.down` and `NAME.add`,
  shapes inferred and checked, datatypes inherited from the network defaults;
  or, for `network NAME from "file.onnx"`, the Conv/Gemm/MatMul nodes of that graph;
- the space: selectors must match, options must be valid, `Program.choices` computed;
- hardware, search and train: targets known, budgets and numbers in range.

Every error is a `NashSourceError` pointing at the offending statement or value.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from nashc.dsl.ast import (
    BlockStmt,
    BudgetItem,
    ConvStmt,
    DType,
    FcStmt,
    LayerStmt,
    NashFile,
    Network,
    PoolStmt,
    Pos,
    Program,
    RepeatStmt,
    ResolvedLayer,
    ResolvedNetwork,
    Space,
)
from nashc.dsl.errors import NashSourceError
from nashc.dsl.parser import DTYPE_NAMES, MAX_LAYERS, MAX_NESTING

__all__ = [
    "check_program",
    "check_budget",
    "resolve_network",
    "compute_choices",
    "onnx_layer_names",
    "dims_for_kind",
    "DEFAULT_WEIGHTS",
    "DEFAULT_ACTIVATIONS",
    "RESOURCES",
    "METRICS",
    "OP_OPTIONS",
    "MAX_LAYERS",
    "MAX_LAYER_WEIGHTS",
    "MAX_FEATURE_VALUES",
    "MAX_BATCH_VALUES",
    "MIN_CLOCK_MHZ",
    "MAX_CLOCK_MHZ",
    "DIGITS_IMAGES",
    "MAX_EXHAUSTIVE",
    "MAX_SEARCH_COUNT",
]

DEFAULT_WEIGHTS = DType("int8")
DEFAULT_ACTIVATIONS = DType("uint8")
RESOURCES = ("lut", "ff", "bram", "uram", "dsp")
METRICS = ("zero_shot", "fidelity")
OP_OPTIONS = ("conv", "shift", "adder")
MAX_WIDTH = 4.0
#: Clock range accepted (MHz): FINN's boards run their fabric at 100-300 MHz, none above
#: 1 GHz; below 1 MHz cycles-per-frame figures lose meaning.
MIN_CLOCK_MHZ, MAX_CLOCK_MHZ = 1.0, 1000.0
#: Weights of one layer (the widest candidate of the space): nashc builds every candidate
#: as a float32 PyTorch module, 2^27 weights are 512 MiB.
MAX_LAYER_WEIGHTS = 2**27
#: Values of one feature map (C*H*W of one frame, the widest candidate): the scoring
#: batch holds `batch` of them as float32.
MAX_FEATURE_VALUES = 2**24
#: Values of the zero-shot scoring batch (batch x input C*H*W): 2^28 float32 are 1 GiB.
MAX_BATCH_VALUES = 2**28
#: Images of scikit-learn's digits (`sklearn.datasets.load_digits`): 1797 8x8 images.
DIGITS_IMAGES = 1797
#: `strategy exhaustive` scores every candidate: at most this many
#: (`nashc.passes.nas.exhaustive`'s limit).
MAX_EXHAUSTIVE = 100_000
#: Largest `samples` and `population` (the search draws them before scoring) and
#: `generations`: a million candidates take days to score on this kind of machine.
MAX_SEARCH_COUNT = 1_000_000
COMPUTE_KINDS = ("conv", "fc", "block")

Shape = tuple[int, ...]


def _err(message: str, pos: Pos | None, expected: str | None = None) -> NashSourceError:
    return NashSourceError(message, pos, expected)


#: said where a K x K window does not fit a map one pixel high or wide
_NO_1D = ("; kernels and pools are square (K x K) in the language, so 1-D convolutions "
          "and pools (k x 1) are not expressible: load a 1-D model with "
          '`network NAME from "model.onnx"`')


def _vpos(stmt: object, key: str) -> Pos | None:
    """The position of one value of a statement, else of the statement."""
    vp = getattr(stmt, "value_pos", None) or {}
    return vp.get(key) or getattr(stmt, "pos", None)


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"


# --- network ---------------------------------------------------------------------------


@dataclass
class _Resolver:
    net: Network
    layers: list[ResolvedLayer] = field(default_factory=list)
    seen: dict[str, Pos | None] = field(default_factory=dict)

    @property
    def weights(self) -> DType:
        return self.net.weights or DEFAULT_WEIGHTS

    @property
    def activations(self) -> DType:
        return self.net.activations or DEFAULT_ACTIVATIONS

    def _name(self, name: str, pos: Pos | None) -> None:
        if name in self.seen:
            first = self.seen[name]
            where = f" (first at line {first.line})" if first is not None else ""
            raise _err(f"duplicate layer name '{name}'{where}", pos)
        self.seen[name] = pos

    def _positive(self, stmt: object, key: str, value: int, minimum: int = 1) -> None:
        if value < minimum:
            need = "positive" if minimum == 1 else f"at least {minimum}"
            raise _err(f"{key} must be {need}, got {value}", _vpos(stmt, key))

    def _feature_map(self, kind: str, name: str, shape: Shape, pos: Pos | None) -> None:
        if len(shape) != 3:
            raise _err(f"{kind} '{name}' needs a CxHxW feature map, but its input has shape "
                       f"{_fmt(shape)} (after an fc layer)", pos)

    def _conv_out(self, stmt: object, name: str, shape: Shape, out: int, kernel: int,
                  stride: int, pad: int, pos: Pos | None) -> Shape:
        # floor((size + 2 pad - kernel) / stride) + 1, as PyTorch's Conv2d and FINN's
        # compute_conv_output_dim: a stride that does not divide the size drops the last
        # rows and columns
        _, h, w = shape
        oh = (h + 2 * pad - kernel) // stride + 1
        ow = (w + 2 * pad - kernel) // stride + 1
        if h + 2 * pad < kernel or w + 2 * pad < kernel or oh <= 0 or ow <= 0:
            raise _err(f"kernel {kernel} of '{name}' is bigger than its (padded) input "
                       f"{h + 2 * pad}x{w + 2 * pad}" + (_NO_1D if (h == 1) != (w == 1) else ""),
                       _vpos(stmt, "kernel"))
        return (out, oh, ow)

    def conv(self, stmt: ConvStmt, name: str, shape: Shape) -> Shape:
        self._name(name, stmt.pos)
        self._feature_map("conv", name, shape, stmt.pos)
        self._positive(stmt, "out", stmt.out)
        self._positive(stmt, "kernel", stmt.kernel)
        self._positive(stmt, "stride", stmt.stride)
        pad = stmt.kernel // 2 if stmt.pad is None else stmt.pad
        if pad < 0:
            raise _err(f"pad must not be negative, got {pad}", _vpos(stmt, "pad"))
        out = self._conv_out(stmt, name, shape, stmt.out, stmt.kernel, stmt.stride, pad,
                             stmt.pos)
        self.layers.append(ResolvedLayer(
            name, "conv", shape, out, stmt.pos or self.net.pos,
            weights=stmt.weights or self.weights,
            activations=stmt.activations or self.activations,
            kernel=stmt.kernel, stride=stmt.stride, pad=pad))
        return out

    def block(self, stmt: BlockStmt, name: str, shape: Shape) -> Shape:
        pos = stmt.pos or self.net.pos
        self._name(name, stmt.pos)
        self._feature_map("block", name, shape, stmt.pos)
        self._positive(stmt, "out", stmt.out)
        self._positive(stmt, "stride", stmt.stride)
        out = self._conv_out(stmt, name, shape, stmt.out, 3, stmt.stride, 1, stmt.pos)
        wt = stmt.weights or self.weights
        at = stmt.activations or self.activations
        self.layers.append(ResolvedLayer(name, "block", shape, out, pos, stride=stmt.stride))
        subs = [(f"{name}.conv1", shape, 3, stmt.stride, 1),
                (f"{name}.conv2", out, 3, 1, 1)]
        if stmt.stride != 1 or stmt.out != shape[0]:
            subs.append((f"{name}.down", shape, 1, stmt.stride, 0))
        for sub, in_shape, k, s, p in subs:
            self._name(sub, stmt.pos)
            self.layers.append(ResolvedLayer(sub, "conv", in_shape, out, pos, weights=wt,
                                             activations=at, kernel=k, stride=s, pad=p,
                                             parent=name))
        self._name(f"{name}.add", stmt.pos)
        self.layers.append(ResolvedLayer(f"{name}.add", "add", out, out, pos, activations=at,
                                         parent=name))
        return out

    def pool(self, stmt: PoolStmt, name: str, shape: Shape) -> Shape:
        pos = stmt.pos or self.net.pos
        self._name(name, stmt.pos)
        self._feature_map("pool", name, shape, stmt.pos)
        c, h, w = shape
        if stmt.global_:
            out: Shape = (c, 1, 1)
            self.layers.append(ResolvedLayer(name, "gap", shape, out, pos, mode="avg"))
            return out
        kernel = stmt.kernel if stmt.kernel is not None else 1
        self._positive(stmt, "kernel", kernel)
        stride = kernel if stmt.stride is None else stmt.stride
        self._positive(stmt, "stride", stride)
        if kernel > h or kernel > w:
            raise _err(f"pool kernel {kernel} of '{name}' is bigger than its input {h}x{w}"
                       + (_NO_1D if (h == 1) != (w == 1) else ""), _vpos(stmt, "kernel"))
        out = (c, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
        self.layers.append(ResolvedLayer(name, "pool", shape, out, pos, kernel=kernel,
                                         stride=stride, pad=0, mode=stmt.mode))
        return out

    def fc(self, stmt: FcStmt, name: str, shape: Shape) -> Shape:
        self._name(name, stmt.pos)
        self._positive(stmt, "out", stmt.out)
        out = (stmt.out,)
        self.layers.append(ResolvedLayer(
            name, "fc", shape, out, stmt.pos or self.net.pos,
            weights=stmt.weights or self.weights,
            activations=stmt.activations or self.activations))
        return out

    def run(self, stmts: Iterable[LayerStmt], shape: Shape, suffix: str = "",
            depth: int = 0) -> Shape:
        for stmt in stmts:
            if isinstance(stmt, RepeatStmt):
                if depth >= MAX_NESTING:
                    raise _err(f"'repeat' nested deeper than {MAX_NESTING} levels", stmt.pos)
                self._positive(stmt, "count", stmt.count)
                if not stmt.body:
                    raise _err("empty 'repeat' body", stmt.pos,
                               "layer statements inside 'repeat N { ... }'")
                for i in range(stmt.count):
                    shape = self.run(stmt.body, shape, f"{suffix}_{i}", depth + 1)
                continue
            name = stmt.name + suffix
            if isinstance(stmt, ConvStmt):
                shape = self.conv(stmt, name, shape)
            elif isinstance(stmt, BlockStmt):
                shape = self.block(stmt, name, shape)
            elif isinstance(stmt, PoolStmt):
                shape = self.pool(stmt, name, shape)
            else:
                shape = self.fc(stmt, name, shape)
        return shape


def _count_layers(stmts: Iterable[LayerStmt]) -> int:
    total = 0
    for stmt in stmts:
        if isinstance(stmt, RepeatStmt):
            total += max(stmt.count, 0) * _count_layers(stmt.body)
        else:
            total += 5 if isinstance(stmt, BlockStmt) else 1
        if total > MAX_LAYERS:
            return total
    return total


def _check_dtype(dtype: DType | None, pos: Pos | None) -> None:
    if dtype is not None and dtype.name not in DTYPE_NAMES:
        raise _err(f"unknown datatype '{dtype.name}'", pos, "one of " + ", ".join(DTYPE_NAMES))


#: why 1-bit unsigned layer datatypes are refused in a declared network
UINT1_REASON = ("Brevitas exports every 1-bit quantizer as a BipolarQuant (-1/+1) whatever "
                "its sign, so a 0/1 {what} cannot reach FINN as 0/1")


def _check_not_uint1(dtype: DType | None, what: str, pos: Pos | None) -> None:
    if dtype is not None and not dtype.bipolar and not dtype.signed and dtype.bits == 1:
        raise _err(f"uint1 {what} are not supported in a declared network: "
                   + UINT1_REASON.format(what=what.rstrip("s")), pos,
                   "bipolar (a sign, -1/+1) or uint2 .. uint8")


def _check_signed_weights(dtype: DType | None, pos: Pos | None) -> None:
    """Weights of a declared network are built signed (Brevitas' per-tensor intN weight
    quantizer) or bipolar: an unsigned weight datatype would silently become signed."""
    if dtype is not None and not dtype.bipolar and not dtype.signed:
        raise _err(f"{dtype.name} weights are not supported in a declared network: nashc "
                   "builds weights as signed integers (intN, symmetric per-tensor scale) or "
                   "bipolar", pos, "int2 .. int8 or bipolar")


def _check_dtypes(stmts: Iterable[LayerStmt]) -> None:
    for stmt in stmts:
        if isinstance(stmt, RepeatStmt):
            _check_dtypes(stmt.body)
        elif isinstance(stmt, ConvStmt | FcStmt | BlockStmt):
            _check_dtype(stmt.weights, _vpos(stmt, "weights"))
            _check_dtype(stmt.activations, _vpos(stmt, "activations"))
            _check_not_uint1(stmt.weights, "weights", _vpos(stmt, "weights"))
            _check_signed_weights(stmt.weights, _vpos(stmt, "weights"))
            _check_not_uint1(stmt.activations, "activations", _vpos(stmt, "activations"))


def resolve_network(net: Network) -> ResolvedNetwork:
    """Expands and shape-checks a network (or reads its layers from the ONNX source)."""
    if net.source is not None:
        return _resolve_onnx(net)
    if net.input is None:
        raise _err(f"network '{net.name}' needs an 'input CxHxW DTYPE' statement", net.pos,
                   "'input' such as: input 3x32x32 uint8")
    spec = net.input
    for key, val in (("channels", spec.channels), ("height", spec.height),
                     ("width", spec.width)):
        if val <= 0:
            raise _err(f"input {key} must be positive, got {val}", _vpos(spec, "shape"))
    _check_dtype(spec.dtype, _vpos(spec, "dtype"))
    if spec.dtype is not None and spec.dtype.bipolar:
        # nashc builds the input quantizer from an integer datatype and feeds it integer
        # images; a +-1 input has neither (a loaded BNN-PYNQ model may have one)
        raise _err("a bipolar network input is not supported in a declared network",
                   _vpos(spec, "dtype"),
                   "an integer input datatype such as uint2 or uint8 (a model with a "
                   "bipolar input can be loaded with `network NAME from \"model.onnx\"`)")
    _check_dtype(net.weights, _vpos(net, "weights"))
    _check_dtype(net.activations, _vpos(net, "activations"))
    _check_not_uint1(spec.dtype, "inputs", _vpos(spec, "dtype"))
    _check_not_uint1(net.weights, "weights", _vpos(net, "weights"))
    _check_signed_weights(net.weights, _vpos(net, "weights"))
    _check_not_uint1(net.activations, "activations", _vpos(net, "activations"))
    _check_dtypes(net.layers)
    if not net.layers:
        raise _err(f"network '{net.name}' has no layers", net.pos,
                   "a conv, block, pool, fc or repeat statement")
    if _count_layers(net.layers) > MAX_LAYERS:
        raise _err(f"network '{net.name}' expands to more than {MAX_LAYERS} layers", net.pos)
    input_shape = (spec.channels, spec.height, spec.width)
    if math.prod(input_shape) > MAX_FEATURE_VALUES:
        raise _err(f"input {_fmt(input_shape)} has {math.prod(input_shape):,} values per "
                   f"frame; at most {MAX_FEATURE_VALUES:,}", _vpos(spec, "shape"))
    res = _Resolver(net)
    res.run(net.layers, input_shape)
    if not any(layer.kind in COMPUTE_KINDS for layer in res.layers):
        raise _err(f"network '{net.name}' has no conv, block or fc layer: nothing to map to "
                   "FINN's MVAU/VVAU layers", _vpos(net, "name"),
                   "at least one conv, block or fc statement")
    return ResolvedNetwork(net.name, input_shape, spec.dtype, tuple(res.layers))


def _layer_weights(layer: ResolvedLayer) -> int:
    """Weights of a conv or fc layer (out x in x k x k), 0 for other layers."""
    if layer.kind == "conv":
        return layer.out_shape[0] * layer.in_shape[0] * (layer.kernel or 1) ** 2
    if layer.kind == "fc":
        return layer.out_shape[0] * math.prod(layer.in_shape)
    return 0


def _check_sizes(net: ResolvedNetwork, choices: dict[tuple[str, str], tuple[Any, ...]]
                 ) -> None:
    """Weights per layer and values per feature map of the widest candidate within the
    limits (`MAX_LAYER_WEIGHTS`, `MAX_FEATURE_VALUES`). The widest width option of the
    space scales every layer (an upper bound)."""
    if net.source is not None:
        return
    widths = [float(v) for (_, dim), opts in choices.items() if dim == "width" for v in opts]
    scale = max([1.0, *widths])
    for layer in net.layers:
        weights = _layer_weights(layer) * (scale * scale if layer.kind == "conv" else scale)
        if weights > MAX_LAYER_WEIGHTS:
            wider = f" with width {scale:g} of the space" if scale > 1 else ""
            raise _err(f"'{layer.name}' has {weights:,.0f} weights{wider}; at most "
                       f"{MAX_LAYER_WEIGHTS:,} per layer", layer.pos)
        values = math.prod(layer.out_shape) * scale
        if values > MAX_FEATURE_VALUES:
            wider = f" with width {scale:g} of the space" if scale > 1 else ""
            raise _err(f"the output of '{layer.name}' ({_fmt(layer.out_shape)}) has "
                       f"{values:,.0f} values per frame{wider}; at most "
                       f"{MAX_FEATURE_VALUES:,}", layer.pos)


def _check_hybrid_bits(net: ResolvedNetwork, space: Space | None,
                       choices: dict[tuple[str, str], tuple[Any, ...]]) -> None:
    """Shift and adder layers have 2- to 8-bit weights (`nashc.runtime.modules`): a
    1-bit (bipolar) layer offered them is an error at the `op` rule."""
    if space is None or net.source is not None:
        return
    by_name = {layer.name: layer for layer in net.layers}
    for (name, dim), opts in choices.items():
        if dim != "op" or not {"shift", "adder"} & set(map(str, opts)):
            continue
        layer = by_name[name]
        if (name, "wbits") in choices or layer.weights is None or layer.weights.bits >= 2:
            continue
        rule = next((r for r in reversed(space.rules) if r.dim == "op"
                     and any(fnmatch.fnmatchcase(name, p) for p in r.selector)), None)
        raise _err(f"'{name}' has {layer.weights} (1-bit) weights; shift and adder layers "
                   "need 2 to 8 weight bits", rule.pos if rule is not None else layer.pos,
                   "'conv' for this layer, or a 'wbits' choice (2..8) for it")


def _onnx_shapes(graph: object) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:  # type: ignore[attr-defined]
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def onnx_layer_names(nodes: Iterable[Any]) -> list[tuple[Any, str]]:
    """The layers of an ONNX node list with their names: Conv/Gemm/MatMul nodes, named
    by their node name, ``OpType_INDEX`` when unnamed, ``NAME_INDEX`` when repeated
    (INDEX: the position in the list)."""
    out = []
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        name = node.name or f"{node.op_type}_{i}"
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        out.append((node, name))
    return out


def _resolve_onnx(net: Network) -> ResolvedNetwork:
    assert net.source is not None
    pos = net.source_pos or net.pos
    path = net.source
    if not path.is_file():
        raise _err(f"model file '{net.source_text or path}' not found (looked for {path})", pos,
                   "a path to an ONNX file, relative to this .nash file")
    try:
        import onnx  # the DSL may import onnx (never torch)

        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a bad file
        raise _err(f"cannot read '{net.source_text or path}' as an ONNX model: "
                   f"{type(exc).__name__}: {exc}".splitlines()[0], pos) from None
    graph = model.graph
    shapes = _onnx_shapes(graph)
    inits = {i.name for i in graph.initializer}
    layers: list[ResolvedLayer] = []
    for node, name in onnx_layer_names(graph.node):
        attrs = {a.name: a for a in node.attribute}
        in_shape = shapes.get(node.input[0], ()) if node.input else ()
        out_shape = shapes.get(node.output[0], ()) if node.output else ()
        if node.op_type == "Conv":
            ks = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
            st = list(attrs["strides"].ints) if "strides" in attrs else []
            pads = list(attrs["pads"].ints) if "pads" in attrs else []
            layers.append(ResolvedLayer(
                name, "conv", in_shape[1:], out_shape[1:], pos,
                kernel=ks[0] if ks else None, stride=st[0] if st else 1,
                pad=pads[0] if pads else 0))
        else:
            layers.append(ResolvedLayer(name, "fc", in_shape[1:], out_shape[1:], pos))
    if not layers:
        raise _err(f"'{net.source_text or path}' has no Conv, Gemm or MatMul node", pos)
    input_shape: tuple[int, int, int] | None = None
    input_dtype: DType | None = None
    for inp in graph.input:
        if inp.name in inits:
            continue
        shape = shapes.get(inp.name, ())
        if len(shape) == 4:
            input_shape = (shape[1], shape[2], shape[3])
        input_dtype = _annotated_dtype(graph, inp.name)
        break
    return ResolvedNetwork(net.name, input_shape, input_dtype, tuple(layers), source=path)


def _annotated_dtype(graph: object, tensor: str) -> DType | None:
    """The QONNX datatype annotation of `tensor` as a `.nash` datatype, if it is one."""
    for ann in graph.quantization_annotation:  # type: ignore[attr-defined]
        if ann.tensor_name != tensor:
            continue
        for kv in ann.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                name = kv.value.lower()
                if name == "bipolar" or re.fullmatch(r"u?int[1-8]", name):
                    return DType(name)
    return None


# --- space -----------------------------------------------------------------------------

_DIM_KINDS: dict[str, tuple[str, ...]] = {
    "op": ("conv", "fc"),
    "kernel": ("conv",),
    "width": ("block", "conv"),
    "wbits": ("conv", "fc"),
    "abits": ("conv", "fc"),
}


def dims_for_kind(layer: ResolvedLayer, imported: bool = False) -> tuple[str, ...]:
    """The space dimensions that apply to a layer (see docs/language.md). In a network
    loaded with `from` the graph passes set widths of conv and fc layers alike."""
    out = []
    for dim, kinds in _DIM_KINDS.items():
        if imported and dim == "width":
            kinds = ("conv", "fc")
        if layer.kind not in kinds:
            continue
        if dim == "width" and layer.kind == "conv" and layer.parent is not None:
            continue  # a block's convs follow the block's width
        out.append(dim)
    return tuple(out)


def _check_options(dim: str, options: tuple[str | int | float, ...],
                   option_pos: tuple[Pos, ...], rule_pos: Pos) -> tuple[str | int | float, ...]:
    out: list[str | int | float] = []
    for i, opt in enumerate(options):
        pos = option_pos[i] if i < len(option_pos) else rule_pos
        value: str | int | float
        if dim == "op":
            if not isinstance(opt, str) or opt not in OP_OPTIONS:
                raise _err(f"unknown op '{opt}'", pos, ", ".join(OP_OPTIONS))
            value = opt
        elif dim == "kernel":
            if isinstance(opt, str) or not float(opt).is_integer() or opt <= 0 or opt % 2 == 0:
                raise _err(f"kernel option must be an odd positive whole number, got {opt}",
                           pos, "an odd number such as 3 or 5")
            value = int(opt)
        elif dim == "width":
            if isinstance(opt, str) or not 0 < opt <= MAX_WIDTH:
                raise _err(f"width option must be a channel multiplier in (0, {MAX_WIDTH:g}], "
                           f"got {opt}", pos, "a number such as 0.5 or 1.0")
            value = float(opt)
        else:
            low = 2 if dim == "wbits" else 1
            if isinstance(opt, str) or not float(opt).is_integer() or not low <= opt <= 8:
                raise _err(f"{dim} option must be a whole number of bits from {low} to 8, "
                           f"got {opt}", pos, f"a number from {low} to 8")
            value = int(opt)
        if value in out:
            raise _err(f"option {opt} given twice", pos)
        out.append(value)
    return tuple(out)


def _match(pattern: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def compute_choices(space: Space | None, net: ResolvedNetwork
                    ) -> dict[tuple[str, str], tuple[str | int | float, ...]]:
    """Validates a `space` against the resolved network and returns its choices.

    (layer, dim) -> options; the last matching rule wins, fixed layers (and the layers of
    a fixed block) are left out, and a dim only applies to some kinds of layer.
    """
    if space is None:
        return {}
    names = [layer.name for layer in net.layers]
    by_name = {layer.name: layer for layer in net.layers}
    fixed: set[str] = set()
    for i, pattern in enumerate(space.fixed):
        pos = space.fixed_item_pos[i] if i < len(space.fixed_item_pos) else space.fixed_pos
        matched = _match(pattern, names)
        if not matched:
            raise _err(f"'fix {pattern}' matches no layer", pos, _some_names(names))
        fixed.update(matched)
    for name in list(fixed):
        fixed.update(n for n in names if by_name[n].parent == name)

    imported = net.source is not None
    choices: dict[tuple[str, str], tuple[str | int | float, ...]] = {}
    for rule in space.rules:
        if imported and rule.dim == "kernel":
            raise _err("'kernel' cannot be searched in a network loaded with `from`: a new "
                       "kernel is an untrained layer", rule.pos,
                       "op, width, wbits or abits (declare the network to search kernels)")
        options = _check_options(rule.dim, rule.options, rule.option_pos, rule.pos)
        if rule.dim == "abits" and 1 in options:
            i = options.index(1)
            why = ("a network loaded with `from` keeps its Quant nodes, which take 2 to 8 "
                   "bits: abits 1 is not possible" if imported else
                   "abits 1 (uint1 activations) is not supported: "
                   + UINT1_REASON.format(what="activation"))
            raise _err(why, rule.option_pos[i] if i < len(rule.option_pos) else rule.pos,
                       "a number from 2 to 8")
        if imported and rule.dim == "width" and any(float(o) > 1 for o in options):
            raise _err("a network loaded with `from` can only be narrowed: width options "
                       "must be at most 1", rule.pos, "multipliers such as 0.5 or 1.0")
        for i, pattern in enumerate(rule.selector):
            pos = rule.selector_pos[i] if i < len(rule.selector_pos) else rule.pos
            matched = _match(pattern, names)
            if not matched:
                raise _err(f"selector '{pattern}' matches no layer", pos, _some_names(names))
            applicable = [n for n in matched
                          if rule.dim in dims_for_kind(by_name[n], imported)]
            if not applicable:
                kinds = sorted({by_name[n].kind for n in matched})
                raise _err(f"'{rule.dim}' does not apply to the layers matched by "
                           f"'{pattern}' ({', '.join(kinds)})", pos,
                           f"a selector of {_applies_to(rule.dim)}")
            for name in applicable:
                if name not in fixed:
                    choices[(name, rule.dim)] = options
    # keep a stable order: network order, then dim order
    order = {n: i for i, n in enumerate(names)}
    dim_order = {d: i for i, d in enumerate(_DIM_KINDS)}
    return dict(sorted(choices.items(), key=lambda kv: (order[kv[0][0]], dim_order[kv[0][1]])))


def _applies_to(dim: str) -> str:
    return {
        "op": "conv or fc layers",
        "kernel": "conv layers",
        "width": "blocks or conv layers outside blocks",
        "wbits": "conv or fc layers",
        "abits": "conv or fc layers",
    }[dim]


def _some_names(names: list[str]) -> str:
    shown = ", ".join(names[:10])
    more = ", ..." if len(names) > 10 else ""
    return f"a pattern matching a layer name ({shown}{more})"


# --- hardware, search, train ---------------------------------------------------------------


def _check_hardware(nf: NashFile, targets: Collection[str] | None) -> None:
    hw = nf.hardware
    if hw is None:
        return
    if hw.target is not None and targets is not None:
        known = [t.lower() for t in targets]
        if hw.target.lower() not in known:
            raise _err(f"unknown target '{hw.target}'", hw.target_pos or hw.pos,
                       "one of " + ", ".join(known))
    if hw.clock_mhz is not None and not hw.clock_mhz > 0:
        raise _err("the clock must be positive", _vpos(hw, "clock"), "a positive number")
    if hw.clock_mhz is not None and not MIN_CLOCK_MHZ <= hw.clock_mhz <= MAX_CLOCK_MHZ:
        raise _err(f"clock {hw.clock_text} is outside "
                   f"{MIN_CLOCK_MHZ:g}..{MAX_CLOCK_MHZ:g} MHz", _vpos(hw, "clock"),
                   "an FPGA fabric clock such as 250 MHz or period 4 ns")
    check_budget(hw.budget)
    if hw.fps_min is not None and not hw.fps_min > 0:
        raise _err(f"fps must be positive, got {hw.fps_min:g}", _vpos(hw, "fps"))
    if hw.latency_max_ms is not None and not hw.latency_max_ms > 0:
        raise _err(f"latency must be positive, got {hw.latency_text}", _vpos(hw, "latency"))


def check_budget(budget: Iterable[BudgetItem], names: bool = True) -> None:
    """Checks the items of a resource budget (a hardware section's, or `--budget`): known
    resources (unless `names` is False), each given once, percentages within [0, 100],
    counts whole and not negative. Raises `NashSourceError` at the offending item."""
    seen: set[str] = set()
    for item in budget:
        if names and item.resource not in RESOURCES:
            raise _err(f"unknown resource '{item.resource}'", item.pos,
                       "one of " + ", ".join(RESOURCES))
        if item.resource in seen:
            raise _err(f"budget for '{item.resource}' given twice", item.pos)
        seen.add(item.resource)
        # 0 (a count or 0%) is allowed: it forbids the resource (e.g. `uram 0`)
        if item.percent and not 0 <= item.value <= 100:
            raise _err(f"budget {item.resource} {item.value:g}% must be within [0, 100]%",
                       item.pos, "a percentage from 0 (forbids the resource) to 100")
        if not item.percent and (item.value < 0 or not float(item.value).is_integer()):
            raise _err(f"budget {item.resource} {item.value:g} must be a non-negative whole "
                       "count", item.pos, "a count (0 forbids the resource), or a percentage "
                       "such as 70%")


def _check_search(nf: NashFile, imported: bool, net: ResolvedNetwork | None = None,
                  space_size: int = 1) -> None:
    s = nf.search
    if s is None:
        return
    if s.metric not in METRICS:
        raise _err(f"unknown metric '{s.metric}'", _vpos(s, "metric"),
                   "one of " + ", ".join(METRICS))
    if "metric" in s.value_pos:
        if imported and s.metric == "zero_shot":
            raise _err("metric zero_shot scores freshly initialised networks; a network "
                       "loaded with `from` keeps its trained weights", _vpos(s, "metric"),
                       "metric fidelity (the default for such networks)")
        if not imported and s.metric == "fidelity":
            raise _err("metric fidelity compares candidates with the trained weights of a "
                       "network loaded with `from`; this network is declared here",
                       _vpos(s, "metric"), "metric zero_shot")
    for key in ("metric_batch", "population", "generations", "samples", "keep_pareto"):
        value = getattr(s, key)
        if value <= 0:
            word = {"metric_batch": "batch", "keep_pareto": "keep pareto"}.get(key, key)
            raise _err(f"{word} must be positive, got {value}", _vpos(s, key))
    if s.seed < 0:
        raise _err(f"seed must not be negative, got {s.seed}", _vpos(s, "seed"))
    for key in ("population", "generations", "samples"):
        value = getattr(s, key)
        if value > MAX_SEARCH_COUNT:
            raise _err(f"{key} {value} is more than {MAX_SEARCH_COUNT:,} candidates",
                       _vpos(s, key), f"at most {MAX_SEARCH_COUNT:,} (--search-seconds stops a "
                       "long search early)")
    if s.strategy == "exhaustive" and space_size > MAX_EXHAUSTIVE:
        raise _err(f"exhaustive search of {space_size:,} candidates; it is limited to "
                   f"{MAX_EXHAUSTIVE:,}", _vpos(s, "strategy"), "strategy random or evolution")
    if net is not None and net.input_shape is not None:
        values = s.metric_batch * math.prod(net.input_shape)
        if values > MAX_BATCH_VALUES:
            raise _err(f"batch {s.metric_batch} of {_fmt(net.input_shape)} inputs holds "
                       f"{values:,} values; at most {MAX_BATCH_VALUES:,}",
                       _vpos(s, "metric_batch"), "a smaller scoring batch such as 32")
        t = nf.train
        if (t is not None and t.dataset == "digits" and net.source is None
                and tuple(net.input_shape) == (1, 8, 8) and s.metric_batch > DIGITS_IMAGES):
            raise _err(f"batch {s.metric_batch} is larger than the digits data set "
                       f"({DIGITS_IMAGES} images), which the zero-shot score is computed on",
                       _vpos(s, "metric_batch"), f"a batch of at most {DIGITS_IMAGES}")


def _check_train(nf: NashFile, net: ResolvedNetwork | None = None) -> None:
    t = nf.train
    if t is None:
        return
    for key in ("epochs", "batch"):
        value = getattr(t, key)
        if value <= 0:
            raise _err(f"{key} must be positive, got {value}", _vpos(t, key))
    if net is not None and net.input_shape is not None:
        values = t.batch * math.prod(net.input_shape)
        if values > MAX_BATCH_VALUES:
            raise _err(f"batch {t.batch} of {_fmt(net.input_shape)} inputs holds "
                       f"{values:,} values; at most {MAX_BATCH_VALUES:,}", _vpos(t, "batch"),
                       "a smaller batch such as 64")
    if not t.lr > 0 or not math.isfinite(t.lr):
        raise _err(f"lr must be positive, got {t.lr:g}", _vpos(t, "lr"))


def check_program(nashfile: NashFile, targets: Collection[str] | None = None) -> Program:
    """Validates a parsed file and resolves it into a `Program`.

    `targets`: the known board names (lowercase); None skips the target check.
    """
    net = resolve_network(nashfile.network)
    choices = compute_choices(nashfile.space, net)
    _check_sizes(net, choices)
    _check_hybrid_bits(net, nashfile.space, choices)
    _check_hardware(nashfile, targets)
    _check_search(nashfile, net.source is not None, net,
                  math.prod(len(o) for o in choices.values()))
    _check_train(nashfile, net)
    return Program(nashfile, net, choices)
