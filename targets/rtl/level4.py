"""Verification level 4: the generated RTL of every hybrid layer of a FINN dataflow
graph, simulated with Verilator, against the layer's python execution (level 3).

For each ``ShiftMVAU_rtl``/``AdderMVAU_rtl`` node (with its folding as lowered), the
unit's SystemVerilog is generated, built (cached by content) and fed two sets of input
vectors: the vectors the layer receives in the level-3 run of seeded random network
inputs (at most `max_real` of them) and `n_random` vectors drawn uniformly from the
layer's input datatype (its extremes included). The outputs must equal the python
execution bit for bit. Cost: one Verilator build per layer shape (about 5-15 s of CPU
here), then ``vectors x MW/SIMD x MH/PE`` simulated cycles per layer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from nashc.targets import hw_layers
from nashc.targets.rtl.generate import hw_thresholds, pack_beats, unpack_beats, write_mvau
from nashc.targets.rtl.sim import build, run_stream

__all__ = ["LayerRtlCheck", "hybrid_rtl_nodes", "check_layer_rtl", "verify_rtl",
           "write_design_rtl"]


@dataclass
class LayerRtlCheck:
    """Level-4 result of one layer."""

    name: str
    op_type: str
    pe: int
    simd: int
    vectors: int
    cycles: int
    mismatches: int
    max_abs_diff: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def hybrid_rtl_nodes(dataflow: ModelWrapper) -> list[Any]:
    """The nodes of `dataflow` that are nashc hybrid units (any specialisation)."""
    return [n for n in dataflow.graph.node if hw_layers.is_hybrid_hw_node(n)]


def _rtl_instance(node: Any) -> Any:
    """The ``_rtl`` instance of a hybrid node (abstract/HLS nodes are viewed as RTL)."""
    from onnx import helper

    hw_layers.register_hw_layers()
    base = node.op_type.removesuffix("_hls").removesuffix("_rtl")
    rnode = helper.make_node(base + "_rtl", list(node.input), list(node.output),
                             name=node.name, domain=hw_layers.RTL_DOMAIN)
    rnode.attribute.extend(node.attribute)
    return getCustomOp(rnode)


def check_layer_rtl(dataflow: ModelWrapper, node: Any, x: np.ndarray, workdir: Path,
                    stall_percent: int = 0, seed: int = 0) -> LayerRtlCheck:
    """Simulates one hybrid layer on the integer input vectors `x` (N, MW) and compares
    with its python execution."""
    t0 = time.time()
    inst = _rtl_instance(node)
    w = dataflow.get_initializer(node.input[1])
    t = dataflow.get_initializer(node.input[2]) if len(node.input) > 2 else None
    p = inst.rtl_params(w, t)
    idt = inst.get_input_datatype(0)
    thr = None if p.no_act or t is None else hw_thresholds(p, t, w, idt)
    top = "nashc_" + "".join(c if c.isalnum() else "_" for c in node.name)
    files = write_mvau(p, w, thr, workdir, top)
    exe = build(files, top)
    x = np.asarray(x, np.float64).reshape(-1, p.mw)
    ref = inst.python_outputs(x, w, t).reshape(-1, p.mh)
    beats = pack_beats(x.astype(np.int64).reshape(-1, p.simd), p.abits, p.signed_x)
    words, cycles = run_stream(exe, workdir, beats, x.shape[0] * p.nf, seed, stall_percent)
    y = unpack_beats(words, p.pe, p.obits, p.signed_o).reshape(-1, p.mh)
    return LayerRtlCheck(name=node.name, op_type=node.op_type, pe=p.pe, simd=p.simd,
                         vectors=int(x.shape[0]), cycles=cycles,
                         mismatches=int(np.sum(y != ref)),
                         max_abs_diff=float(np.max(np.abs(y - ref))) if y.size else 0.0,
                         seconds=round(time.time() - t0, 2))


def verify_rtl(level2_model: ModelWrapper, lowered: Any, workdir: Path, seed: int = 0,
               max_real: int = 64, n_random: int = 16) -> list[LayerRtlCheck]:
    """Level 4 on every hybrid layer of `lowered` (a `nashc.targets.lower.LoweredModel`),
    with the level-3 run of `level2_model`'s seeded random inputs giving the real
    activations. Returns one result per layer (empty when there is no hybrid layer)."""
    from nashc.runtime.golden import random_inputs
    from nashc.targets.verify import _Level3Run

    nodes = hybrid_rtl_nodes(lowered.dataflow)
    if not nodes:
        return []
    run = _Level3Run(lowered, random_inputs(level2_model, seed))
    rng = np.random.default_rng(seed)
    out = []
    for node in nodes:
        inst = _rtl_instance(node)
        mw = int(inst.get_nodeattr("MW"))
        idt = inst.get_input_datatype(0)
        real = np.asarray(run.cctx[node.input[0]], np.float64).reshape(-1, mw)
        if real.shape[0] > max_real:
            real = real[rng.choice(real.shape[0], max_real, replace=False)]
        rand = rng.integers(int(idt.min()), int(idt.max()) + 1, size=(n_random, mw))
        rand[0, :] = idt.min()
        rand[1, :] = idt.max()
        x = np.concatenate([real, rand.astype(np.float64)])
        out.append(check_layer_rtl(lowered.dataflow, node, x, Path(workdir) / node.name,
                                   seed=seed))
    return out


def write_design_rtl(dataflow: ModelWrapper, out_dir: Path) -> list[Path]:
    """Writes the generated RTL of every hybrid layer of `dataflow` into
    ``out_dir/<layer>/`` (top module ``nashc_<layer>``, ROM files named relative to that
    folder, so a simulator or synthesis tool reads them from there) and
    ``out_dir/layers.json`` (each layer's top module, files and core parameters). Writes
    nothing when there is no hybrid layer. Returns the folders written."""
    import json

    dirs = []
    index = []
    for node in hybrid_rtl_nodes(dataflow):
        inst = _rtl_instance(node)
        top = "nashc_" + "".join(c if c.isalnum() else "_" for c in node.name)
        d = Path(out_dir) / node.name
        files = inst.write_rtl(dataflow, d, top)
        w = dataflow.get_initializer(node.input[1])
        t = dataflow.get_initializer(node.input[2]) if len(node.input) > 2 else None
        index.append({"layer": node.name, "op_type": node.op_type, "top": top,
                      "files": [f"{node.name}/{f.name}" for f in files],
                      "params": inst.rtl_params(w, t).as_dict()})
        dirs.append(d)
    if index:
        (Path(out_dir) / "layers.json").write_text(json.dumps(index, indent=1) + "\n")
    return dirs
