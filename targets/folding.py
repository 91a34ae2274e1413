"""Accelerator search over a FINN dataflow graph: folding (PE/SIMD) and implementation
style (LUT/DSP, memory style) per hardware layer, inside an absolute resource budget that
covers the whole design FINN would build.

What is counted (`FoldingProblem.evaluate`), all with FINN's own estimators:

* every hardware layer: `get_exp_cycles()` and `node_res_estimation()` of the node, ours
  included;
* the data-width converters FINN's `InsertDWC` puts on every edge whose folded stream
  shapes differ (`StreamingDataWidthConverter.node_res_estimation`);
* the FIFOs of `InsertFIFO(create_shallow_fifos=True)` (what every strategy of FINN's
  `step_set_fifo_depths` inserts): one per edge and converter side and one at each graph
  end, at FINN's default depth 2 (`inFIFODepths`/`outFIFODepths`), costed by
  `StreamingFIFO.node_res_estimation` (FINN's fitted `fifo.sv` model);
* the deep FIFO of each residual join (a layer with several streamed inputs, FINN's
  `ElementwiseAdd` after `DuplicateStreams`): the shorter branch buffers what arrives
  while the longer one is still busy. Its depth in stream words is
  ``ceil(dL * words / II)``, dL the difference of the branches' latencies (FINN's
  `dataflow_performance` model: the sum of `get_exp_cycles()` along the path, which
  assumes no overlap between layers and is therefore an upper bound), `words` the words
  per frame on that input and II the initiation interval; its memory style is the
  cheapest of FINN's FIFO styles (auto/block/ultra/distributed) relative to the budget;
* the board's I/O: the stream into the first layer and out of the last may not be wider
  than FINN's IODMA interface on that board (`io_width_limit`).

Not counted: what FINN's FIFO-sizing simulation would add beyond these depths, the
IODMAs/shell themselves, and anything post-synthesis (the estimates are FINN's analytic
models).

Searches sharing this model:

* `SearchFolding` (this module): coarse-to-fine, as a qonnx `Transformation` usable in
  any FINN flow in place of `SetFolding`. Objective: the highest throughput (smallest
  initiation interval II = slowest layer's cycles) inside the budget, then the fewest
  resources at that II (budget-normalised sum of LUT, BRAM_18K, URAM, DSP); latency is
  bought with extra resources only when a latency limit is given.
* `SetFoldingWithinBudget`: FINN's own `SetFolding` at its best inside the same budget
  and accounting: "FINN defaults" searches only the target cycles; "FINN tuned" also
  `mvau_wwidth_max` (up to FINN's 8191-bit HLS limit) and `two_pass_relaxation`.
* `nashc.targets.folding_exact.solve_exact`: the same problem as an integer program.

`confirm_design` runs FINN's `InsertDWC`/`InsertFIFO`/`SpecializeLayers` on a folded
graph (deep FIFOs sized as above) and checks it: the figures FINN's `res_estimation`
gives for the design as it would be built, and a list of problems (edge shapes and
widths, stream limits, budget).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from finn.util.basic import MAX_ALLOWED_AP_INT_W
from finn.util.fpgadataflow import is_hls_node, is_rtl_node
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from nashc.targets.boards import RESOURCE_KEYS

__all__ = [
    "RESOURCES",
    "Option",
    "Unit",
    "FoldingResult",
    "FoldingProblem",
    "Breakdown",
    "enumerate_units",
    "build_problem",
    "io_width_limit",
    "evaluate_assignment",
    "coarse_to_fine",
    "apply_assignment",
    "current_assignment",
    "confirm_design",
    "SearchFolding",
    "SetFoldingWithinBudget",
    "finn_setfolding",
    "show_as_finn_mvau",
    "restore_op_types",
]

#: FINN's resource keys, in the order used for resource vectors.
RESOURCES = RESOURCE_KEYS

#: FINN's default `inFIFODepths`/`outFIFODepths` (finn.custom_op.fpgadataflow.hwcustomop),
#: the depth of every FIFO `InsertFIFO(create_shallow_fifos=True)` creates.
FIFO_DEPTH = 2

#: FIFO memory styles FINN's `StreamingFIFO` offers for a deep FIFO.
FIFO_STYLES = ("auto", "block", "ultra", "distributed")

_ZERO = (0.0, 0.0, 0.0, 0.0)


def io_width_limit(fpgapart: str) -> int | None:
    """Widest stream (bits) FINN's IODMA feeds at a graph end on the board of `fpgapart`.

    Alveo: `DataflowBuildConfig.vitis_iodma_intf_max_width` (512), the `max_intfwidth`
    the builder gives `InsertIODMA`. Zynq: `finn.util.basic.pynq_native_port_width` of
    the board (64 or 128), what `ZynqBuild` gives `InsertIODMA`. None for a part FINN
    has no board for (no limit applied)."""
    from finn.util.basic import alveo_part_map, pynq_native_port_width, pynq_part_map

    if fpgapart in alveo_part_map.values():
        from finn.builder.build_dataflow_config import DataflowBuildConfig

        return int(DataflowBuildConfig.__dataclass_fields__["vitis_iodma_intf_max_width"]
                   .default)
    widths = [pynq_native_port_width[b] for b, p in pynq_part_map.items()
              if p == fpgapart and b in pynq_native_port_width]
    return min(widths) if widths else None


def _is_hw_node(node: Any) -> bool:
    """A specialised FINN layer (HLS or RTL backend), the nodes FINN's `SetFolding` and
    estimates see."""
    return is_hls_node(node) or is_rtl_node(node)


def _divisors(n: int) -> list[int]:
    n = int(n)
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


#: A stream port as FINN's insertions see it: (folded last dim, stream width in bits,
#: width padded to bytes, FINN DataType name, words per frame).
PortKey = tuple[int, int, int, str, int]


@dataclass(frozen=True)
class Option:
    """One way to fold/implement a unit: attributes per node name, cycles (the unit's
    slowest node), resources of its nodes, and for the accounting: `latency` (sum of its
    nodes' cycles), `ports` (PortKey of every streamed input/output at the unit's
    boundary, by port id ``"<node>:in<i>"``/``"<node>:out<i>"``) and `link` (DWCs and
    FIFOs inside the unit, e.g. between a window generator and its VVAU)."""

    attrs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    cycles: int
    res: tuple[float, float, float, float]  # in RESOURCES order
    latency: int = -1
    ports: tuple[tuple[str, PortKey], ...] = ()
    link: tuple[float, float, float, float] = _ZERO
    link_count: tuple[int, int] = (0, 0)  # (DWCs, FIFOs) inside the unit

    def attrs_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(values) for name, values in self.attrs}

    @property
    def lat(self) -> int:
        return self.cycles if self.latency < 0 else self.latency

    def port(self, pid: str) -> PortKey:
        for k, v in self.ports:
            if k == pid:
                return v
        raise KeyError(pid)


@dataclass
class Unit:
    """A hardware layer, or layers whose folding FINN ties together."""

    nodes: tuple[str, ...]
    op_types: tuple[str, ...]
    options: list[Option]
    tunable: bool = True

    @property
    def name(self) -> str:
        return self.nodes[-1]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        cyc = np.array([o.cycles for o in self.options], dtype=np.int64)
        res = np.array([np.add(o.res, o.link) for o in self.options], dtype=np.float64)
        return cyc, res


@dataclass
class FoldingResult:
    """What a folding search decided, with the figures it optimised.

    `resources` is the whole design (layers + DWCs + FIFOs + deep FIFOs) when the search
    had the accounting (`FoldingProblem`), `breakdown` says how it splits."""

    strategy: str
    choice: list[int]  # option index per unit
    ii_cycles: int
    latency_cycles: int
    resources: dict[str, float]
    feasible: bool
    evaluated: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    breakdown: dict[str, Any] = field(default_factory=dict)

    def fps(self, clock_mhz: float) -> float:
        return clock_mhz * 1e6 / self.ii_cycles if self.ii_cycles else 0.0

    def to_json(self, clock_mhz: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "ii_cycles": self.ii_cycles,
            "latency_cycles": self.latency_cycles,
            "resources": self.resources,
            "feasible": self.feasible,
            "options_evaluated": self.evaluated,
            "seconds": round(self.seconds, 4),
        }
        if self.breakdown:
            out["breakdown"] = self.breakdown
        if clock_mhz:
            out["fps"] = self.fps(clock_mhz)
        if self.notes:
            out["notes"] = self.notes
        return out


# --- FINN's costs of what it inserts ------------------------------------------------------


@cache
def _fifo_res(fold: int, dtype: str, depth: int, style: str,
              fpgapart: str) -> tuple[float, float, float, float]:
    """FINN's estimate of a StreamingFIFO_rtl (`folded_shape` [.., fold], `dataType`)."""
    from onnx import helper

    node = helper.make_node(
        "StreamingFIFO_rtl", ["i"], ["o"], domain="finn.custom_op.fpgadataflow.rtl",
        backend="fpgadataflow", depth=int(depth), folded_shape=[1, int(fold)],
        normal_shape=[1, int(fold)], dataType=dtype, ram_style=style)
    est = getCustomOp(node).node_res_estimation(fpgapart)
    return tuple(float(est.get(r, 0.0)) for r in RESOURCES)  # type: ignore[return-value]


@cache
def _dwc_res(src: PortKey, dst: PortKey, fpgapart: str) -> tuple[float, float, float, float]:
    """FINN's estimate of the StreamingDataWidthConverter `InsertDWC` puts between two
    ports (inWidth = producer's stream width, outWidth = consumer's)."""
    from onnx import helper

    node = helper.make_node(
        "StreamingDataWidthConverter_hls", ["i"], ["o"],
        domain="finn.custom_op.fpgadataflow.hls", backend="fpgadataflow",
        inShape=[1, src[0]], outShape=[1, dst[0]], inWidth=int(src[1]), outWidth=int(dst[1]),
        dataType=src[3])
    est = getCustomOp(node).node_res_estimation(fpgapart)
    return tuple(float(est.get(r, 0.0)) for r in RESOURCES)  # type: ignore[return-value]


def _add(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


@cache
def _edge_cost(src: PortKey | None, dst: PortKey | None, fpgapart: str, depth: int = FIFO_DEPTH,
               style: str = "auto") -> tuple[tuple[float, float, float, float], int, int]:
    """(resources, DWCs, FIFOs) FINN inserts on one edge: a FIFO after the producer, and
    where the folded last dims differ a DWC and a second FIFO before the consumer
    (InsertDWC then InsertFIFO). `depth`/`style` apply to the FIFO next to the consumer.
    `src` None: the graph input (one FIFO); `dst` None: the graph output."""
    if src is None and dst is None:
        return _ZERO, 0, 0
    if src is None:
        assert dst is not None
        return _fifo_res(dst[0], dst[3], depth, style, fpgapart), 0, 1
    if dst is None:
        return _fifo_res(src[0], src[3], FIFO_DEPTH, "auto", fpgapart), 0, 1
    if src[0] == dst[0]:
        return _fifo_res(src[0], src[3], max(depth, FIFO_DEPTH), style, fpgapart), 0, 1
    res = _add(_fifo_res(src[0], src[3], FIFO_DEPTH, "auto", fpgapart),
               _dwc_res(src, dst, fpgapart))
    res = _add(res, _fifo_res(dst[0], dst[3], depth, style, fpgapart))
    return res, 1, 2


# --- the option model ------------------------------------------------------------------


def _fast(inst: Any) -> Any:
    """Caches attribute look-ups on this (throw-away) instance. qonnx rebuilds the
    attribute table and searches the node's attribute list on every `get_nodeattr`,
    which dominates the cost of FINN's estimators when thousands of options are costed.
    Values are cached until `set_nodeattr` changes them, so the estimates are FINN's own
    (the tests compare the search's figures with FINN's analyses on the result graph)."""
    types = inst.get_nodeattr_types()
    inst.get_nodeattr_types = lambda: types
    cache: dict[str, Any] = {}
    get, put = inst.get_nodeattr, inst.set_nodeattr

    def cached_get(name: str) -> Any:
        if name not in cache:
            cache[name] = get(name)
        return cache[name]

    def uncached_set(name: str, value: Any) -> None:
        put(name, value)
        cache.clear()

    inst.get_nodeattr = cached_get
    inst.set_nodeattr = uncached_set
    return inst


def _node_cost(inst: Any, fpgapart: str) -> tuple[int, tuple[float, float, float, float]]:
    est = inst.node_res_estimation(fpgapart)
    return int(inst.get_exp_cycles()), tuple(float(est.get(r, 0.0)) for r in RESOURCES)  # type: ignore[return-value]


def _attr_names(inst: Any) -> set[str]:
    return set(inst.get_nodeattr_types().keys())


def _allowed(inst: Any, attr: str) -> set[Any] | None:
    spec = inst.get_nodeattr_types().get(attr)
    if spec is None or len(spec) < 4:
        return None
    return set(spec[3])


def _stream_inputs(model: ModelWrapper, node: Any) -> list[int]:
    """Indices of the node's streamed inputs (not initializers)."""
    return [i for i, t in enumerate(node.input)
            if t and model.get_initializer(t) is None]


def _in_key(inst: Any, i: int) -> PortKey:
    fs = inst.get_folded_input_shape(i)
    return (int(fs[-1]), int(inst.get_instream_width(i)), int(inst.get_instream_width_padded(i)),
            inst.get_input_datatype(i).name, int(np.prod(fs[:-1])))


def _out_key(inst: Any, i: int) -> PortKey:
    fs = inst.get_folded_output_shape(i)
    return (int(fs[-1]), int(inst.get_outstream_width(i)),
            int(inst.get_outstream_width_padded(i)), inst.get_output_datatype(i).name,
            int(np.prod(fs[:-1])))


def _weight_stream_ok(node: Any, inst: Any) -> bool:
    """FINN's HLS MVAU/VVAU limit: the decoupled weight stream (PE*SIMD*weight bits) is
    at most MAX_ALLOWED_AP_INT_W bits wide."""
    names = _attr_names(inst)
    if not node.domain.endswith(".hls") or not {"PE", "SIMD"} <= names:
        return True
    if "mem_mode" not in names or inst.get_nodeattr("mem_mode") != "internal_decoupled":
        return True
    try:
        wbits = inst.get_input_datatype(1).bitwidth()
    except Exception:  # noqa: BLE001 - a node without a weight input has no weight stream
        return True
    return int(inst.get_nodeattr("PE")) * int(inst.get_nodeattr("SIMD")) * wbits <= MAX_ALLOWED_AP_INT_W


def _hls_streams_ok(model: ModelWrapper, node: Any, inst: Any) -> bool:
    """An HLS node's data streams are ap_uint words: at most MAX_ALLOWED_AP_INT_W bits."""
    if not node.domain.endswith(".hls"):
        return True
    for i in _stream_inputs(model, node):
        if inst.get_instream_width(i) > MAX_ALLOWED_AP_INT_W:
            return False
    return all(inst.get_outstream_width(o) <= MAX_ALLOWED_AP_INT_W for o in range(len(node.output)))


def _parallel_choices(model: ModelWrapper, node: Any, inst: Any,
                      embedded: bool = False) -> list[dict[str, Any]]:
    """Legal parallelism settings of one node, following the rules of FINN's SetFolding."""
    names = _attr_names(inst)
    op = node.op_type
    if {"MW", "MH", "PE", "SIMD"} <= names:  # matrix-vector units (MVAU and ours)
        wbits = inst.get_input_datatype(1).bitwidth()
        hls = node.domain.endswith(".hls")
        decoupled = "mem_mode" in names and inst.get_nodeattr("mem_mode") == "internal_decoupled"
        out = []
        for pe in _divisors(inst.get_nodeattr("MH")):
            for simd in _divisors(inst.get_nodeattr("MW")):
                if hls and decoupled and not embedded and pe * simd * wbits > MAX_ALLOWED_AP_INT_W:
                    continue  # (with embedded weights the option is checked per mem_mode)
                out.append({"PE": pe, "SIMD": simd})
        return out
    if op.startswith("ConvolutionInputGenerator"):
        ch = inst.get_nodeattr("IFMChannels")
        out = [{"SIMD": s} for s in _divisors(ch)]
        if "parallel_window" in names:
            for o in out:
                o["parallel_window"] = 0
            out.append({"SIMD": ch, "parallel_window": 1})
        return out
    if "Labels" in names and "PE" in names:
        return [{"PE": p} for p in _divisors(inst.get_nodeattr("Labels"))]
    for attr in ("PE", "SIMD"):
        if attr in names:
            try:
                ch = int(inst.get_nodeattr("NumChannels"))
            except (AttributeError, Exception):
                ch = int(inst.get_normal_output_shape()[-1])
            if ch <= 0:
                return []
            return [{attr: p} for p in _divisors(ch)]
    return []


def _impl_choices(node: Any, inst: Any, embedded: bool = False) -> list[dict[str, Any]]:
    """Implementation variants: multiplier resource type and weight memory style; with
    `embedded`, FINN's MVAU_hls also with `mem_mode="internal_embedded"` (weights inside
    the HLS kernel: no 8191-bit weight stream, but FINN notes long synthesis times, and
    its BRAM estimate for it assumes the decoupled memory's packing)."""
    names = _attr_names(inst)
    variants: list[dict[str, Any]] = [{}]
    if "resType" in names and node.domain.endswith(".hls"):
        allowed = _allowed(inst, "resType") or set()
        types = [t for t in ("lut", "dsp") if t in allowed]
        if types:
            variants = [{**v, "resType": t} for v in variants for t in types]
    if "ram_style" in names and "mem_mode" in names and (
        inst.get_nodeattr("mem_mode") == "internal_decoupled"
    ):
        allowed = _allowed(inst, "ram_style") or set()
        styles = [s for s in ("block", "distributed", "ultra") if s in allowed]
        new = []
        for v in variants:
            for s in styles:
                extra: dict[str, Any] = {"ram_style": s}
                if s == "ultra" and "runtime_writeable_weights" in names:
                    # FINN requires AXI-lite writable weights for URAM on UltraScale+.
                    extra["runtime_writeable_weights"] = 1
                elif "runtime_writeable_weights" in names:
                    extra["runtime_writeable_weights"] = 0
                new.append({**v, **extra})
        variants = new or variants
        if embedded and node.op_type == "MVAU_hls":
            res_types = sorted({v["resType"] for v in variants if "resType" in v}) or [None]
            variants = [{**v, "mem_mode": "internal_decoupled"} for v in variants]
            for t in res_types:
                emb: dict[str, Any] = {"mem_mode": "internal_embedded"}
                if t is not None:
                    emb["resType"] = t
                if "runtime_writeable_weights" in names:
                    emb["runtime_writeable_weights"] = 0
                variants.append(emb)
    return variants


def _pareto_prune(options: list[Option]) -> list[Option]:
    """Drops options that are no faster, no shorter and no cheaper in every resource
    than another option with the same stream ports (ports decide the DWC/FIFO costs)."""
    if len(options) <= 1:
        return options
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, o in enumerate(options):
        groups.setdefault(o.ports, []).append(i)
    keep_idx: list[int] = []
    for idx in groups.values():
        vec = np.array([[options[i].cycles, options[i].lat, *np.add(options[i].res,
                                                                    options[i].link)]
                        for i in idx], dtype=np.float64)
        order = np.lexsort(vec.T[::-1])
        kept = np.empty((0, vec.shape[1]))
        for j in order:
            v = vec[j]
            if not np.any(np.all(kept <= v, axis=1)):
                kept = np.vstack([kept, v])
                keep_idx.append(idx[j])
    return [options[i] for i in sorted(keep_idx)]


def _freeze(attrs: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    return tuple((n, tuple(sorted(a.items()))) for n, a in attrs.items())


class _UnitShape:
    """The nodes of one unit and how they connect, for costing options."""

    def __init__(self, work: ModelWrapper, nodes: Sequence[Any], insts: Sequence[Any],
                 fpgapart: str) -> None:
        self.nodes = list(nodes)
        self.insts = list(insts)
        self.fpgapart = fpgapart
        self.work = work
        names = {n.name for n in nodes}
        self.in_ports: list[tuple[int, int]] = []  # (node index, input index) at the boundary
        self.out_ports: list[tuple[int, int]] = []
        self.inner: list[tuple[int, int, int, int]] = []  # (src node, out, dst node, in)
        for k, node in enumerate(nodes):
            for i in _stream_inputs(work, node):
                prod = work.find_producer(node.input[i])
                if prod is not None and prod.name in names:
                    j = [n.name for n in nodes].index(prod.name)
                    self.inner.append((j, list(prod.output).index(node.input[i]), k, i))
                else:
                    self.in_ports.append((k, i))
            for o, t in enumerate(node.output):
                cons = work.find_consumers(t)
                if not cons or any(c.name not in names for c in cons):
                    self.out_ports.append((k, o))

    def option(self, attrs: Mapping[str, Mapping[str, Any]] | None = None) -> Option:
        """Sets `attrs` (node name -> attributes; None: keep the node's own) and costs."""
        cyc, lat = 0, 0
        res: tuple[float, float, float, float] = _ZERO
        for node, inst in zip(self.nodes, self.insts):
            if attrs is not None:
                for name, value in attrs.get(node.name, {}).items():
                    inst.set_nodeattr(name, value)
        for inst in self.insts:
            c, r = _node_cost(inst, self.fpgapart)
            cyc, lat, res = max(cyc, c), lat + c, _add(res, r)
        ports = []
        for k, i in self.in_ports:
            ports.append((f"{self.nodes[k].name}:in{i}", _in_key(self.insts[k], i)))
        for k, o in self.out_ports:
            ports.append((f"{self.nodes[k].name}:out{o}", _out_key(self.insts[k], o)))
        link: tuple[float, float, float, float] = _ZERO
        nd = nf = 0
        for j, o, k, i in self.inner:
            r, d, f = _edge_cost(_out_key(self.insts[j], o), _in_key(self.insts[k], i),
                                 self.fpgapart)
            link, nd, nf = _add(link, r), nd + d, nf + f
        frozen = _freeze(attrs) if attrs is not None else ()
        return Option(frozen, cyc, res, lat, tuple(ports), link, (nd, nf))

    def legal(self) -> bool:
        return all(_weight_stream_ok(n, i) and _hls_streams_ok(self.work, n, i)
                   for n, i in zip(self.nodes, self.insts))


def enumerate_units(model: ModelWrapper, fpgapart: str, prune: bool = True) -> list[Unit]:
    """Builds the option table of every hardware layer of `model` (not modified)."""
    return build_problem(model, fpgapart, prune=prune).units


def _unit_groups(work: ModelWrapper) -> list[list[Any]]:
    """Hardware nodes grouped into units, in graph order: a depthwise window generator
    goes with its VVAU/Pool consumer (FINN ties their folding)."""
    nodes = [n for n in work.graph.node if _is_hw_node(n)]
    grouped: dict[str, Any] = {}
    for node in nodes:
        if node.op_type.startswith(("VVAU", "Pool")):
            prod = work.find_producer(node.input[0])
            if prod is not None and prod.op_type.startswith("ConvolutionInputGenerator"):
                grouped[prod.name] = node
    out = []
    for node in nodes:
        if node.name in grouped:
            continue
        prod = work.find_producer(node.input[0]) if node.op_type.startswith(
            ("VVAU", "Pool")) else None
        if prod is not None and prod.name in grouped:
            out.append([prod, node])
        else:
            out.append([node])
    return out


def _unit_options(work: ModelWrapper, group: list[Any], fpgapart: str,
                  prune: bool, embedded: bool = False) -> Unit:
    insts = [_fast(getCustomOp(n)) for n in group]
    shape = _UnitShape(work, group, insts, fpgapart)
    node, inst = group[-1], insts[-1]
    if len(group) == 2 or node.op_type.startswith(("VVAU", "Pool")):
        choices = _depthwise_choices(group, insts)
    else:
        par = _parallel_choices(work, node, inst, embedded) or [{}]
        impl = _impl_choices(node, inst, embedded)
        choices = [{node.name: {**p, **v}} for p in par for v in impl]
    original = {n.name: {a: i.get_nodeattr(a) for c in choices for a in c.get(n.name, {})}
                for n, i in zip(group, insts)}
    opts = []
    for attrs in choices:
        opt = shape.option(attrs)
        if shape.legal():
            opts.append(opt)
    shape.option(original)
    tunable = len(opts) > 1
    if not opts:
        opts = [shape.option(None)]
    return Unit(tuple(n.name for n in group), tuple(n.op_type for n in group),
                _pareto_prune(opts) if prune else opts, tunable)


def _depthwise_choices(group: list[Any], insts: list[Any]) -> list[dict[str, dict[str, Any]]]:
    """A VVAU/Pool layer and its window generator: the generator's SIMD equals the PE;
    a VVAU at full PE may take SIMD > 1 with the generator's parallel-window mode."""
    node, inst = group[-1], insts[-1]
    swg = group[0] if len(group) == 2 else None
    swg_inst = insts[0] if swg is not None else None
    channels = int(inst.get_nodeattr("Channels") if "Channels" in _attr_names(inst)
                   else inst.get_nodeattr("NumChannels"))
    ksize = int(np.prod(inst.get_nodeattr("Kernel"))) if node.op_type.startswith("VVAU") else 1
    out = []
    for pe in _divisors(channels):
        simds = _divisors(ksize) if (node.op_type.startswith("VVAU") and pe == channels) else [1]
        for simd in simds:
            own: dict[str, Any] = {"PE": pe}
            if node.op_type.startswith("VVAU"):
                own["SIMD"] = simd
            attrs: dict[str, dict[str, Any]] = {}
            if swg is not None and swg_inst is not None:
                sw: dict[str, Any] = {"SIMD": pe}
                if "parallel_window" in _attr_names(swg_inst):
                    sw["parallel_window"] = 1 if simd > 1 else 0
                attrs[swg.name] = sw
            attrs[node.name] = own
            out.append(attrs)
    return out


# --- the whole design: units, the edges between them, residual joins, I/O --------------


@dataclass
class Breakdown:
    """The whole-design figures of one assignment (FINN's estimates)."""

    ii_cycles: int
    latency_cycles: int  # critical path, FINN's dataflow_performance model
    layers: np.ndarray  # resources of the hardware layers
    links: np.ndarray  # DWCs + depth-2 FIFOs
    deep: np.ndarray  # deep FIFOs of residual joins
    dwcs: int
    fifos: int
    deep_fifos: list[dict[str, Any]]  # node, input, depth, ram_style, resources
    io_ok: bool
    io_widths: dict[str, int]

    @property
    def total(self) -> np.ndarray:
        return self.layers + self.links + self.deep

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": dict(zip(RESOURCES, self.layers.tolist())),
            "dwc_fifo": dict(zip(RESOURCES, self.links.tolist())),
            "deep_fifos": dict(zip(RESOURCES, self.deep.tolist())),
            "dwcs": self.dwcs, "fifos": self.fifos,
            "deep_fifo_list": self.deep_fifos,
            "io_widths_bits": self.io_widths, "io_ok": self.io_ok,
        }


@dataclass(frozen=True)
class _Edge:
    src: int | None  # unit index, None = graph input
    src_port: str | None
    dst: int | None  # unit index, None = graph output
    dst_port: str | None
    dst_node: str | None  # consumer node name and its input index (deep FIFO placement)
    dst_input: int | None


class FoldingProblem:
    """Units with their option tables plus what FINN inserts between them.

    `evaluate(choice)` gives the whole-design `Breakdown`; `unit_moves` the resource
    vectors of every option of one unit with the others fixed (layer + its edges), the
    search's vectorised step. Build with `build_problem`."""

    def __init__(self, units: list[Unit], edges: list[_Edge], fpgapart: str,
                 io_max_bits: int | None, budget: Mapping[str, float] | None = None) -> None:
        self.units = units
        self.edges = edges
        self.fpgapart = fpgapart
        self.io_max_bits = io_max_bits
        self.set_budget(budget or {})
        self.preds: list[list[int]] = [[] for _ in units]
        self.incident: list[list[int]] = [[] for _ in units]
        self.joins: dict[int, list[int]] = {}
        for k, e in enumerate(edges):
            if e.src is not None:
                self.incident[e.src].append(k)
            if e.dst is not None:
                self.incident[e.dst].append(k)
                if e.src is not None:
                    self.preds[e.dst].append(e.src)
        for u in range(len(units)):
            ins = [k for k, e in enumerate(edges) if e.dst == u and e.src is not None]
            if len(ins) > 1:
                self.joins[u] = ins
        self._arrays = [u.arrays() for u in units]
        self._lat = [np.array([o.lat for o in u.options], dtype=np.int64) for u in units]
        # port key index tables
        self._keys: dict[tuple[int, str], list[PortKey]] = {}
        self._kidx: dict[tuple[int, str], np.ndarray] = {}
        for ui, unit in enumerate(units):
            pids = {p for o in unit.options for p, _ in o.ports}
            for pid in pids:
                keys: list[PortKey] = []
                idx = []
                for o in unit.options:
                    key = o.port(pid)
                    if key not in keys:
                        keys.append(key)
                    idx.append(keys.index(key))
                self._keys[(ui, pid)] = keys
                self._kidx[(ui, pid)] = np.array(idx, dtype=np.int64)
        self._edge_tables: dict[int, np.ndarray] = {}
        self.io_mask = [self._io_mask(u) for u in range(len(units))]

    def set_budget(self, budget: Mapping[str, float]) -> None:
        self.bvec = np.array([float(budget.get(r, math.inf)) for r in RESOURCES])
        self.scale = np.where(np.isfinite(self.bvec) & (self.bvec > 0), self.bvec, 1.0)

    # -- I/O ------------------------------------------------------------------------------

    def _io_mask(self, u: int) -> np.ndarray:
        """Options of unit `u` whose graph-end streams fit the board's IODMA."""
        ok = np.ones(len(self.units[u].options), dtype=bool)
        if self.io_max_bits is None:
            return ok
        for e in self.edges:
            pid = e.dst_port if e.src is None and e.dst == u else (
                e.src_port if e.dst is None and e.src == u else None)
            if pid is None:
                continue
            keys = self._keys[(u, pid)]
            padded = np.array([k[2] for k in keys])[self._kidx[(u, pid)]]
            ok &= padded <= self.io_max_bits
        if not ok.any():  # keep the narrowest: reported as not fitting by evaluate
            ok[:] = False
            widths = [max((k[2] for p, k in o.ports), default=0)
                      for o in self.units[u].options]
            ok[int(np.argmin(widths))] = True
        return ok

    # -- edges ----------------------------------------------------------------------------

    def _edge_table(self, k: int) -> np.ndarray:
        """Edge k's resources for every (producer key, consumer key) pair."""
        if k not in self._edge_tables:
            e = self.edges[k]
            src_keys: list[PortKey | None] = (
                [None] if e.src is None else list(self._keys[(e.src, e.src_port)]))  # type: ignore[index]
            dst_keys: list[PortKey | None] = (
                [None] if e.dst is None else list(self._keys[(e.dst, e.dst_port)]))  # type: ignore[index]
            tab = np.zeros((len(src_keys), len(dst_keys), 4))
            for a, s in enumerate(src_keys):
                for b, d in enumerate(dst_keys):
                    tab[a, b] = _edge_cost(s, d, self.fpgapart)[0]
            self._edge_tables[k] = tab
        return self._edge_tables[k]

    def _side(self, k: int, u: int | None, port: str | None, choice: Sequence[int]) -> int:
        if u is None or port is None:
            return 0
        return int(self._kidx[(u, port)][choice[u]])

    def unit_moves(self, u: int, choice: Sequence[int], opts: np.ndarray) -> np.ndarray:
        """Resources of unit u's options `opts` plus its incident edges (others fixed)."""
        res = self._arrays[u][1][opts].copy()
        for k in self.incident[u]:
            e = self.edges[k]
            tab = self._edge_table(k)
            if e.src == u:
                a = self._kidx[(u, e.src_port)][opts]  # type: ignore[index]
                b = self._side(k, e.dst, e.dst_port, choice)
                res += tab[a, b]
            else:
                a_fixed = self._side(k, e.src, e.src_port, choice)
                b_arr = self._kidx[(u, e.dst_port)][opts]  # type: ignore[index]
                res += tab[a_fixed, b_arr]
        return res

    # -- evaluation -----------------------------------------------------------------------

    def options_of(self, choice: Sequence[int]) -> list[Option]:
        return [u.options[i] for u, i in zip(self.units, choice)]

    def evaluate(self, choice: Sequence[int]) -> Breakdown:
        return self.evaluate_options(self.options_of(choice))

    def evaluate_options(self, opts: Sequence[Option]) -> Breakdown:
        """Whole-design figures of one option per unit (options need not be in the
        tables: `SetFoldingWithinBudget` costs FINN's own foldings this way)."""
        ii = max(o.cycles for o in opts)
        layers = np.sum([o.res for o in opts], axis=0)
        links = np.sum([o.link for o in opts], axis=0)
        dwcs = sum(o.link_count[0] for o in opts)
        fifos = sum(o.link_count[1] for o in opts)
        # longest-path latency at every unit's output (FINN's dataflow_performance)
        lat_out: list[int] = []
        for u, o in enumerate(opts):
            lat_out.append(o.lat + max((lat_out[p] for p in self.preds[u]), default=0))
        deep_at: dict[int, tuple[int, str]] = {}
        for j, ins in self.joins.items():
            arrive = {k: lat_out[self.edges[k].src] for k in ins}  # type: ignore[index]
            latest = max(arrive.values())
            for k in ins:
                e = self.edges[k]
                words = opts[j].port(e.dst_port)[4]  # type: ignore[arg-type]
                depth = max(FIFO_DEPTH, math.ceil((latest - arrive[k]) * words / max(ii, 1)))
                if depth > FIFO_DEPTH:
                    deep_at[k] = (depth, "auto")
        deep = np.zeros(4)
        deep_list = []
        io_widths: dict[str, int] = {}
        io_ok = True
        for k, e in enumerate(self.edges):
            src = opts[e.src].port(e.src_port) if e.src is not None else None  # type: ignore[arg-type]
            dst = opts[e.dst].port(e.dst_port) if e.dst is not None else None  # type: ignore[arg-type]
            if src is None and dst is not None:
                io_widths[f"in:{e.dst_port}"] = dst[2]
                io_ok &= self.io_max_bits is None or dst[2] <= self.io_max_bits
            if dst is None and src is not None:
                io_widths[f"out:{e.src_port}"] = src[2]
                io_ok &= self.io_max_bits is None or src[2] <= self.io_max_bits
            r, d, f = _edge_cost(src, dst, self.fpgapart)
            dwcs, fifos = dwcs + d, fifos + f
            if k in deep_at:
                depth = deep_at[k][0]
                base = np.array(_edge_cost(src, dst, self.fpgapart)[0])
                best = None
                for style in FIFO_STYLES:
                    rs = np.array(_edge_cost(src, dst, self.fpgapart, depth, style)[0]) - base
                    score = float(np.sum(rs / self.scale) + np.sum(np.where(
                        self.bvec <= 0, rs, 0.0)) * 1e9)
                    if best is None or score < best[0]:
                        best = (score, style, rs)
                assert best is not None
                deep += best[2]
                deep_list.append({"node": e.dst_node, "input": e.dst_input, "depth": depth,
                                  "ram_style": best[1],
                                  "resources": dict(zip(RESOURCES, best[2].tolist()))})
            links = links + np.array(r)
        return Breakdown(int(ii), int(max(lat_out)), np.asarray(layers, dtype=np.float64),
                         np.asarray(links, dtype=np.float64), deep, int(dwcs), int(fifos),
                         deep_list, bool(io_ok), io_widths)

    def fits(self, b: Breakdown) -> bool:
        return bool(b.io_ok and np.all(b.total <= self.bvec + 1e-9))

    def overuse(self, total: np.ndarray) -> float:
        excess = np.where(np.isfinite(self.bvec), np.maximum(total - self.bvec, 0.0), 0.0)
        return float(np.sum(excess / self.scale))

    def norm(self, total: np.ndarray) -> float:
        """Budget-normalised resource sum (the secondary objective)."""
        return float(np.sum(total / self.scale))


def build_problem(model: ModelWrapper, fpgapart: str, prune: bool = True,
                  io_max_bits: int | None | str = "board",
                  budget: Mapping[str, float] | None = None,
                  options: bool = True, embedded_weights: bool = False) -> FoldingProblem:
    """The folding problem of `model` (not modified): option tables of every hardware
    layer and the edges FINN will put DWCs/FIFOs on. `io_max_bits="board"` takes the
    limit of `fpgapart`'s board (`io_width_limit`); None applies none. With
    `options=False` every unit has only the folding it has in `model` (for costing
    given foldings, e.g. SetFolding's). `embedded_weights` adds FINN's embedded-weight
    MVAU_hls (`mem_mode="internal_embedded"`) as an option (see `_impl_choices`)."""
    work = ModelWrapper(model.model.__deepcopy__())
    groups = _unit_groups(work)
    if options:
        units = [_unit_options(work, g, fpgapart, prune, embedded_weights) for g in groups]
    else:
        units = [Unit(tuple(n.name for n in g), tuple(n.op_type for n in g),
                      [_UnitShape(work, g, [_fast(getCustomOp(n)) for n in g], fpgapart)
                       .option(None)], False) for g in groups]
    where = {n.name: u for u, g in enumerate(groups) for n in g}
    edges: list[_Edge] = []
    graph_in = {t.name for t in work.graph.input}
    graph_out = {t.name for t in work.graph.output}
    for u, group in enumerate(groups):
        names = {n.name for n in group}
        for node in group:
            for i in _stream_inputs(work, node):
                prod = work.find_producer(node.input[i])
                if prod is not None and prod.name in names:
                    continue
                if prod is not None and prod.name in where:
                    o = list(prod.output).index(node.input[i])
                    edges.append(_Edge(where[prod.name], f"{prod.name}:out{o}", u,
                                       f"{node.name}:in{i}", node.name, i))
                elif node.input[i] in graph_in:
                    edges.append(_Edge(None, None, u, f"{node.name}:in{i}", node.name, i))
            for o, t in enumerate(node.output):
                if t in graph_out:
                    edges.append(_Edge(u, f"{node.name}:out{o}", None, None, None, None))
    io = io_width_limit(fpgapart) if io_max_bits == "board" else io_max_bits
    return FoldingProblem(units, edges, fpgapart, io, budget)  # type: ignore[arg-type]


def _as_problem(units: FoldingProblem | Sequence[Unit], fpgapart: str = "") -> FoldingProblem:
    """A bare list of units (no edges, no I/O limit: the layers only) as a problem."""
    if isinstance(units, FoldingProblem):
        return units
    return FoldingProblem(list(units), [], fpgapart, None)


# --- evaluating and applying assignments ----------------------------------------------


def evaluate_assignment(units: Sequence[Unit], choice: Sequence[int]) -> tuple[int, int, np.ndarray]:
    """(II cycles, summed layer cycles, layer resources incl. in-unit links) of one option
    per unit, without the edges between units (see `FoldingProblem.evaluate`)."""
    cycles = [u.options[i].cycles for u, i in zip(units, choice)]
    total = np.sum([np.add(u.options[i].res, u.options[i].link) for u, i in zip(units, choice)],
                   axis=0)
    return max(cycles), sum(u.options[i].lat for u, i in zip(units, choice)), np.asarray(
        total, dtype=np.float64)


def _budget_vector(budget: Mapping[str, float]) -> np.ndarray:
    return np.array([float(budget.get(r, math.inf)) for r in RESOURCES], dtype=np.float64)


def _fits(total: np.ndarray, bvec: np.ndarray) -> bool:
    return bool(np.all(total <= bvec + 1e-9))


def apply_assignment(model: ModelWrapper, units: Sequence[Unit], choice: Sequence[int]) -> None:
    """Writes the chosen node attributes into `model` (in place)."""
    by_name = {n.name: n for n in model.graph.node}
    for unit, i in zip(units, choice):
        for name, attrs in unit.options[i].attrs_dict().items():
            inst = getCustomOp(by_name[name])
            for k, v in attrs.items():
                inst.set_nodeattr(k, v)


def model_options(model: ModelWrapper, problem: FoldingProblem,
                  copy: bool = True) -> list[Option]:
    """The option each unit of `problem` has in `model`'s current folding (FINN's own
    estimates of the nodes as they are), for `FoldingProblem.evaluate_options`.
    `copy=False` reads `model` itself (not modified)."""
    work = ModelWrapper(model.model.__deepcopy__()) if copy else model
    by_name = {n.name: n for n in work.graph.node}
    out = []
    for unit in problem.units:
        group = [by_name[n] for n in unit.nodes]
        insts = [_fast(getCustomOp(n)) for n in group]
        out.append(_UnitShape(work, group, insts, problem.fpgapart).option(None))
    return out


def current_assignment(model: ModelWrapper, units: Sequence[Unit], fpgapart: str) -> tuple[
        int, int, np.ndarray]:
    """II, latency and resources of the folding `model` currently has (FINN's estimates
    of the layers only)."""
    cyc, res = [], []
    for node in model.graph.node:
        if _is_hw_node(node):
            c, r = _node_cost(getCustomOp(node), fpgapart)
            cyc.append(c)
            res.append(r)
    return max(cyc), sum(cyc), np.sum(np.array(res, dtype=np.float64), axis=0)


# --- coarse to fine ---------------------------------------------------------------------


def _allowed_at(p: FoldingProblem, target: int) -> list[np.ndarray] | None:
    out = []
    for u, (cyc, _) in enumerate(p._arrays):
        ok = np.nonzero((cyc <= target) & p.io_mask[u])[0]
        if ok.size == 0:
            return None
        out.append(ok)
    return out


def _assign_at(p: FoldingProblem, target: int, rounds: int = 40) -> tuple[list[int] | None, int]:
    """Coarse stage at one initiation interval: every unit takes its cheapest option whose
    cycles are <= target, cheapness being a price-weighted resource sum of the layer and
    its edges (two coordinate sweeps, neighbours fixed). Prices start at 1/budget and rise
    multiplicatively on over-used resources (a Lagrangian heuristic). If no price vector
    gives a feasible design, the least over-budget assignment is handed to the repair
    moves of the fine stage. Returns a feasible choice or None, and how many option
    evaluations it took."""
    bvec = p.bvec
    finite = np.where(np.isfinite(bvec) & (bvec > 0), bvec, np.inf)
    prices = np.where(np.isfinite(finite), 1.0 / finite, 0.0)
    prices = np.where(bvec <= 0, 1e9, prices)  # a zero budget forbids the resource
    evaluated = 0
    allowed = _allowed_at(p, target)
    if allowed is None:
        return None, 0
    least: tuple[float, list[int]] | None = None
    choice = [int(ok[np.argmax(p._arrays[u][0][ok])]) for u, ok in enumerate(allowed)]
    for r in range(rounds):
        for _sweep in range(2):
            for u, ok in enumerate(allowed):
                cost = p.unit_moves(u, choice, ok) @ prices + 1e-12 * p._arrays[u][0][ok]
                choice[u] = int(ok[np.argmin(cost)])
                evaluated += ok.size
        b = p.evaluate(choice)
        if p.fits(b):
            return list(choice), evaluated
        over_sum = p.overuse(b.total)
        if least is None or over_sum < least[0]:
            least = (over_sum, list(choice))
        over = np.where(np.isfinite(bvec) & (bvec > 0), b.total / np.maximum(bvec, 1e-9), 0.0)
        step = 1.0 / (1.0 + r / 10.0)
        prices = prices * np.where(over > 1.0, 1.0 + step * over, 1.0)
    assert least is not None
    repaired, n = _repair(p, least[1], target)
    return repaired, evaluated + n


def _best_moves(p: FoldingProblem, choice: Sequence[int], allowed: Sequence[np.ndarray],
                score: Any) -> list[tuple[float, int, int]]:
    """Best single-unit move per unit by `score(candidate totals)` (layers and edges; the
    deep FIFOs are re-costed exactly when a move is tried), best first."""
    b = p.evaluate(choice)
    total = b.total
    moves = []
    for u, ok in enumerate(allowed):
        cur = p.unit_moves(u, choice, np.array([choice[u]]))[0]
        cand = total[None, :] - cur[None, :] + p.unit_moves(u, choice, ok)
        s = score(cand, u, ok)
        j = int(np.argmin(s))
        if int(ok[j]) != choice[u]:
            moves.append((float(s[j]), u, int(ok[j])))
    return sorted(moves)


def _repair(p: FoldingProblem, choice: list[int], target: int,
            max_moves: int = 400) -> tuple[list[int] | None, int]:
    """Fine stage: single-unit moves (among options with cycles <= target) that reduce the
    budget overuse of the whole design the most, until it fits or no move helps."""
    allowed = _allowed_at(p, target)
    if allowed is None:
        return None, 0
    choice = list(choice)
    evaluated = 0
    for u, ok in enumerate(allowed):
        if choice[u] not in set(ok.tolist()):
            choice[u] = int(ok[np.argmax(p._arrays[u][0][ok])])  # slowest allowed
    cur = p.overuse(p.evaluate(choice).total)
    for _ in range(max_moves):
        if cur <= 0 and p.fits(p.evaluate(choice)):
            return choice, evaluated

        def score(cand: np.ndarray, u: int, ok: np.ndarray) -> np.ndarray:
            excess = np.where(np.isfinite(p.bvec), np.maximum(cand - p.bvec, 0.0), 0.0)
            return np.sum(excess / p.scale, axis=1) + 1e-9 * np.sum(cand / p.scale, axis=1)

        moved = False
        for _s, u, i in _best_moves(p, choice, allowed, score)[:6]:
            evaluated += 1
            trial = list(choice)
            trial[u] = i
            new = p.overuse(p.evaluate(trial).total)
            if new < cur - 1e-12:
                choice, cur, moved = trial, new, True
                break
        evaluated += sum(a.size for a in allowed)
        if not moved:
            return (choice if p.fits(p.evaluate(choice)) else None), evaluated
    return (choice if p.fits(p.evaluate(choice)) else None), evaluated


def _minimise_resources(p: FoldingProblem, choice: list[int], ii: int,
                        max_moves: int = 400) -> list[int]:
    """At a fixed initiation interval: single-unit moves that lower the budget-normalised
    resource sum of the whole design while it still fits (the secondary objective)."""
    allowed = _allowed_at(p, ii)
    assert allowed is not None
    choice = list(choice)
    cur = p.norm(p.evaluate(choice).total)
    for _ in range(max_moves):
        def score(cand: np.ndarray, u: int, ok: np.ndarray) -> np.ndarray:
            bad = ~np.all(cand <= p.bvec + 1e-9, axis=1)
            return np.sum(cand / p.scale, axis=1) + np.where(bad, 1e18, 0.0)

        moved = False
        for s, u, i in _best_moves(p, choice, allowed, score)[:6]:
            if s >= cur - 1e-12:
                break
            trial = list(choice)
            trial[u] = i
            b = p.evaluate(trial)
            if p.fits(b) and p.norm(b.total) < cur - 1e-12:
                choice, cur, moved = trial, p.norm(b.total), True
                break
        if not moved:
            break
    return choice


def _spend_on_latency(p: FoldingProblem, choice: list[int], ii: int, latency_max: int,
                      max_moves: int = 400) -> list[int]:
    """Only when a latency limit is asked for: speed up layers (cycles <= ii kept) while
    the design fits, largest latency gain per normalised resource first, until the
    critical path is within `latency_max` cycles or no move helps."""
    allowed = _allowed_at(p, ii)
    assert allowed is not None
    choice = list(choice)
    b = p.evaluate(choice)
    for _ in range(max_moves):
        if b.latency_cycles <= latency_max:
            break
        best: tuple[float, list[int], Breakdown] | None = None
        for u, ok in enumerate(allowed):
            lat = p._lat[u]
            faster = ok[lat[ok] < lat[choice[u]]]
            for i in faster[np.argsort(lat[faster])][:8]:
                trial = list(choice)
                trial[u] = int(i)
                nb = p.evaluate(trial)
                gain = b.latency_cycles - nb.latency_cycles
                if gain <= 0 or not p.fits(nb):
                    continue
                cost = max(p.norm(nb.total) - p.norm(b.total), 1e-9)
                if best is None or gain / cost > best[0]:
                    best = (gain / cost, trial, nb)
        if best is None:
            break
        choice, b = best[1], best[2]
    return choice


def _result(p: FoldingProblem, strategy: str, choice: list[int], feasible: bool, evaluated: int,
            seconds: float, notes: list[str]) -> FoldingResult:
    b = p.evaluate(choice)
    return FoldingResult(strategy, list(choice), b.ii_cycles, b.latency_cycles,
                         dict(zip(RESOURCES, b.total.tolist())), feasible and p.fits(b),
                         evaluated, seconds, notes, b.to_json())


def cheapest_choice(p: FoldingProblem) -> list[int]:
    """Per unit the option of least budget share (among the I/O-legal ones)."""
    out = []
    for u, (_, r) in enumerate(p._arrays):
        share = (r / p.scale).sum(axis=1) + np.where(p.io_mask[u], 0.0, 1e18)
        out.append(int(np.argmin(share)))
    return out


def coarse_to_fine(units: FoldingProblem | Sequence[Unit], budget: Mapping[str, float],
                   latency_max_cycles: int | None = None) -> FoldingResult:
    """Maximises throughput (minimises the initiation interval) within `budget` (FINN
    resource keys) counting the whole design (`FoldingProblem`), then minimises the
    budget-normalised resources at that interval; with `latency_max_cycles` it then buys
    latency until the critical path is within it.

    Coarse: binary search over the initiation intervals that any option achieves, each
    probed with the price-weighted cheapest assignment (`_assign_at`). Fine: from the
    coarse optimum, step to the next lower interval and repair the assignment with
    single-layer moves (`_repair`) — trading DSP for LUT, BRAM for LUTRAM/URAM, or
    parallelism between layers — until no lower interval can be repaired.
    A bare list of units is searched without edges (layers only).
    """
    t0 = time.perf_counter()
    p = _as_problem(units)
    p.set_budget(budget)
    levels = np.unique(np.concatenate([c for c, _ in p._arrays]))
    lower = max(int(c[p.io_mask[u]].min()) for u, (c, _) in enumerate(p._arrays))
    levels = levels[levels >= lower]
    evaluated = 0
    lo, hi = 0, len(levels) - 1
    best: list[int] | None = None
    best_level = -1
    while lo <= hi:  # coarse: feasibility is (almost) monotone in the target interval
        mid = (lo + hi) // 2
        choice, n = _assign_at(p, int(levels[mid]))
        evaluated += n
        if choice is not None:
            best, best_level = choice, mid
            hi = mid - 1
        else:
            lo = mid + 1
    if best is None:
        return _result(p, "coarse_to_fine", cheapest_choice(p), False, evaluated,
                       time.perf_counter() - t0,
                       ["no folding fits the budget; the cheapest design is reported"])
    for k in range(best_level - 1, -1, -1):  # fine: lower intervals by repair moves
        repaired, n = _repair(p, best, int(levels[k]))
        evaluated += n
        if repaired is None:
            break
        best, best_level = repaired, k
    ii = p.evaluate(best).ii_cycles
    best = _minimise_resources(p, best, ii)
    notes = []
    if latency_max_cycles is not None:
        best = _spend_on_latency(p, best, ii, int(latency_max_cycles))
        if p.evaluate(best).latency_cycles > latency_max_cycles:
            notes.append(f"latency limit of {latency_max_cycles} cycles not reached "
                         "inside the budget")
    return _result(p, "coarse_to_fine", best, True, evaluated, time.perf_counter() - t0, notes)


# --- passes ------------------------------------------------------------------------------


def _record(model: ModelWrapper, key: str, payload: dict[str, Any]) -> None:
    model.set_metadata_prop(key, json.dumps(payload, sort_keys=True, default=str))


class SearchFolding(Transformation):
    """Replaces the folding of every hardware layer with the coarse-to-fine search result.

    Maximises throughput (minimum initiation interval = slowest layer's cycles) inside an
    absolute resource budget in FINN's keys (`LUT`, `BRAM_18K`, `URAM`, `DSP`) that
    covers the whole design FINN builds (layers, DWCs, FIFOs, deep FIFOs of residual
    joins; ends no wider than the board's IODMA, `io_max_bits="board"`), then minimises
    resources at that throughput. `latency_max_cycles` (e.g. from a `.nash` file's
    `latency <=`) buys latency with leftover budget; without it none is spent.
    `strategy="exact"` solves the same problem as an integer program instead.
    `embedded_weights=True` adds FINN's embedded-weight MVAU_hls as an option (past the
    8191-bit weight-stream limit of decoupled weights; off by default: FINN notes long
    synthesis times for it). Works on any specialised FINN dataflow graph, hardware
    layers of nashc included.
    """

    def __init__(self, budget: Mapping[str, float], fpgapart: str, strategy: str = "coarse_to_fine",
                 time_limit_s: float = 60.0, io_max_bits: int | None | str = "board",
                 latency_max_cycles: int | None = None, embedded_weights: bool = False) -> None:
        super().__init__()
        self.budget = dict(budget)
        self.fpgapart = fpgapart
        self.strategy = strategy
        self.time_limit_s = time_limit_s
        self.io_max_bits = io_max_bits
        self.latency_max_cycles = latency_max_cycles
        self.embedded_weights = embedded_weights
        self.result: FoldingResult | None = None
        self.problem: FoldingProblem | None = None
        self.units: list[Unit] = []

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        from nashc.targets.hw_layers import register_hw_layers  # FINN's layer classes

        register_hw_layers()
        self.problem = build_problem(model, self.fpgapart, io_max_bits=self.io_max_bits,
                                     budget=self.budget,
                                     embedded_weights=self.embedded_weights)
        self.units = self.problem.units
        if self.strategy == "coarse_to_fine":
            self.result = coarse_to_fine(self.problem, self.budget, self.latency_max_cycles)
        elif self.strategy == "exact":
            from nashc.targets.folding_exact import solve_exact

            self.result = solve_exact(self.problem, self.budget, time_limit_s=self.time_limit_s)
        else:
            raise ValueError(f"unknown folding strategy {self.strategy!r}")
        apply_assignment(model, self.units, self.result.choice)
        _record(model, "nashc.SearchFolding", {
            "budget": self.budget, "io_max_bits": self.problem.io_max_bits,
            **self.result.to_json()})
        return model, False


#: doc_string prefix that keeps a unit's own op type while FINN sees it as an MVAU
_OP_TYPE_TAG = "nashc.op_type="


def show_as_finn_mvau(model: ModelWrapper) -> int:
    """Renames nashc's MVAU subclasses (the shift/adder units of `nashc.targets`) to the
    FINN op type they extend (``MVAU``, ``MVAU_hls``, ``MVAU_rtl``), for FINN
    transformations that match op types by name. The own op type goes into the node's
    doc_string, so `restore_op_types` finds the node even after FINN renamed it or
    removed others. Returns how many nodes were renamed."""
    from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls
    from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU
    from finn.custom_op.fpgadataflow.rtl.matrixvectoractivation_rtl import MVAU_rtl

    finn_names = ("MVAU", "MVAU_hls", "MVAU_rtl")
    count = 0
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow") or \
                node.op_type in finn_names:
            continue
        try:
            inst = getCustomOp(node)
        except Exception:  # noqa: BLE001 - not a registered custom op: not a unit of ours
            continue
        if not isinstance(inst, MVAU):
            continue
        node.doc_string = f"{_OP_TYPE_TAG}{node.op_type} {node.doc_string}".rstrip()
        # by domain: nashc's RTL units extend FINN's MVAU (not MVAU_rtl, a DSP design)
        node.op_type = ("MVAU_hls" if isinstance(inst, MVAU_hls) or is_hls_node(node) else
                        "MVAU_rtl" if isinstance(inst, MVAU_rtl) or is_rtl_node(node) else
                        "MVAU")
        count += 1
    return count


def restore_op_types(model: ModelWrapper) -> None:
    """Undoes `show_as_finn_mvau`."""
    for node in model.graph.node:
        if node.doc_string.startswith(_OP_TYPE_TAG):
            own, _, rest = node.doc_string[len(_OP_TYPE_TAG):].partition(" ")
            node.op_type = own
            node.doc_string = rest


def finn_setfolding(model: ModelWrapper, target_cycles: int, **kwargs: Any) -> ModelWrapper:
    """FINN's `SetFolding` on a copy of `model`, with two repairs: nashc's MVAU subclasses
    (shift/adder units) are folded as MVAUs (SetFolding matches op types exactly and would
    leave them at PE = SIMD = 1), and every node keeps its name (SetFolding renumbers them
    by op type). `kwargs` go to SetFolding (e.g. mvau_wwidth_max)."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    from nashc.targets.hw_layers import register_hw_layers  # FINN's layer classes: heavy

    register_hw_layers()
    m = ModelWrapper(model.model.__deepcopy__())
    names = [n.name for n in m.graph.node]
    show_as_finn_mvau(m)
    m = m.transform(SetFolding(target_cycles_per_frame=max(1, int(target_cycles)), **kwargs))
    assert len(m.graph.node) == len(names), "SetFolding changed the graph"
    for node, name in zip(m.graph.node, names):
        node.name = name
    restore_op_types(m)
    return m




#: `mvau_wwidth_max` values "FINN tuned" tries: FINN's default 36, then doublings up to
#: the HLS limit MAX_ALLOWED_AP_INT_W (8191), what a FINN user raising it would try.
TUNED_WWIDTHS = (36, 72, 144, 288, 576, 1152, 2304, 4608, MAX_ALLOWED_AP_INT_W)


class SetFoldingWithinBudget(Transformation):
    """Replaces the folding with FINN's `SetFolding` at its best inside the budget.

    The comparison baseline for `SearchFolding`, under the same accounting (the whole
    design: layers, DWCs, FIFOs, deep FIFOs, I/O width; `FoldingProblem`). SetFolding
    itself ignores resources, so its knobs are searched for the highest throughput that
    fits, then the fewest resources: with `tuned=False` ("FINN defaults") only the
    target cycles per frame (binary search on a log scale of the target fps, `steps`
    probes) at FINN's default `mvau_wwidth_max=36`; with `tuned=True` ("FINN tuned")
    also `mvau_wwidth_max` over `TUNED_WWIDTHS`. SetFolding's third option,
    `two_pass_relaxation`, stays at FINN's default (on): it relaxes the target of the
    other layers to the bottleneck's, which saves resources at the same throughput, so
    turning it off never raises throughput.
    Known limit: SetFolding's result is not monotone in the target in every case, so
    this is the best of the probes, not a proof. `knobs` holds the winning settings.
    """

    def __init__(self, budget: Mapping[str, float], fpgapart: str, clock_mhz: float,
                 steps: int = 20, tuned: bool = True,
                 io_max_bits: int | None | str = "board") -> None:
        super().__init__()
        self.budget = dict(budget)
        self.fpgapart = fpgapart
        self.clock_mhz = clock_mhz
        self.steps = steps
        self.tuned = tuned
        self.io_max_bits = io_max_bits
        self.result: FoldingResult | None = None
        self.target_fps: float | None = None
        self.knobs: dict[str, Any] = {}

    @staticmethod
    def _useful_wwidths(model: ModelWrapper) -> list[int]:
        """`TUNED_WWIDTHS` up to the first one no MVAU/VVAU can exceed (SIMD * weight
        bits <= MW * weight bits): larger caps give SetFolding the same choices."""
        widest = 36
        for node in model.graph.node:
            if not _is_hw_node(node):
                continue
            inst = getCustomOp(node)
            names = _attr_names(inst)
            try:
                if "MW" in names:
                    w = int(inst.get_nodeattr("MW")) * inst.get_input_datatype(1).bitwidth()
                elif "Kernel" in names and node.op_type.startswith("VVAU"):
                    w = int(np.prod(inst.get_nodeattr("Kernel"))) * \
                        inst.get_input_datatype(1).bitwidth()
                else:
                    continue
            except Exception:  # noqa: BLE001 - no weight input: no cap applies
                continue
            widest = max(widest, w)
        out = []
        for w in TUNED_WWIDTHS:
            out.append(w)
            if w >= widest:
                break
        return out

    def _probe(self, model: ModelWrapper, p: FoldingProblem, fps: float, wwidth: int,
               two_pass: bool) -> tuple[ModelWrapper, Breakdown]:
        m = finn_setfolding(model, int(self.clock_mhz * 1e6 / fps), mvau_wwidth_max=wwidth,
                            two_pass_relaxation=two_pass)
        return m, p.evaluate_options(model_options(m, p, copy=False))

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import logging

        from nashc.targets.hw_layers import register_hw_layers  # FINN's layer classes

        register_hw_layers()
        t0 = time.perf_counter()
        p = build_problem(model, self.fpgapart, io_max_bits=self.io_max_bits,
                          budget=self.budget, options=False)
        knobs = [(w, True) for w in self._useful_wwidths(model)] if self.tuned else [(36, True)]
        best: tuple[tuple[int, float], float, ModelWrapper, Breakdown, int, bool] | None = None
        probes = 0
        finn_log = logging.getLogger("finn")
        level = finn_log.level
        finn_log.setLevel(logging.ERROR)  # SetFolding warns per layer and probe
        try:
            for wwidth, two_pass in knobs:
                lo, hi = math.log(1.0), math.log(self.clock_mhz * 1e6)
                for _ in range(self.steps):
                    mid = (lo + hi) / 2
                    m, b = self._probe(model, p, math.exp(mid), wwidth, two_pass)
                    probes += 1
                    if p.fits(b):
                        key = (b.ii_cycles, p.norm(b.total))
                        if best is None or key < best[0]:
                            best = (key, math.exp(mid), m, b, wwidth, two_pass)
                        lo = mid
                    else:
                        hi = mid
        finally:
            finn_log.setLevel(level)
        notes = []
        feasible = best is not None
        if best is None:
            m, b = self._probe(model, p, 1.0, 36, True)
            best = ((b.ii_cycles, p.norm(b.total)), 1.0, m, b, 36, True)
            notes.append("SetFolding does not fit the budget even at 1 fps")
        _, fps, m, b, wwidth, two_pass = best
        self.target_fps = fps
        self.knobs = {"target_fps": fps,
                      "target_cycles_per_frame": int(self.clock_mhz * 1e6 / fps),
                      "mvau_wwidth_max": wwidth, "two_pass_relaxation": two_pass}
        self.result = FoldingResult("finn_setfolding", [], b.ii_cycles, b.latency_cycles,
                                    dict(zip(RESOURCES, b.total.tolist())),
                                    feasible and p.fits(b), probes,
                                    time.perf_counter() - t0, notes, b.to_json())
        src = {n.name: n for n in m.graph.node}
        for node in model.graph.node:
            if node.name in src:
                node.ClearField("attribute")
                node.attribute.extend(src[node.name].attribute)
        _record(model, "nashc.SetFoldingWithinBudget", {
            "budget": self.budget, "tuned": self.tuned, **self.knobs,
            **self.result.to_json(self.clock_mhz)})
        return model, False


# --- the check: FINN's insertions on the chosen design ---------------------------------


def confirm_design(model: ModelWrapper, fpgapart: str,
                   budget: Mapping[str, float] | None = None,
                   io_max_bits: int | None | str = "board") -> dict[str, Any]:
    """Runs FINN's `InsertDWC`, `InsertFIFO(create_shallow_fifos=True)` and
    `SpecializeLayers` on a copy of the folded `model`, with the deep FIFOs of residual
    joins sized as `FoldingProblem.evaluate` sizes them, and checks the result.

    Returns `resources` (sum of FINN's `node_res_estimation` over every node of the
    design as built: layers, DWCs, FIFOs), `dwcs`, `fifos`, `deep_fifos`, `problems`
    (each a sentence naming the node: an edge whose folded shapes or stream widths
    disagree, an HLS weight stream over 8191 bits, a graph-end stream wider than the
    board's IODMA, a resource over `budget`) and `fits` (no problems)."""
    import logging

    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    p = build_problem(model, fpgapart, io_max_bits=io_max_bits, budget=budget or {},
                      options=False)
    planned = p.evaluate_options([u.options[0] for u in p.units])
    m = ModelWrapper(model.model.__deepcopy__())
    finn_log = logging.getLogger("finn")
    level = finn_log.level
    finn_log.setLevel(logging.ERROR)
    try:
        m = m.transform(InsertDWC())
        m = m.transform(InsertFIFO(create_shallow_fifos=True))
        for d in planned.deep_fifos:
            join = next(n for n in m.graph.node if n.name == d["node"])
            fifo = m.find_producer(join.input[d["input"]])
            if fifo is None or not fifo.op_type.startswith("StreamingFIFO"):
                continue
            inst = getCustomOp(fifo)
            inst.set_nodeattr("depth", int(d["depth"]))
            inst.set_nodeattr("ram_style", d["ram_style"])
        m = m.transform(SpecializeLayers(fpgapart))
    finally:
        finn_log.setLevel(level)
    problems: list[str] = []
    total = np.zeros(4)
    dwcs = fifos = 0
    for node in m.graph.node:
        if not _is_hw_node(node):
            continue
        inst = getCustomOp(node)
        total += np.array(_node_cost(inst, fpgapart)[1])
        dwcs += node.op_type.startswith("StreamingDataWidthConverter")
        fifos += node.op_type.startswith("StreamingFIFO")
        if not _weight_stream_ok(node, inst):
            problems.append(f"{node.name}: weight stream wider than {MAX_ALLOWED_AP_INT_W} bits")
        for i in _stream_inputs(m, node):
            prod = m.find_producer(node.input[i])
            if prod is None or not _is_hw_node(prod):
                continue
            pinst = getCustomOp(prod)
            o = list(prod.output).index(node.input[i])
            try:
                fo, fi = pinst.get_folded_output_shape(o), inst.get_folded_input_shape(i)
            except Exception as err:  # noqa: BLE001 - FINN's own shape check failed
                problems.append(f"{prod.name} -> {node.name}: FINN cannot fold this stream "
                                f"({err})")
                continue
            if fo[-1] != fi[-1] or int(np.prod(fo)) != int(np.prod(fi)):
                problems.append(f"{prod.name} -> {node.name}: folded shapes {tuple(fo)} and "
                                f"{tuple(fi)} disagree")
            if pinst.get_outstream_width(o) != inst.get_instream_width(i):
                problems.append(f"{prod.name} -> {node.name}: stream widths "
                                f"{pinst.get_outstream_width(o)} and "
                                f"{inst.get_instream_width(i)} bits disagree")
    if p.io_max_bits is not None:
        for t in m.graph.input:
            cons = m.find_consumer(t.name)
            if cons is not None and _is_hw_node(cons):
                w = getCustomOp(cons).get_instream_width_padded(list(cons.input).index(t.name))
                if w > p.io_max_bits:
                    problems.append(f"input stream of {cons.name} is {w} bits, wider than "
                                    f"the board's IODMA ({p.io_max_bits} bits)")
        for t in m.graph.output:
            prod = m.find_producer(t.name)
            if prod is not None and _is_hw_node(prod):
                w = getCustomOp(prod).get_outstream_width_padded(list(prod.output).index(t.name))
                if w > p.io_max_bits:
                    problems.append(f"output stream of {prod.name} is {w} bits, wider than "
                                    f"the board's IODMA ({p.io_max_bits} bits)")
    for r, v, cap in zip(RESOURCES, total, p.bvec):
        if v > cap + 1e-9:
            problems.append(f"{r} {v:,.0f} over the budget of {cap:,.0f}")
    return {"resources": dict(zip(RESOURCES, total.tolist())), "dwcs": int(dwcs),
            "fifos": int(fifos), "deep_fifos": planned.deep_fifos,
            "estimated": dict(zip(RESOURCES, planned.total.tolist())),
            "problems": problems, "fits": not problems}


def iter_hw_nodes(model: ModelWrapper) -> Iterable[Any]:
    return (n for n in model.graph.node if _is_hw_node(n))
