"""Folding and cycle/resource estimates with FINN's own analyses, and FINN-style reports.

`estimate` calls exactly what FINN's `step_generate_estimate_reports` calls:
`exp_cycles_per_layer`, `res_estimation(fpgapart)` (+ `aggregate_dict_keys` for the
"total"), `AnnotateCycles` then `dataflow_performance`, and derives
`estimated_throughput_fps = clock / max_cycles` and
`estimated_latency_ns = critical_path_cycles * clock period` the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from nashc.dsl.errors import NashcError
from nashc.targets.boards import RESOURCE_KEYS, Board, Resources, describe_overrun, get_board

__all__ = [
    "FOLDING_ATTRS",
    "DEFAULT_FPS",
    "LayerEstimate",
    "Estimate",
    "target_cycles_per_frame",
    "apply_folding_setfolding",
    "estimate",
    "folding_config",
    "write_reports",
    "device_utilisation",
    "EstimateRun",
    "estimate_model_file",
]

#: Attributes FINN's builder extracts into its folding config
#: (`step_target_fps_parallelization` / `step_apply_folding_config`).
FOLDING_ATTRS = (
    "PE", "SIMD", "EmbFold", "SeqFold", "parallel_window", "ram_style",
    "ram_style_thresholds", "ram_style_mask", "depth", "impl_style", "resType",
    "mac_resource", "mem_mode", "runtime_writeable_weights", "depth_trigger_uram",
    "depth_trigger_bram",
)

#: Default target for `nashc estimate` when `--fps` is not given.
DEFAULT_FPS = 1000.0


def target_cycles_per_frame(target_fps: float, clock_mhz: float) -> int:
    """Cycles per frame for `target_fps` at `clock_mhz`, as FINN's config resolves it."""
    period_ns = 1000.0 / clock_mhz
    return int((10**9 / period_ns) / target_fps)


def apply_folding_setfolding(model: ModelWrapper, target_fps: float, clock_mhz: float,
                             mvau_wwidth_max: int = 36,
                             two_pass_relaxation: bool = True) -> ModelWrapper:
    """Sets PE/SIMD with FINN's `SetFolding` for `target_fps` (FINN's builder defaults),
    nashc's shift/adder units folded as the MVAUs they are (`targets.folding.finn_setfolding`)."""
    from nashc.targets.folding import finn_setfolding

    if target_fps <= 0:
        raise NashcError(f"target fps must be positive, got {target_fps}")
    cycles = max(1, target_cycles_per_frame(target_fps, clock_mhz))
    return finn_setfolding(model, cycles, mvau_wwidth_max=mvau_wwidth_max,
                           two_pass_relaxation=two_pass_relaxation)


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op_type: str
    pe: int | None
    simd: int | None
    cycles: int
    lut: float
    bram18: float
    uram: float
    dsp: float


@dataclass
class Estimate:
    """Per-layer and whole-design estimates; the raw dicts are FINN's report contents."""

    clock_mhz: float
    fpga_part: str
    layers: list[LayerEstimate]
    layer_cycles: dict[str, int]
    layer_resources: dict[str, dict[str, Any]]  # includes "total"
    network_performance: dict[str, Any]
    totals: dict[str, float] = field(default_factory=dict)

    @property
    def estimated_throughput_fps(self) -> float:
        return float(self.network_performance["estimated_throughput_fps"])

    @property
    def estimated_latency_ns(self) -> float:
        return float(self.network_performance["estimated_latency_ns"])

    @property
    def max_cycles(self) -> int:
        return int(self.network_performance["max_cycles"])


def _attr(inst: Any, name: str) -> int | None:
    try:
        return int(inst.get_nodeattr(name))
    except (AttributeError, KeyError, ValueError, TypeError):
        return None


def estimate(model: ModelWrapper, clock_mhz: float,
             fpga_part: str | None = None) -> Estimate:
    """Cycle and resource estimates of a folded dataflow model, from FINN's analyses.

    `fpga_part` selects FINN's resource models (DSP block type, URAM availability);
    None means the u250's part.
    """
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.op_and_param_counts import aggregate_dict_keys
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles
    from finn.util.basic import getHWCustomOp

    from nashc.targets.hw_layers import register_hw_layers

    register_hw_layers()
    part = fpga_part if fpga_part is not None else get_board("u250").part
    period_ns = 1000.0 / clock_mhz
    cycles: dict[str, int] = model.analysis(exp_cycles_per_layer)
    resources: dict[str, dict[str, Any]] = model.analysis(
        lambda m: res_estimation(m, fpgapart=part))
    resources["total"] = aggregate_dict_keys(resources)
    annotated = model.transform(AnnotateCycles())
    perf: dict[str, Any] = dict(annotated.analysis(dataflow_performance))
    perf["estimated_throughput_fps"] = (10**9 / period_ns) / int(perf["max_cycles"])
    perf["estimated_latency_ns"] = int(perf["critical_path_cycles"]) * period_ns

    layers = []
    for node in model.graph.node:
        if node.name not in cycles:
            continue
        inst = getHWCustomOp(node)
        res = resources.get(node.name, {})
        layers.append(LayerEstimate(
            name=node.name, op_type=node.op_type, pe=_attr(inst, "PE"),
            simd=_attr(inst, "SIMD"), cycles=int(cycles[node.name]),
            lut=float(res.get("LUT", 0)), bram18=float(res.get("BRAM_18K", 0)),
            uram=float(res.get("URAM", 0)), dsp=float(res.get("DSP", 0))))
    total = resources["total"]
    totals = {k: float(total.get(k, 0)) for k in RESOURCE_KEYS}
    return Estimate(clock_mhz=clock_mhz, fpga_part=part, layers=layers, layer_cycles=cycles,
                    layer_resources=resources, network_performance=perf, totals=totals)


def device_utilisation(est: Estimate, board: Board | Resources) -> dict[str, float | None]:
    """Percent of the device each total uses (None where the device size is unknown)."""
    res = board.resources if isinstance(board, Board) else board
    out: dict[str, float | None] = {}
    for key, avail in zip(RESOURCE_KEYS, (res.lut, res.bram18, res.uram, res.dsp)):
        used = est.totals.get(key, 0.0)
        if avail is None:
            out[key] = None
        elif avail == 0:
            out[key] = 0.0 if used == 0 else float("inf")
        else:
            out[key] = 100.0 * used / avail
    return out


def folding_config(model: ModelWrapper) -> dict[str, Any]:
    """FINN's folding config of `model`: node name -> the `FOLDING_ATTRS` it has,
    plus "Defaults": {} (as `finn.util.config.extract_model_config` writes it)."""
    from finn.util.config import extract_model_config

    return _jsonable(extract_model_config(model, subgraph_hier=None,
                                          attr_names_to_extract=FOLDING_ATTRS))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode()
    return obj


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2) + "\n")


def write_reports(est: Estimate, model: ModelWrapper, directory: str | Path) -> dict[str, Path]:
    """Writes FINN's estimate reports, the folding config and the dataflow model.

    Files: `estimate_layer_cycles.json`, `estimate_layer_resources.json` (with
    "total"), `estimate_network_performance.json`, `folding_config.json`,
    `dataflow.onnx`. Returns name -> path.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {
        "estimate_layer_cycles.json": d / "estimate_layer_cycles.json",
        "estimate_layer_resources.json": d / "estimate_layer_resources.json",
        "estimate_network_performance.json": d / "estimate_network_performance.json",
        "folding_config.json": d / "folding_config.json",
        "dataflow.onnx": d / "dataflow.onnx",
    }
    _dump(paths["estimate_layer_cycles.json"], est.layer_cycles)
    _dump(paths["estimate_layer_resources.json"], est.layer_resources)
    _dump(paths["estimate_network_performance.json"], est.network_performance)
    _dump(paths["folding_config.json"], folding_config(model))
    model.save(str(paths["dataflow.onnx"]))
    return paths


@dataclass
class EstimateRun:
    """What `estimate_model_file` produced."""

    output_dir: Path
    board: Board
    clock_mhz: float
    target_fps: float
    estimate: Estimate
    host_nodes: list[tuple[str, str]]
    files: list[str]
    #: with a budget: nashc's search, FINN tuned and the design check (`folding_search.json`)
    search: dict[str, Any] | None = None
    #: what loading changed in the model (a dynamic batch fixed, an opset raised)
    notes: list[str] = field(default_factory=list)


def estimate_model_file(model_path: str | Path, target: str = "u250",
                        fps: float | None = None, output: str | Path | None = None,
                        clock_mhz: float | None = None,
                        insert_topk: bool = False,
                        budget: str | None = None, force: bool = False) -> EstimateRun:
    """`nashc estimate`: lower MODEL.onnx, fold, estimate, write DIR.

    Folding: FINN's SetFolding for `fps` (default `DEFAULT_FPS`); or, with `budget` (the
    language's budget syntax, e.g. ``"lut 30%, dsp 0"``), nashc's folding search inside
    that budget counting the whole design (`targets.folding.SearchFolding`), with FINN
    tuned (`SetFoldingWithinBudget`) in the same budget beside it and FINN's
    InsertDWC/InsertFIFO run on the result (`confirm_design`); these go to
    `folding_search.json`. Giving both `fps` and `budget` is an error.

    DIR (default `<model stem>_estimate` in the current directory) is built in a
    temporary sibling directory and renamed into place at the end, so an error leaves
    no half-written directory (and an existing DIR untouched). It holds the files of
    `write_reports`, `dataflow_parent.onnx` and `build_config.json`.
    """
    import shutil

    from nashc.targets.handoff import write_build_config
    from nashc.targets.hybrid_lowering import hybrid_extra_steps
    from nashc.targets.lower import lower_to_hw
    from nashc.targets.outdir import atomic_output_dir

    board = get_board(target)
    clock = float(clock_mhz if clock_mhz is not None else board.default_clock_mhz)
    target_fps = float(fps if fps is not None else DEFAULT_FPS)
    limits: dict[str, float] | None = None
    if budget is not None:
        from nashc.dsl.parser import parse_budget
        from nashc.targets.boards import budget_to_absolute

        if fps is not None:
            raise NashcError("give either --fps (FINN's SetFolding for that target) or "
                             "--budget (nashc's folding search inside it), not both")
        limits = budget_to_absolute(board, parse_budget(budget)).finn()
    if target_fps <= 0:
        raise NashcError(f"--fps must be positive, got {target_fps:g}")
    src = Path(model_path)
    if not src.is_file():
        raise NashcError(f"model file not found: {src}")
    out = Path(output) if output is not None else Path(f"{src.stem}_estimate")
    out = out.absolute()
    from nashc.runtime.golden import load_model
    from nashc.runtime.load import load_notes

    model = load_model(src)  # batch 1, opset >= 13; load_notes says what changed

    with atomic_output_dir(out, force=force, command="estimate") as tmp:
        lowered = lower_to_hw(model, board, clock, hybrid_extra_steps(), insert_topk=insert_topk,
                              workdir=tmp / "_finn",
                              dsp_free=limits is not None and limits["DSP"] <= 0)
        search: dict[str, Any] | None = None
        if limits is None:
            folded = apply_folding_setfolding(lowered.dataflow, target_fps, clock)
        else:
            folded, search = _search_in_budget(lowered.dataflow, limits, board, clock)
            no_fit = _no_fit(src.name, board, search)
            if no_fit is not None:
                raise no_fit  # inside the output directory's block: nothing is written
            _dump(tmp / "folding_search.json", search)
        est = estimate(folded, clock, board.part)
        if search is not None:
            target_fps = est.estimated_throughput_fps
        write_reports(est, folded, tmp)
        lowered.parent.save(str(tmp / "dataflow_parent.onnx"))
        write_build_config(tmp, board, clock)
        shutil.rmtree(tmp / "_finn", ignore_errors=True)
        files = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("."))
    return EstimateRun(output_dir=out, board=board, clock_mhz=clock, target_fps=target_fps,
                       estimate=est, host_nodes=lowered.host_nodes, files=files, search=search,
                       notes=load_notes(model))


class NoFitError(NashcError):
    """No folding of the model fits the `--budget` (nashc's search and FINN's insertions
    on its result); `search` holds the figures `folding_search.json` would have."""

    def __init__(self, message: str, search: dict[str, Any]) -> None:
        super().__init__(message)
        self.search = search


def _no_fit(name: str, board: Board, search: dict[str, Any]) -> NoFitError | None:
    """The error for a search result that does not fit its budget, else None."""
    ours, check = search["nashc"], search["design_check"]
    if ours["feasible"] and check["fits"]:
        return None
    over = describe_overrun(ours["resources"], search["budget"]) or \
        ", ".join(check["problems"])
    return NoFitError(f"no folding of {name} fits the budget on {board.name}, even the "
                      "slowest; raise the budget" + (f" (the closest design needs {over})"
                                                     if over else ""), search)


def _search_in_budget(dataflow: ModelWrapper, limits: dict[str, float], board: Board,
                      clock: float) -> tuple[ModelWrapper, dict[str, Any]]:
    """nashc's folding search in `limits` and FINN tuned beside it, both on the whole
    design, and FINN's insertions run on nashc's result."""
    from nashc.targets.folding import SearchFolding, SetFoldingWithinBudget, confirm_design

    ours = SearchFolding(limits, board.part)
    folded = ModelWrapper(dataflow.model.__deepcopy__()).transform(ours)
    tuned = SetFoldingWithinBudget(limits, board.part, clock, tuned=True)
    ModelWrapper(dataflow.model.__deepcopy__()).transform(tuned)
    assert ours.result is not None and tuned.result is not None
    check = confirm_design(folded, board.part, limits)
    return folded, {
        "budget": limits, "clock_mhz": clock, "io_max_bits": ours.problem.io_max_bits
        if ours.problem is not None else None,
        "nashc": ours.result.to_json(clock),
        "finn_tuned": {**tuned.result.to_json(clock), "setfolding_options": tuned.knobs},
        "design_check": check,
    }
