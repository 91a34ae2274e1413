"""Executors and the golden checks (verification levels 1 and 2; level 3, FINN's dataflow
graph, is `nashc.targets.verify`).

- level 1 ("torch-vs-qonnx"): a PyTorch/Brevitas module vs its QONNX graph executed by
  qonnx (only when a module is given);
- level 2 ("qonnx-vs-onnxruntime"): the QONNX graph with nashc hybrid custom ops executed
  by qonnx (numpy references, onnxruntime per standard node) vs the whole graph lowered
  to standard ONNX in onnxruntime with graph optimisations off.

Level 2 must be bit-exact (``max_abs_diff == 0``). Level 1 allows float rounding
(``LEVEL1_RTOL`` relative to the output's magnitude) since PyTorch and onnxruntime
kernels accumulate in different orders. Further levels (FINN) append to ``LEVELS``.

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
