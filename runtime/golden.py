"""Executors and the golden checks (verification levels of DESIGN.md).

- level 1 ("torch-vs-qonnx"): a PyTorch/Brevitas module vs its QONNX graph executed by
  qonnx (only when a module is given);
- level 2 ("qonnx-vs-onnxruntime"): the QONNX graph with nashc hybrid custom ops executed
  by qonnx (numpy references, onnxruntime per standard node) vs the whole graph lowered
  to standard ONNX in onnxruntime with graph optimisations off.

Level 2 must be bit-exact (``max_abs_diff == 0``). Level 1 allows float rounding
(``LEVEL1_RTOL`` relative to the output's magnitude) since PyTorch and onnxruntime
kernels accumulate in different orders. Further levels (FINN) append to ``LEVELS``.

QONNX ``Quant``, ``BipolarQuant`` and ``MultiThreshold`` have no onnxruntime kernel; for
onnxruntime they are rewritten to standard ops (``LowerQonnxQuantToONNX``) that compute
exactly what qonnx's numpy code computes (Div, Add, Max/Min clipping, Round half-to-even
as ``np.round``, Sub, Mul). qonnx's ``QuantToQCDQ`` is not used: it only handles 2..8-bit
Quant with per-tensor/1D scales and no BipolarQuant.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnx import NodeProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes

from nashc.dsl.errors import NashcError
from nashc.runtime.lowering import LowerHybridOpsToONNX

__all__ = [
    "LevelResult",
    "VerifyResult",
    "GoldenError",
    "LowerQonnxQuantToONNX",
    "to_standard_onnx",
    "run_qonnx",
    "run_onnxruntime",
    "SampleRunner",
    "random_inputs",
    "compare_levels",
    "LEVELS",
    "LEVEL1_RTOL",
    "load_model",
]

LEVEL1_RTOL = 1e-5
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")


class GoldenError(NashcError):
    """A model cannot be executed for the golden checks (unsupported op, bad input)."""


@dataclass
class LevelResult:
    name: str
    max_abs_diff: float
    ok: bool


@dataclass
class VerifyResult:
    levels: list[LevelResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.levels) and all(lv.ok for lv in self.levels)

    def to_json(self) -> dict[str, Any]:
        return {"levels": [asdict(lv) for lv in self.levels], "ok": self.ok}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


# -- QONNX quantizers -> standard ONNX -------------------------------------------------


def _is_qonnx(node: NodeProto) -> bool:
    return node.domain in QONNX_DOMAINS


class LowerQonnxQuantToONNX(Transformation):
    """Replaces QONNX Quant, BipolarQuant and MultiThreshold nodes with standard ONNX ops."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")),
                     13)
        for node in list(graph.node):
            if not _is_qonnx(node):
                continue
            if node.op_type == "Quant":
                new = self._quant(model, node)
            elif node.op_type == "BipolarQuant":
                new = self._bipolar(model, node)
            elif node.op_type == "MultiThreshold":
                new = self._multithreshold(model, node, opset)
            elif node.op_type == "Trunc" and len(node.input) == 6:
                new = self._trunc(model, node)
            else:
                raise GoldenError(f"node {node.name!r} ({node.op_type}): no standard-ONNX "
                                  "lowering for onnxruntime")
            pos = list(graph.node).index(node)
            graph.node.remove(node)
            for k, n in enumerate(new):
                graph.node.insert(pos + k, n)
        return model, False

    @staticmethod
    def _c(model: ModelWrapper, value: Any) -> str:
        name = model.make_new_valueinfo_name()
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
        return name

    def _quant(self, model: ModelWrapper, node: NodeProto) -> list[NodeProto]:
        from qonnx.custom_op.general.quant import max_int, min_int

        x, scale, zeropt, bw = node.input
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        bits = model.get_initializer(bw)
        if bits is None:
            raise GoldenError(f"node {node.name!r} (Quant): bit width must be an initializer")
        bits = float(np.asarray(bits))
        nm = node.name or node.output[0]
        t = [model.make_new_valueinfo_name() for _ in range(8)]
        nodes = [helper.make_node("Div", [x, scale], [t[0]], name=nm + "_div"),
                 helper.make_node("Add", [t[0], zeropt], [t[1]], name=nm + "_addz")]
        if bits == 1 and signed:
            one, mone, zero = self._c(model, 1.0), self._c(model, -1.0), self._c(model, 0.0)
            nodes += [helper.make_node("GreaterOrEqual", [t[1], zero], [t[2]], name=nm + "_ge"),
                      helper.make_node("Where", [t[2], one, mone], [t[4]], name=nm + "_sign")]
        else:
            lo = float(min_int(signed, narrow, bits))
            hi = float(max_int(signed, narrow, bits))
            nodes += [
                helper.make_node("Min", [t[1], self._c(model, hi)], [t[2]], name=nm + "_min"),
                helper.make_node("Max", [t[2], self._c(model, lo)], [t[3]], name=nm + "_max"),
            ]
            nodes += self._round(model, t[3], t[4], mode, nm)
        nodes += [helper.make_node("Sub", [t[4], zeropt], [t[5]], name=nm + "_subz"),
                  helper.make_node("Mul", [t[5], scale], [node.output[0]], name=nm)]
        return nodes

    def _trunc(self, model: ModelWrapper, node: NodeProto) -> list[NodeProto]:
        """QONNX Trunc (v2, as Brevitas' TruncAvgPool exports it), step by step as
        `qonnx.custom_op.general.trunc.trunc_v2` computes it."""
        from qonnx.custom_op.general.quant import max_int, min_int

        x, scale, zeropt, _in_bw, out_scale, out_bw = node.input
        consts = [model.get_initializer(t) for t in (scale, zeropt, out_scale, out_bw)]
        if any(c is None for c in consts):
            raise GoldenError(f"node {node.name!r} (Trunc): scales, zero-point and bit widths "
                              "must be initializers")
        sc, zp, osc, obw = (np.asarray(c, dtype=np.float32) for c in consts)
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"FLOOR")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        trunc_scale = np.float32(2.0 ** np.round(np.log2(osc / sc)))
        lo = float(min_int(signed, narrow, float(obw)))
        hi = float(max_int(signed, narrow, float(obw)))
        nm = node.name or node.output[0]
        t = [model.make_new_valueinfo_name() for _ in range(8)]
        nodes = [
            helper.make_node("Div", [x, scale], [t[0]], name=nm + "_div"),
            helper.make_node("Add", [t[0], zeropt], [t[1]], name=nm + "_addz"),
            helper.make_node("Round", [t[1]], [t[2]], name=nm + "_round_in"),
            helper.make_node("Div", [t[2], self._c(model, trunc_scale)], [t[3]],
                             name=nm + "_shift"),
            helper.make_node("Min", [t[3], self._c(model, hi)], [t[4]], name=nm + "_min"),
            helper.make_node("Max", [t[4], self._c(model, lo)], [t[5]], name=nm + "_max"),
        ]
        nodes += self._round(model, t[5], t[6], mode, nm)
        nodes += [
            helper.make_node("Sub", [t[6], self._c(model, zp / trunc_scale)], [t[7]],
                             name=nm + "_subz"),
            helper.make_node("Mul", [t[7], out_scale], [node.output[0]], name=nm),
        ]
        return nodes

    def _round(self, model: ModelWrapper, x: str, out: str, mode: str,
               nm: str) -> list[NodeProto]:
        if mode in ("ROUND", "HALF_EVEN"):
            return [helper.make_node("Round", [x], [out], name=nm + "_round")]
        if mode in ("FLOOR", "CEIL"):
            return [helper.make_node(mode.capitalize(), [x], [out], name=nm + "_round")]
        # sign(x) * f(|x|) forms, as qonnx's resolve_rounding_mode
        t = [model.make_new_valueinfo_name() for _ in range(4)]
        nodes = [helper.make_node("Sign", [x], [t[0]], name=nm + "_sign"),
                 helper.make_node("Abs", [x], [t[1]], name=nm + "_abs")]
        if mode == "UP":
            nodes.append(helper.make_node("Ceil", [t[1]], [t[3]], name=nm + "_f"))
        elif mode == "DOWN":
            nodes.append(helper.make_node("Floor", [t[1]], [t[3]], name=nm + "_f"))
        elif mode in ("HALF_UP", "HALF_DOWN"):
            op = "Add" if mode == "HALF_UP" else "Sub"
            fn = "Floor" if mode == "HALF_UP" else "Ceil"
            nodes += [helper.make_node(op, [t[1], self._c(model, 0.5)], [t[2]], name=nm + "_h"),
                      helper.make_node(fn, [t[2]], [t[3]], name=nm + "_f")]
        else:
            raise GoldenError(f"node {nm!r} (Quant): unknown rounding_mode {mode!r}")
        nodes.append(helper.make_node("Mul", [t[0], t[3]], [out], name=nm + "_round"))
        return nodes

    def _bipolar(self, model: ModelWrapper, node: NodeProto) -> list[NodeProto]:
        x, scale = node.input[0], node.input[1]
        nm = node.name or node.output[0]
        t = [model.make_new_valueinfo_name() for _ in range(2)]
        return [
            helper.make_node("GreaterOrEqual", [x, self._c(model, 0.0)], [t[0]], name=nm + "_ge"),
            helper.make_node("Where", [t[0], self._c(model, 1.0), self._c(model, -1.0)], [t[1]],
                             name=nm + "_sign"),
            helper.make_node("Mul", [t[1], scale], [node.output[0]], name=nm),
        ]

    def _multithreshold(self, model: ModelWrapper, node: NodeProto,
                        opset: int) -> list[NodeProto]:
        # y = out_scale * #{t : x >= thr[c, t]} + out_bias, NCHW or channels-last
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        layout = a.get("data_layout", b"NCHW")
        layout = layout.decode() if isinstance(layout, bytes) else str(layout)
        thr = model.get_initializer(node.input[1])
        ishape = model.get_tensor_shape(node.input[0])
        if thr is None or ishape is None:
            raise GoldenError(f"node {node.name!r} (MultiThreshold): needs constant thresholds "
                              "and a known input shape")
        nm = node.name or node.output[0]
        rank = len(ishape)
        c_axis = rank - 1 if layout.upper() in ("NHWC", "NWC", "NC") else 1
        # thresholds (C or 1, T) -> broadcastable over x with a trailing T axis
        tshape = [1] * rank + [thr.shape[1]]
        tshape[c_axis] = thr.shape[0]
        thr_b = thr.astype(np.float32).reshape(tshape)
        axes = model.make_new_valueinfo_name()
        model.set_initializer(axes, np.array([-1], dtype=np.int64))
        t = [model.make_new_valueinfo_name() for _ in range(5)]
        nodes = [
            helper.make_node("Unsqueeze", [node.input[0], axes], [t[0]], name=nm + "_unsq"),
            helper.make_node("GreaterOrEqual", [t[0], self._c(model, thr_b)], [t[1]],
                             name=nm + "_ge"),
            helper.make_node("Cast", [t[1]], [t[2]], to=1, name=nm + "_cast"),
            helper.make_node("ReduceSum", [t[2], axes], [t[3]], keepdims=0, name=nm + "_sum"),
            helper.make_node("Mul", [t[3], self._c(model, float(a.get("out_scale", 1.0)))],
                             [t[4]], name=nm + "_scale"),
            helper.make_node("Add", [t[4], self._c(model, float(a.get("out_bias", 0.0)))],
                             [node.output[0]], name=nm),
        ]
        if opset < 13:
            raise GoldenError(f"node {node.name!r} (MultiThreshold): needs ONNX opset >= 13")
        return nodes


def load_model(path: str | Path) -> ModelWrapper:
    """Loads an ONNX/QONNX model with its external data (e.g. Brevitas' ``.onnx.data``).
    A missing or malformed file raises `GoldenError`."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise GoldenError(f"model file {str(p)!r} not found")
    try:
        proto = onnx.load(str(p), load_external_data=True)
        return ModelWrapper(proto)
    except Exception as err:  # onnx raises several types for bad files
        raise GoldenError(f"cannot load model {str(p)!r}: {err}") from None


# -- executors -----------------------------------------------------------------------


def _prepared(model: ModelWrapper) -> ModelWrapper:
    m = ModelWrapper(copy.deepcopy(model.model))
    return m.transform(InferShapes())


def to_standard_onnx(model: ModelWrapper) -> ModelWrapper:
    """A copy of ``model`` with hybrid ops and QONNX quantizers lowered to standard ONNX."""
    m = _prepared(model)
    m = m.transform(LowerHybridOpsToONNX())
    m = m.transform(LowerQonnxQuantToONNX())
    keep = [o for o in m.model.opset_import if o.domain in ("", "ai.onnx")]
    del m.model.opset_import[:]
    m.model.opset_import.extend(keep)
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            raise GoldenError(f"node {n.name!r} ({n.op_type}, domain {n.domain!r}): "
                              "no standard-ONNX lowering for onnxruntime")
    # drop qonnx datatype annotations' dependence: onnxruntime ignores them
    return m


def run_qonnx(model: ModelWrapper, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Executes ``model`` with qonnx (custom ops through their numpy references)."""
    from qonnx.core.onnx_exec import execute_onnx

    out = execute_onnx(_prepared(model), dict(inputs))
    return {k: np.asarray(v) for k, v in out.items()}


def _ort_session(std: ModelWrapper, threads: int | None = None) -> Any:
    """An onnxruntime session of a standard-ONNX model, graph optimisations off."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads is not None:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(std.model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def run_onnxruntime(model: ModelWrapper,
                    inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Executes ``model`` in onnxruntime (graph optimisations off) after lowering hybrid ops
    and QONNX quantizers to standard ONNX."""
    sess = _ort_session(to_standard_onnx(model))
    names = [o.name for o in sess.get_outputs()]
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    res = sess.run(names, feed)
    return dict(zip(names, (np.asarray(r) for r in res)))


class SampleRunner:
    """Runs a single-input QONNX graph in onnxruntime like `run_onnxruntime`, on a batch
    one sample at a time (exported graphs have batch size 1), single-threaded. ``names``:
    the graph outputs, then ``extra`` intermediate tensors also returned."""

    def __init__(self, model: ModelWrapper, extra: Sequence[str] = ()) -> None:
        from onnx import TensorProto

        std = to_standard_onnx(model)
        outs = [o.name for o in std.graph.output]
        for t in extra:
            if t not in outs:
                std.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT,
                                                                      None))
                outs.append(t)
        self.sess = _ort_session(std, threads=1)
        self.names = outs
        self.input = self.sess.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self.sess.run(self.names, {self.input: x[i:i + 1].astype(np.float32)})
                for i in range(len(x))]
        return {t: np.concatenate([r[k] for r in rows], axis=0)
                for k, t in enumerate(self.names)}

    def output(self, x: np.ndarray) -> np.ndarray:
        """The first graph output on ``x``."""
        return self(x)[self.names[0]]


def _graph_inputs(model: ModelWrapper) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def random_inputs(model: ModelWrapper, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random values for every graph input, honouring its QONNX datatype
    (integers/bipolar over their whole range, FLOAT32 uniform in [-1, 1))."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in _graph_inputs(model):
        shape = [d if isinstance(d, int) and d > 0 else 1
                 for d in (model.get_tensor_shape(name) or [1])]
        dt = model.get_tensor_datatype(name)
        if dt == DataType["BIPOLAR"]:
            v = rng.choice(np.array([-1.0, 1.0]), size=shape)
        elif dt.is_integer():
            v = rng.integers(int(dt.min()), int(dt.max()) + 1, size=shape)
        elif dt.get_canonical_name().startswith("FIXED"):
            lo, hi = dt.min(), dt.max()
            step = dt.scale_factor()
            v = rng.integers(round(lo / step), round(hi / step) + 1, size=shape) * step
        else:
            v = rng.uniform(-1.0, 1.0, size=shape)
        out[name] = np.asarray(v, dtype=np.float32)
    return out


def _max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: list[str]) -> float:
    diff = 0.0
    for n in names:
        x = np.asarray(a[n], dtype=np.float64)
        y = np.asarray(b[n], dtype=np.float64).reshape(x.shape)
        if x.size:
            diff = max(diff, float(np.max(np.abs(x - y))))
    return diff


@dataclass
class _Ctx:
    model: ModelWrapper
    inputs: dict[str, np.ndarray]
    torch_module: Any
    qonnx_out: dict[str, np.ndarray] | None = None

    def qonnx(self) -> dict[str, np.ndarray]:
        if self.qonnx_out is None:
            self.qonnx_out = run_qonnx(self.model, self.inputs)
        return self.qonnx_out

    @property
    def outputs(self) -> list[str]:
        return [o.name for o in self.model.graph.output]


def _level1(ctx: _Ctx) -> LevelResult | None:
    if ctx.torch_module is None:
        return None
    import torch

    mod = ctx.torch_module
    mod.eval()
    names = _graph_inputs(ctx.model)
    with torch.no_grad():
        res = mod(*[torch.from_numpy(ctx.inputs[n]) for n in names])
    if hasattr(res, "value"):  # brevitas QuantTensor
        res = res.value
    if not isinstance(res, (tuple, list)):
        res = [res]
    ref = ctx.qonnx()
    diff, ok = 0.0, True
    for name, t in zip(ctx.outputs, res):
        a = np.asarray(ref[name], dtype=np.float64)
        b = t.detach().cpu().numpy().astype(np.float64).reshape(a.shape)
        d = float(np.max(np.abs(a - b))) if a.size else 0.0
        diff = max(diff, d)
        ok = ok and d <= LEVEL1_RTOL * max(1.0, float(np.max(np.abs(a))) if a.size else 1.0)
    return LevelResult("torch-vs-qonnx", diff, ok)


def _level2(ctx: _Ctx) -> LevelResult:
    ref = ctx.qonnx()
    got = run_onnxruntime(ctx.model, ctx.inputs)
    d = _max_abs_diff(ref, got, ctx.outputs)
    return LevelResult("qonnx-vs-onnxruntime", d, d == 0.0)


# name -> level function; a level returns None when it does not apply. Append to extend.
LEVELS: list[tuple[str, Callable[[_Ctx], LevelResult | None]]] = [
    ("torch-vs-qonnx", _level1),
    ("qonnx-vs-onnxruntime", _level2),
]


def compare_levels(model: ModelWrapper, torch_module: Any = None, seed: int = 0,
                   inputs: dict[str, np.ndarray] | None = None) -> VerifyResult:
    """Runs every applicable verification level on seeded random inputs."""
    ctx = _Ctx(model, inputs if inputs is not None else random_inputs(model, seed), torch_module)
    result = VerifyResult()
    for _, fn in LEVELS:
        lv = fn(ctx)
        if lv is not None:
            result.levels.append(lv)
    return result
