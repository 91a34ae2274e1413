"""Executors and the golden checks (verification levels 1 and 2; level 3, FINN's dataflow
graph, is `nashc.targets.verify`).

- level 1 ("torch-vs-qonnx"): a PyTorch/Brevitas module vs its QONNX graph executed by
  qonnx (only when a module is given);
- level 2 ("qonnx-vs-onnxruntime"): the QONNX graph with nashc hybrid custom ops executed
  by qonnx (numpy references, onnxruntime per standard node) vs the whole graph lowered
  to standard ONNX in onnxruntime with graph optimisations off.

How tensors are compared (`compare_tensor`; each level reports the comparisons it made
in `LevelResult.tensors`, the kinds in `LevelResult.comparison`):

- ``bit-exact``: integer (quantized) tensors: a graph output made by a quantizer
  (``Quant``, ``BipolarQuant``, ``MultiThreshold``, ``Trunc``) or annotated with an integer
  QONNX datatype must be equal. At level 2 an output that is *not* quantized (a float
  tail: a scale ``Mul``, a float ``GlobalAveragePool``, ``Softmax``) has its quantized
  inputs, the last quantizer outputs before the float tail, compared bit-exactly too.
- ``tolerance``: float tensors, ``|a - b| <= FLOAT_TOL_ULPS * eps(dtype) * max|a|``: a few
  units in the last place of the tensor's magnitude (float32 eps 1.19e-7), what two
  kernels computing the same float ops in another order differ by.
- ``labels``: an ``ArgMax``/``TopK`` index output (or any integer-typed output array)
  compares class labels, exactly.

Level 1 (PyTorch vs qonnx) compares its outputs with ``LEVEL1_RTOL`` relative to
``max(1, max|a|)`` since PyTorch and onnxruntime kernels accumulate in different orders.
Further levels (FINN, `nashc.targets.verify`) append their `LevelResult`.

QONNX ``Quant``, ``BipolarQuant`` and ``MultiThreshold`` have no onnxruntime kernel; for
onnxruntime they are rewritten to standard ops by ``nashc.runtime.lowering``
(``LowerQonnxQuantToONNX``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from nashc.dsl.errors import NashcError
from nashc.runtime.lowering import LowerHybridOpsToONNX, LowerQonnxQuantToONNX

__all__ = [
    "TensorComparison",
    "compare_tensor",
    "float_tolerance",
    "FLOAT_TOL_ULPS",
    "QUANTIZER_OP_TYPES",
    "LABEL_OP_TYPES",
    "LevelResult",
    "VerifyResult",
    "GoldenError",
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
#: Float tensors may differ by this many units in the last place of their magnitude.
FLOAT_TOL_ULPS = 16
#: Op types whose outputs are quantized (integer codes times a scale).
QUANTIZER_OP_TYPES = frozenset({"Quant", "BipolarQuant", "BinaryQuant", "MultiThreshold",
                                "Trunc", "IntQuant"})
#: Op types whose (index) outputs are class labels.
LABEL_OP_TYPES = frozenset({"ArgMax", "TopK", "LabelSelect", "LabelSelect_hls"})


class GoldenError(NashcError):
    """A model cannot be executed for the golden checks (unsupported op, bad input)."""


@dataclass
class TensorComparison:
    """One tensor compared between two executions.

    `kind` is ``bit-exact``, ``tolerance``, ``labels`` or ``integer codes`` (level 3:
    integer tensors of the hardware graph against level 2's output mapped back through
    the output's affine tail, see `nashc.targets.verify`); `tolerance` is the largest
    |difference| accepted (0 for exact kinds); `max_abs_diff` the largest one found
    (for ``labels``: of the label values, any non-zero is a mismatch)."""

    tensor: str
    kind: str
    max_abs_diff: float
    tolerance: float
    ok: bool
    note: str = ""


@dataclass
class LevelResult:
    """One verification level: `max_abs_diff` of the graph outputs, `ok` when every
    comparison passed, `comparison` the kinds used (e.g. ``bit-exact + tolerance``),
    `tolerance` the one applied to the outputs (0 when exact), `tensors` each
    comparison made."""

    name: str
    max_abs_diff: float
    ok: bool
    comparison: str = "bit-exact"
    tolerance: float = 0.0
    tensors: list[TensorComparison] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, comps: Sequence[TensorComparison],
           outputs: Sequence[str]) -> LevelResult:
        """The level's result from its comparisons; `outputs` names the graph outputs
        (their comparisons give `max_abs_diff` and `tolerance`)."""
        outs = [c for c in comps if c.tensor in outputs] or list(comps)
        kinds = list(dict.fromkeys(c.kind for c in comps))
        return cls(name=name,
                   max_abs_diff=max((c.max_abs_diff for c in outs), default=0.0),
                   ok=bool(comps) and all(c.ok for c in comps),
                   comparison=" + ".join(kinds),
                   tolerance=max((c.tolerance for c in outs), default=0.0),
                   tensors=list(comps))


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


def load_model(path: str | Path) -> ModelWrapper:
    """Loads an ONNX/QONNX model with its external data (e.g. Brevitas' ``.onnx.data``),
    with a dynamic batch axis fixed to 1 and an opset below 13 converted up
    (`nashc.runtime.load.normalise_model`; `load_notes` says what changed). A missing or
    malformed file raises `GoldenError`."""
    import onnx

    from nashc.runtime.load import normalise_model

    p = Path(path)
    if not p.is_file():
        raise GoldenError(f"model file {str(p)!r} not found")
    try:
        proto = onnx.load(str(p), load_external_data=True)
        model = ModelWrapper(proto)
    except Exception as err:  # onnx raises several types for bad files
        raise GoldenError(f"cannot load model {str(p)!r}: {err}") from None
    return normalise_model(model, str(p))[0]


# -- executors -----------------------------------------------------------------------


def _prepared(model: ModelWrapper) -> ModelWrapper:
    """A copy with a dynamic batch fixed to 1 (`normalise_model`), shapes inferred."""
    from nashc.runtime.load import normalise_model

    m, _ = normalise_model(ModelWrapper(copy.deepcopy(model.model)), raise_opset=False)
    return m.transform(InferShapes())


def to_standard_onnx(model: ModelWrapper) -> ModelWrapper:
    """A copy of ``model`` with hybrid ops and QONNX quantizers lowered to standard ONNX."""
    m = _prepared(model)
    opset = next((o.version for o in m.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 11:  # the lowering emits Round (opset 11): convert the graph up first
        from nashc.runtime.load import normalise_model

        m, _ = normalise_model(m)
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


def run_onnxruntime(model: ModelWrapper, inputs: dict[str, np.ndarray],
                    extra: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Executes ``model`` in onnxruntime (graph optimisations off) after lowering hybrid ops
    and QONNX quantizers to standard ONNX; returns the graph outputs and the `extra`
    intermediate tensors (float32, names as in ``model``: the lowering keeps the names of
    quantizer outputs)."""
    from onnx import TensorProto

    std = to_standard_onnx(model)
    outs = {o.name for o in std.graph.output}
    for t in extra:
        if t not in outs:
            std.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
            outs.add(t)
    sess = _ort_session(std)
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


def float_tolerance(ref: np.ndarray, dtype: Any = np.float32) -> float:
    """``FLOAT_TOL_ULPS * eps(dtype) * max|ref|`` (at least the dtype's smallest normal
    number): the float rounding two executions of the same float ops may differ by.
    float32: eps = 2^-23 = 1.19e-7, so 1.9e-6 for a tensor of magnitude 1."""
    info = np.finfo(np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.float32)
    mag = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    return float(FLOAT_TOL_ULPS * info.eps * max(mag, float(info.tiny)))


def compare_tensor(name: str, ref: np.ndarray, got: np.ndarray, kind: str) -> TensorComparison:
    """Compares `got` with `ref` (reshaped to it) as `kind`: ``bit-exact``, ``labels``
    (both exact) or ``tolerance`` (`float_tolerance` of `ref`). Different sizes raise
    `GoldenError`."""
    a = np.asarray(ref)
    b = np.asarray(got)
    if a.size != b.size:
        raise GoldenError(f"tensor {name!r}: sizes differ ({a.shape} vs {b.shape})")
    x = a.astype(np.float64)
    y = b.astype(np.float64).reshape(x.shape)
    diff = float(np.max(np.abs(x - y))) if x.size else 0.0
    if kind == "tolerance":
        tol = float_tolerance(a, a.dtype)
        return TensorComparison(name, kind, diff, tol, bool(diff <= tol))
    if kind not in ("bit-exact", "labels"):
        raise ValueError(f"unknown comparison kind {kind!r}")
    return TensorComparison(name, kind, diff, 0.0, bool(np.array_equal(x, y)))


def output_kind(model: ModelWrapper, tensor: str, value: np.ndarray | None = None) -> str:
    """How a tensor of `model` is compared: ``labels`` for ArgMax/TopK indices and
    integer arrays, ``bit-exact`` for quantizer outputs and integer QONNX datatypes,
    else ``tolerance``."""
    prod = model.find_producer(tensor)
    if value is not None and np.asarray(value).dtype.kind in "iub":
        return "labels"
    if prod is not None and prod.op_type in LABEL_OP_TYPES and \
            (prod.op_type != "TopK" or list(prod.output).index(tensor) == 1):
        return "labels"
    if prod is not None and prod.op_type in QUANTIZER_OP_TYPES:
        return "bit-exact"
    try:
        dt = model.get_tensor_datatype(tensor)
    except Exception:  # no annotation
        return "tolerance"
    if dt is not None and dt.is_integer() and dt != DataType["FLOAT32"]:
        return "bit-exact"
    return "tolerance"


def quantized_inputs_of_float_tail(model: ModelWrapper, tensor: str,
                                   limit: int = 8) -> list[str]:
    """The last quantizer outputs (that depend on a graph input) before `tensor`,
    walking back through non-quantizer nodes: the integer tensors a float tail starts
    from. At most `limit`, nearest first."""
    inits = {i.name for i in model.graph.initializer}
    found: list[str] = []
    seen: set[str] = set()
    stack = [tensor]
    while stack and len(found) < limit:
        t = stack.pop(0)
        if t in seen or t in inits:
            continue
        seen.add(t)
        prod = model.find_producer(t)
        if prod is None:
            continue
        if prod.op_type in QUANTIZER_OP_TYPES and t != tensor:
            if _depends_on_input(model, prod, inits):
                found.append(t)
            continue
        stack.extend(i for i in prod.input if i)
    return found


def _depends_on_input(model: ModelWrapper, node: Any, inits: set[str]) -> bool:
    """True when `node` reads (transitively) a graph input, not only constants."""
    graph_inputs = {i.name for i in model.graph.input} - inits
    stack, seen = list(node.input), set()
    while stack:
        t = stack.pop()
        if not t or t in seen or t in inits:
            continue
        seen.add(t)
        if t in graph_inputs:
            return True
        p = model.find_producer(t)
        if p is not None:
            stack.extend(p.input)
    return False


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
    comps = []
    for name, t in zip(ctx.outputs, res):
        a = np.asarray(ref[name], dtype=np.float64)
        b = t.detach().cpu().numpy().astype(np.float64).reshape(a.shape)
        d = float(np.max(np.abs(a - b))) if a.size else 0.0
        tol = LEVEL1_RTOL * max(1.0, float(np.max(np.abs(a))) if a.size else 1.0)
        comps.append(TensorComparison(name, "tolerance", d, tol, d <= tol,
                                      "PyTorch vs qonnx kernels"))
    return LevelResult.of("torch-vs-qonnx", comps, ctx.outputs)


def _level2(ctx: _Ctx) -> LevelResult:
    """Outputs by `output_kind`; the quantized inputs of a float or label output
    bit-exactly too."""
    from qonnx.core.onnx_exec import execute_onnx

    plan: list[tuple[str, str]] = []
    for name in ctx.outputs:
        kind = output_kind(ctx.model, name)
        plan.append((name, kind))
        if kind in ("tolerance", "labels"):
            plan += [(t, "bit-exact")
                     for t in quantized_inputs_of_float_tail(ctx.model, name)]
    extra = [t for t, _ in plan if t not in ctx.outputs]
    if extra:
        full = execute_onnx(_prepared(ctx.model), dict(ctx.inputs),
                            return_full_exec_context=True)
        ref = {t: np.asarray(full[t]) for t, _ in plan}
    else:
        ref = ctx.qonnx()
    got = run_onnxruntime(ctx.model, ctx.inputs, extra=extra)
    comps = []
    for t, kind in plan:
        if kind == "tolerance" and np.asarray(ref[t]).dtype.kind in "iub":
            kind = "labels"
        comps.append(compare_tensor(t, ref[t], got[t], kind))
    return LevelResult.of("qonnx-vs-onnxruntime", comps, ctx.outputs)


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
