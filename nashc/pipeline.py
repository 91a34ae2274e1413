"""`nashc compile`: the pipeline as named, timed steps.

    parse -> search -> accelerator_search -> train -> pareto -> baseline -> verify -> report

Each step is a plain function `step_x(state) -> None` in `STEPS`, timed; the intermediate
models of every finalist are saved under `DIR/steps/` (as FINN's builder does).

The steps see the network through one interface (`nashc.candidate.NetworkSource`),
whether it is declared in the language or loaded with `from`. Two-stage search (the NASH
recipe): every candidate of the `space` is built, scored (zero-shot, or fidelity to a
loaded model) on one batch and given an optimistic fps bound by the analytic cost model
(`nashc.candidate.evaluate_candidate` with `nashc.passes.costmodel.coarse_fps`, the
*coarse* stage; candidates whose bound misses the fps requirement are infeasible). The
Pareto front of that stage (plus the best-scored candidates, up to a fixed number of
survivors) is then exported to QONNX, lowered through FINN and folded by the
coarse-to-fine accelerator search inside the budget (the *fine* stage, FINN's
estimates). With a `train` section the finalists are trained (declared networks, then
lowered again with their trained weights) or measured (loaded ones). The final front over
(accuracy when measured, else score; fps) is reported; `keep pareto N` points are kept,
the chosen design (the best among those meeting the fps/latency requirements; else the
fastest) is verified against onnxruntime (golden levels 1-3) and written out with its
FINN files. The other folding method (FINN's `SetFolding`, or nashc's search when the file
asks for `finn_setfolding`) under the same budget is run on the chosen architecture as
the baseline.

Ctrl-C during the search stops it cleanly: the candidates evaluated so far go on to the
fine stage and the report says the search was interrupted. The output directory is
written atomically: everything goes to a temporary sibling directory that is renamed at
the end; on any error nothing is left behind.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from nashc.candidate import (
    Candidate,
    Choice,
    CoarseHardware,
    NetworkSource,
    evaluate_candidate,
    network_source,
)
from nashc.dsl.ast import Pos, Program
from nashc.dsl.errors import NashcError, NashSourceError
from nashc.progress import CallbackProgress, CompileProgress, planned_candidates
from nashc.targets.boards import RESOURCE_KEYS, describe_overrun, over_budget, report_keys

__all__ = ["CompileOptions", "CompileState", "STEPS", "compile_file"]

log = logging.getLogger("nashc")

#: How many coarse-stage candidates at most go through FINN (the fine stage).
DEFAULT_SURVIVORS = 6


class GoldenCheckError(NashcError):
    """The chosen design's golden check (verification levels 1-3) failed."""


@dataclass
class CompileOptions:
    target: str | None = None
    output: Path | None = None
    seed: int | None = None
    survivors: int = DEFAULT_SURVIVORS
    progress: bool = True
    jobs: int | None = None  # workers of the coarse/fine stages (None: one per core, max 2)
    executor: str = "local"  # where candidates are evaluated: "local" or "ray" (nashc.executor)
    address: str | None = None  # Ray cluster address (executor "ray"; None: a local Ray)
    search_seconds: float | None = None  # stop the architecture search after this long
    force: bool = False  # replace an existing output directory nashc did not write
    keep_failed: bool = False  # write the design even when the golden check fails


@dataclass
class CompileState:
    path: Path
    opts: CompileOptions
    workdir: Path
    program: Program | None = None
    board: Any = None
    clock_mhz: float = 0.0
    budget: dict[str, float] = field(default_factory=dict)  # FINN keys
    seed: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    finalists: list[Candidate] = field(default_factory=list)
    pareto: list[Candidate] = field(default_factory=list)
    chosen: int | None = None
    golden: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    design_check: dict[str, Any] | None = None
    interrupted: bool = False
    stop_reason: str | None = None
    search_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    progress: CompileProgress = field(default_factory=CompileProgress)  # display hooks
    source: NetworkSource | None = None  # set by step_parse (`network_source`)
    executor: Any = None  # nashc.executor.LocalExecutor / RayExecutor, made by the search

    @property
    def network(self) -> NetworkSource:
        """The program's network source (made on first use when step_parse did not run)."""
        if self.source is None:
            assert self.program is not None
            self.source = network_source(self.program)
        return self.source


# --- steps -------------------------------------------------------------------------------


def step_parse(state: CompileState) -> None:
    from nashc.dsl import load
    from nashc.targets.boards import board_names, budget_to_absolute, get_board

    program = load(state.path, targets=board_names())
    state.program = program
    hw = program.file.hardware
    target = state.opts.target or (hw.target if hw is not None else None) or "u250"
    board = get_board(target)
    state.board = board
    state.clock_mhz = float(hw.clock_mhz if hw is not None and hw.clock_mhz
                            else board.default_clock_mhz)
    state.budget = budget_to_absolute(board, hw.budget if hw is not None else ()).finn()
    if state.opts.target is None and (hw is None or hw.target is None):
        assumed = ("the whole device as the budget" if hw is None or not hw.budget
                   else "the hardware section's budget")
        state.notes.append(
            f"no target given: compiled for {board.name} ({board.part}) at "
            f"{state.clock_mhz:g} MHz with {assumed}; choose the board with --target "
            f"(`nashc targets` lists them) or a hardware section, e.g. "
            f"`hardware {{ target {board.name}; budget lut 50%, dsp 50% }}`")
    search = program.file.search
    state.seed = state.opts.seed if state.opts.seed is not None else (
        search.seed if search is not None else 0)
    state.source = network_source(program)
    if program.network.source is not None:
        from nashc.imported import LoadedNetwork
        from nashc.runtime.load import load_notes

        assert isinstance(state.source, LoadedNetwork)
        for note in load_notes(state.source.base()):  # as estimate and verify print them
            state.progress.message(f"note: {note}")


def _hardware(state: CompileState) -> CoarseHardware:
    assert state.program is not None
    hw = state.program.file.hardware
    return CoarseHardware(state.budget["LUT"], state.budget["DSP"], state.clock_mhz,
                          hw.fps_min if hw is not None else None)


class CoarseEvaluator:
    """Maps `evaluate` (a picklable function of one choice, e.g.
    ``partial(evaluate_candidate, source, seed=..., hardware=...)``) over batches of
    choices through an executor (`nashc.executor`: local worker processes, or Ray);
    `jobs` alone means a local executor with that many workers.

    Workers run single-threaded PyTorch; every candidate's weights and scoring batch are
    fixed by the seed, so results do not depend on where a candidate is evaluated."""

    def __init__(self, evaluate: Callable[[Choice], Candidate], jobs: int = 1,
                 executor: Any = None) -> None:
        from nashc.executor import LocalExecutor

        self.evaluate = evaluate
        self.executor = executor if executor is not None else LocalExecutor(jobs)
        self._owns = executor is None

    def __call__(self, choices: list[Choice]) -> list[Candidate]:
        return list(self.executor.map(self.evaluate, choices))

    def close(self) -> None:
        if self._owns:
            self.executor.close()


def _executor(state: CompileState) -> Any:
    """The run's executor (`--executor`, `--jobs`, `--address`), made once and closed by
    `compile_file`."""
    if state.executor is None:
        from nashc.executor import ExecutorError, make_executor

        try:
            state.executor = make_executor(state.opts.executor, state.opts.jobs,
                                           state.opts.address)
        except ExecutorError as err:
            raise NashcError(str(err)) from err
    return state.executor


def step_search(state: CompileState) -> None:
    from nashc.passes.nas import Evaluation, evolution, exhaustive, random_search

    program = state.program
    assert program is not None
    search = program.file.search
    source = state.network
    source.prepare(search.metric_batch if search is not None else 32, state.seed)
    t0 = time.perf_counter()
    deadline = (time.monotonic() + state.opts.search_seconds
                if state.opts.search_seconds is not None else None)
    choices = source.choices()
    executor = _executor(state) if len(choices) else None
    evaluator = CoarseEvaluator(partial(evaluate_candidate, source, seed=state.seed,
                                        hardware=_hardware(state)), 1, executor)

    def evaluate_many(batch: list[Choice]) -> list[Evaluation]:
        cands = evaluator(batch)
        state.candidates.extend(cands)
        if cands:
            best = max(state.candidates, key=lambda c: (c.score, c.coarse_fps))
            state.progress.search_advanced(len(state.candidates),
                                           {"score": best.score, "fps": best.coarse_fps})
        return [Evaluation(c.score, c.coarse_fps, c.coarse_feasible) for c in cands]

    strategy = search.strategy if search is not None else "evolution"
    planned = 1 if not choices else planned_candidates(
        strategy, program.space_size, samples=search.samples if search else 500,
        population=search.population if search else 64,
        generations=search.generations if search else 20)
    state.progress.search_started(planned, state.opts.search_seconds)
    try:
        if not choices:
            evaluate_many([{}])
        else:
            if strategy == "exhaustive":
                logv = exhaustive(choices, evaluate_many=evaluate_many, deadline=deadline)
            elif strategy == "random":
                logv = random_search(choices, samples=search.samples if search else 500,
                                     seed=state.seed, evaluate_many=evaluate_many,
                                     deadline=deadline)
            else:
                logv = evolution(choices, population=search.population if search else 64,
                                 generations=search.generations if search else 20,
                                 seed=state.seed, evaluate_many=evaluate_many,
                                 deadline=deadline)
            state.interrupted = logv.stopped_early
            state.stop_reason = logv.stop_reason
    finally:
        state.progress.search_finished(len(state.candidates), state.stop_reason)
        evaluator.close()
    state.search_seconds = time.perf_counter() - t0
    if not state.candidates:
        if state.stop_reason == "interrupted":
            raise KeyboardInterrupt  # Ctrl-C before any result: stop (the CLI exits 130)
        raise NashcError("the search stopped before any candidate was evaluated")
    if state.interrupted:
        state.notes.append(f"architecture search stopped early ({state.stop_reason}) after "
                           f"{len(state.candidates)} candidates; the front is the best so far")


def _survivors(state: CompileState) -> list[Candidate]:
    from nashc.passes.nas import pareto_front

    feas = [c for c in state.candidates if c.coarse_feasible] or list(state.candidates)
    front = [feas[i] for i in pareto_front([(c.score, c.coarse_fps) for c in feas])]
    picked: list[Candidate] = []
    for c in front + sorted(feas, key=lambda c: -c.score):
        if c not in picked:
            picked.append(c)
        if len(picked) >= state.opts.survivors:
            break
    return picked


@dataclass
class FineContext:
    """What the fine stage needs per candidate, small enough to send to workers."""

    source: NetworkSource  # prepared (its scoring batch made)
    seed: int
    budget: dict[str, float]
    board: Any
    clock_mhz: float
    accelerator: str
    latency_max_ms: float | None = None  # the file's `latency <=` requirement


@dataclass
class FineResult:
    """One candidate through FINN: its QONNX model, the folded dataflow model and FINN's
    estimate, or the error that stopped it."""

    qonnx: Any = None
    dataflow: Any = None
    lowered: Any = None
    fps: float | None = None
    latency_ms: float | None = None
    resources: dict[str, float] | None = None
    feasible: bool | None = None
    error: str | None = None


def _fine_context(state: CompileState) -> FineContext:
    assert state.program is not None
    hw = state.program.file.hardware
    return FineContext(state.network, state.seed, state.budget, state.board, state.clock_mhz,
                       _accelerator(state), hw.latency_max_ms if hw is not None else None)


def _lower_candidate(ctx: FineContext, choice: Choice, workdir: Path,
                     module: Any = None,
                     on_step: Callable[[str], None] | None = None) -> FineResult:
    """Exports the candidate (`module`: a trained module; default: the source's own
    export) to QONNX in `workdir`, lowers it through FINN and folds it inside the budget.
    `on_step` is told each lowering step's name, then "folding search" (progress display;
    only where the call runs in the compiling process). Raises NashcError where FINN
    cannot take it."""
    from nashc.targets.estimate import estimate
    from nashc.targets.lower import lower_to_hw

    workdir.mkdir(parents=True, exist_ok=True)
    model = ctx.source.export(choice, ctx.seed, workdir / "qonnx.onnx", trained=module)
    extra = _hybrid_steps()
    lowered = lower_to_hw(model, ctx.board, ctx.clock_mhz, extra, workdir=workdir / "_finn",
                          on_step=on_step, dsp_free=ctx.budget["DSP"] <= 0)
    shutil.rmtree(workdir / "_finn", ignore_errors=True)
    if on_step is not None:
        on_step("folding search")
    search = _folding_for(ctx.budget, ctx.board, ctx.clock_mhz, ctx.accelerator,
                          ctx.latency_max_ms)
    dataflow = lowered.dataflow.transform(search)
    est = estimate(dataflow, ctx.clock_mhz, ctx.board.part)
    # the whole design FINN builds: layers, DWCs, FIFOs, deep FIFOs (targets.folding)
    total = search.result.resources if search.result is not None else est.totals
    return FineResult(
        qonnx=model, dataflow=dataflow, lowered=lowered, fps=est.estimated_throughput_fps,
        latency_ms=est.estimated_latency_ns / 1e6,
        resources={k: float(total[k]) for k in RESOURCE_KEYS},
        feasible=bool(search.result is not None and search.result.feasible))


def _fine_eval(ctx: FineContext, choice: Choice,
               on_step: Callable[[str], None] | None = None) -> FineResult:
    """`_lower_candidate` in a temporary directory, with FINN's refusal as a result (an
    executor's function: the caller saves the models where they belong)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nashc_fine_") as tmp:
        try:
            return _lower_candidate(ctx, choice, Path(tmp), on_step=on_step)
        except NashcError as err:
            return FineResult(error=str(err))


def _apply_fine(state: CompileState, cand: Candidate, idx: int, res: FineResult) -> None:
    """Saves a candidate's QONNX and folded dataflow models under DIR/steps and sets its
    fine-stage figures."""
    steps_dir = state.workdir / "steps" / f"candidate_{idx:02d}"
    steps_dir.mkdir(parents=True, exist_ok=True)
    qpath = steps_dir / "qonnx.onnx"
    if not qpath.exists():
        res.qonnx.save(str(qpath))
    res.dataflow.save(str(steps_dir / "dataflow_folded.onnx"))
    cand.qonnx_path = qpath
    cand.dataflow = res.dataflow
    cand.lowered = res.lowered
    cand.fps = res.fps
    cand.latency_ms = res.latency_ms
    cand.resources = res.resources
    cand.feasible = res.feasible


def _finn_stage(state: CompileState, cand: Candidate, idx: int, module: Any = None) -> None:
    """Exports the candidate (`module`: a trained module; default: the source's own
    export) to QONNX, lowers it through FINN and folds it inside the budget, in this
    process."""
    steps_dir = state.workdir / "steps" / f"candidate_{idx:02d}"
    res = _lower_candidate(_fine_context(state), cand.choice, steps_dir, module,
                           on_step=state.progress.stage_step)
    _apply_fine(state, cand, idx, res)


def _accelerator(state: CompileState) -> str:
    """The folding method of the file's `search accelerator` statement."""
    assert state.program is not None
    search = state.program.file.search
    return search.accelerator if search is not None else "coarse_to_fine"


def _folding(state: CompileState, accelerator: str, tuned: bool = True) -> Any:
    """The folding transformation for `accelerator` inside the budget (the whole design
    FINN builds, `targets.folding`); its `result` says whether the folding fits.
    `finn_setfolding` is FINN tuned (or FINN defaults with `tuned=False`); nashc's search
    spends resources on latency only when the file has a `latency <=` requirement."""
    assert state.program is not None
    hw = state.program.file.hardware
    return _folding_for(state.budget, state.board, state.clock_mhz, accelerator,
                        hw.latency_max_ms if hw is not None else None, tuned)


def _folding_for(budget: dict[str, float], board: Any, clock_mhz: float, accelerator: str,
                 latency_max_ms: float | None, tuned: bool = True) -> Any:
    """`_folding` from its parts (what a fine-stage worker has)."""
    from nashc.targets.folding import SearchFolding, SetFoldingWithinBudget

    if accelerator == "finn_setfolding":
        return SetFoldingWithinBudget(budget, board.part, clock_mhz, steps=12, tuned=tuned)
    latency = None
    if latency_max_ms is not None:
        latency = int(latency_max_ms * 1e-3 * clock_mhz * 1e6)
    return SearchFolding(budget, board.part, latency_max_cycles=latency)


def _hybrid_steps() -> list[Any]:
    from nashc.targets.hybrid_lowering import hybrid_extra_steps

    return list(hybrid_extra_steps())


def step_accelerator_search(state: CompileState) -> None:
    """The fine stage: every survivor lowered through FINN and folded, in parallel through
    the run's executor (each survivor is independent)."""
    from nashc.executor import LocalExecutor

    finalists = _survivors(state)
    executor = _executor(state)
    ctx = _fine_context(state)
    state.progress.stage_started("FINN lowering + folding", len(finalists))
    in_process = isinstance(executor, LocalExecutor) and executor.workers <= 1
    if in_process:
        # one at a time here, so the display follows each survivor's lowering steps
        results = []
        for i, cand in enumerate(finalists):
            state.progress.stage_candidate(i, len(finalists), f"score {cand.score:.3f}")
            results.append(_fine_eval(ctx, cand.choice, on_step=state.progress.stage_step))
    else:
        # in parallel: the display advances as results come back, without their steps
        results = executor.map(partial(_fine_eval, ctx), [c.choice for c in finalists])
    for i, (cand, res) in enumerate(zip(finalists, results, strict=True)):
        if not in_process:
            state.progress.stage_candidate(i, len(finalists), f"score {cand.score:.3f}")
        if res.error is not None:
            # one architecture FINN cannot take must not sink the others: say which
            cand.error = res.error
            state.notes.append(f"candidate {cand.arch} was not lowered: {res.error}")
        else:
            _apply_fine(state, cand, i, res)
    state.progress.stage_finished()
    state.finalists = finalists
    if all(c.error for c in finalists):
        raise NashcError("no surviving candidate could be lowered through FINN:\n"
                         + "\n".join(f"  {c.error}" for c in finalists))


def step_train(state: CompileState) -> None:
    """Sets the finalists' `accuracy` with the file's `train` section: a declared network's
    finalists are trained (Brevitas QAT, `nashc.training`), exported again with their
    trained weights and lowered/folded again, and the trained module is kept for
    `step_verify`; a network loaded with `from` is measured as it is (no PyTorch module to
    train). Without a train section nothing happens; a data set that cannot feed the
    network (e.g. 8x8 digits for a 3x32x32 input) is a note, not an error, and accuracies
    stay None. Missing or malformed data is an error."""
    from nashc.runtime.data import DatasetMismatch
    from nashc.training import prepare_data

    program = state.program
    assert program is not None
    if program.file.train is None:
        return
    try:
        data = prepare_data(program, state.seed)
    except DatasetMismatch as err:
        state.notes.append(f"train section skipped: {err}; accuracies are not reported")
        return
    source = state.network
    todo = [(i, c) for i, c in enumerate(state.finalists) if c.error is None]
    from nashc.imported import LoadedNetwork

    state.progress.stage_started("measuring accuracy" if isinstance(source, LoadedNetwork)
                                 else "training + FINN lowering", len(todo))
    for n, (i, cand) in enumerate(todo):
        state.progress.stage_candidate(n, len(todo), f"score {cand.score:.3f}")
        acc, trained = source.accuracy(cand.choice, state.seed, data,
                                       label=f"{n + 1}/{len(todo)}",
                                       progress=state.progress.stage_step)
        cand.accuracy = acc
        if trained is None:
            continue
        cand.module = trained
        try:
            _finn_stage(state, cand, i, module=trained)
        except NashcError as err:
            cand.error = str(err)
            cand.feasible = False
            state.notes.append(f"candidate {cand.arch} was not lowered after training: {err}")
    state.progress.stage_finished()
    state.notes.extend(source.accuracy_notes(data, len(todo), state.seed))


def _overrun(state: CompileState) -> tuple[str, list[str]]:
    """Which resources the least demanding lowered finalist needs beyond the budget: the
    text for the error, and those resources' FINN keys."""
    best: tuple[int, str, list[str]] | None = None
    for cand in state.finalists:
        if cand.resources is None:
            continue
        keys = over_budget(cand.resources, state.budget)
        if keys and (best is None or len(keys) < best[0]):
            best = (len(keys), describe_overrun(cand.resources, state.budget), keys)
    return (f" (the closest design needs {best[1]})", best[2]) if best else ("", [])


#: FINN's resource keys -> the `.nash` budget's resource names
_BUDGET_NAMES = {"LUT": "lut", "BRAM_18K": "bram", "URAM": "uram", "DSP": "dsp"}


def _budget_pos(state: CompileState, keys: list[str]) -> Pos | None:
    """Where the budget that `keys` (FINN resource keys) exceed is written: the budget item
    of the first of them, else the budget statement, the target or the hardware section;
    None without a hardware section (the default target's whole device)."""
    assert state.program is not None
    hw = state.program.file.hardware
    if hw is None:
        return None
    names = [_BUDGET_NAMES[k] for k in keys]
    for name in names:
        for item in hw.budget:
            if item.resource == name:
                return item.pos
    return hw.value_pos.get("budget") or hw.target_pos or hw.pos


def _quality(cand: Candidate) -> float:
    """The measured accuracy when there is one (0.0 included), else the score."""
    return cand.accuracy if cand.accuracy is not None else cand.score


def step_pareto(state: CompileState) -> None:
    from nashc.passes.nas import pareto_front

    program = state.program
    assert program is not None
    ok = [c for c in state.finalists if c.feasible and c.fps is not None]
    if not ok:
        over, keys = _overrun(state)
        raise NashSourceError("no candidate fits the budget on the target even with the "
                              "slowest folding; raise the budget or shrink the space" + over,
                              _budget_pos(state, keys))
    idx = pareto_front([(_quality(c), c.fps or 0.0) for c in ok])
    keep = program.file.search.keep_pareto if program.file.search is not None else 8
    state.pareto = [ok[i] for i in idx][:keep]
    hw = program.file.hardware
    meets = [i for i, c in enumerate(state.pareto)
             if (hw is None or hw.fps_min is None or (c.fps or 0) >= hw.fps_min)
             and (hw is None or hw.latency_max_ms is None
                  or (c.latency_ms or 0) <= hw.latency_max_ms)]
    if hw is not None and (hw.fps_min is not None or hw.latency_max_ms is not None) and not meets:
        state.notes.append("no Pareto point meets the fps/latency requirements; the fastest "
                           "design is reported as chosen")
    pool = meets or list(range(len(state.pareto)))
    # the best-scoring design that meets the requirements
    state.chosen = max(pool, key=lambda i: (_quality(state.pareto[i]),
                                            state.pareto[i].fps or 0.0)) if meets else max(
        pool, key=lambda i: state.pareto[i].fps or 0.0)


def step_baseline(state: CompileState) -> None:
    from nashc.targets.estimate import estimate

    assert state.chosen is not None
    chosen = state.pareto[state.chosen]
    # the other folding method on the chosen architecture, in the same budget
    other = "coarse_to_fine" if _accelerator(state) == "finn_setfolding" else "finn_setfolding"
    base = _folding(state, other)
    folded = chosen.lowered.dataflow.transform(base)
    est = estimate(folded, state.clock_mhz, state.board.part)
    assert base.result is not None
    state.baseline = {
        "accelerator": other,
        "label": "FINN tuned" if other == "finn_setfolding" else "nashc's folding search",
        "target_fps": getattr(base, "target_fps", None),
        "setfolding_options": getattr(base, "knobs", None),
        "fps": est.estimated_throughput_fps,
        "latency_ms": est.estimated_latency_ns / 1e6,
        "resources": report_keys(base.result.resources),
        "fits_budget": bool(base.result.feasible),
    }
    # FINN at its defaults (only the target searched) beside FINN tuned
    defaults = _folding(state, "finn_setfolding", tuned=False)
    chosen.lowered.dataflow.transform(defaults)
    assert defaults.result is not None
    state.baseline["finn_defaults"] = {
        "fps": defaults.result.fps(state.clock_mhz) if defaults.result.feasible else 0.0,
        "resources": report_keys(defaults.result.resources),
        "fits_budget": bool(defaults.result.feasible),
        "setfolding_options": defaults.knobs,
    }
    state.design_check = _design_check(state, chosen.dataflow)


def _design_check(state: CompileState, dataflow: Any) -> dict[str, Any]:
    """FINN's InsertDWC/InsertFIFO on the chosen design (`targets.folding.confirm_design`):
    the figures as built and any problem (shapes, widths, limits, budget) — a problem is
    also a note of the report."""
    from nashc.targets.folding import confirm_design

    check = confirm_design(dataflow, state.board.part, state.budget)
    out = {"fits": check["fits"], "problems": check["problems"],
           "resources": report_keys(check["resources"]),
           "estimated": report_keys(check["estimated"]), "dwcs": check["dwcs"],
           "fifos": check["fifos"], "deep_fifos": check["deep_fifos"]}
    for problem in check["problems"]:
        state.notes.append(f"design check (FINN's InsertDWC/InsertFIFO): {problem}")
    return out


def step_verify(state: CompileState) -> None:
    from nashc.runtime.golden import compare_levels, load_model
    from nashc.targets.verify import verify_level3

    assert state.chosen is not None and state.program is not None
    chosen = state.pareto[state.chosen]
    model = load_model(str(chosen.qonnx_path))
    # level 1: the trained module (step_train), else the one the source exported
    module = chosen.module
    if module is None:
        module = state.network.torch_module(chosen.choice, state.seed)
    result = compare_levels(model, module, seed=state.seed)
    # level 3: FINN's python execution of the dataflow graph
    result.levels.append(verify_level3(model, chosen.lowered, state.seed))
    state.golden = result.to_json()
    if result.ok:
        return
    failed = "; ".join(
        f"{lv.name} ({lv.comparison}): " + ", ".join(
            f"{t.tensor} max |diff| {t.max_abs_diff:.3g} (tolerance {t.tolerance:.3g})"
            for t in lv.tensors if not t.ok)
        for lv in result.levels if not lv.ok)
    if state.opts.keep_failed:
        state.notes.append(f"golden check FAILED, design kept (--keep-failed): {failed}")
        return
    raise GoldenCheckError(
        f"golden check failed for the chosen design {chosen.arch}: {failed}; nothing "
        "written (--keep-failed writes the design anyway)")


def _layers(state: CompileState, cand: Candidate) -> list[dict[str, Any]]:
    """The candidate's per-layer table (`nashc.layer_table.layer_rows`)."""
    from nashc.imported import LoadedNetwork
    from nashc.layer_table import layer_rows

    source = state.network
    if isinstance(source, LoadedNetwork):
        return layer_rows(state.program, cand.choice, cand.dataflow,
                          graph_model=source.candidate(cand.choice))
    return layer_rows(state.program, cand.choice, cand.dataflow,
                      module=cand.module if cand.module is not None
                      else source.build(cand.choice, state.seed))


def step_report(state: CompileState) -> None:
    from nashc.report import CompileResult, ParetoPoint, write_json, write_markdown, write_plot
    from nashc.targets.estimate import estimate, write_reports
    from nashc.targets.handoff import write_build_config

    program = state.program
    assert program is not None and state.chosen is not None
    out = state.workdir
    points = [ParetoPoint(arch=c.arch, score=c.score, accuracy=c.accuracy, fps=c.fps or 0.0,
                          latency_ms=c.latency_ms or 0.0,
                          resources=report_keys(c.resources) if c.resources else {},
                          ops=c.ops, coarse_fps=c.coarse_fps, layers=_layers(state, c))
              for c in state.pareto]
    lowered = {id(c) for c in state.finalists}
    dev = state.board.resources
    budget = report_keys(state.budget)
    search = program.file.search
    hw = program.file.hardware
    result = CompileResult(
        source=state.path.name, network=program.network.name, target=state.board.name,
        part=state.board.part, clock_mhz=state.clock_mhz,
        budget={k: (v if math.isfinite(v) else None) for k, v in budget.items()},  # type: ignore[misc]
        search={
            "strategy": search.strategy if search else "evolution",
            "metric": state.network.metric,
            "accelerator": search.accelerator if search else "coarse_to_fine",
            "seed": state.seed,
            "space_size": program.space_size,
            "candidates_evaluated": len(state.candidates),
            "finn_evaluated": len(state.finalists),
            "interrupted": state.interrupted,
            "stop_reason": state.stop_reason,
            "seconds": round(state.search_seconds, 2),
        },
        pareto=points, chosen=state.chosen, golden=state.golden, baseline=state.baseline,
        design_check=state.design_check,
        steps=state.timings, notes=state.notes,
        requirements={"fps_min": hw.fps_min if hw else None,
                      "latency_max_ms": hw.latency_max_ms if hw else None},
        device={"lut": dev.lut, "bram18": dev.bram18, "uram": dev.uram, "dsp": dev.dsp},
        coarse={"score": [round(c.score, 6) for c in state.candidates],
                "fps_bound": [c.coarse_fps for c in state.candidates],
                "feasible": [c.coarse_feasible for c in state.candidates],
                "lowered": [id(c) in lowered for c in state.candidates]},
    )
    chosen = state.pareto[state.chosen]
    design = out / "design"
    design.mkdir(exist_ok=True)
    shutil.copy(chosen.qonnx_path, design / "model_qonnx.onnx")  # type: ignore[arg-type]
    from nashc.runtime.golden import load_model, to_standard_onnx

    std = to_standard_onnx(load_model(str(chosen.qonnx_path)))
    std.save(str(design / "model_onnxruntime.onnx"))
    est = estimate(chosen.dataflow, state.clock_mhz, state.board.part)
    write_reports(est, chosen.dataflow, design)
    write_build_config(design, state.board, state.clock_mhz)
    from nashc.targets.rtl.level4 import write_design_rtl

    rtl_dirs = write_design_rtl(chosen.dataflow, design / "rtl")  # the hybrid layers (ms)
    if rtl_dirs:  # state.notes is the list the report holds
        state.notes.append(
            f"design/rtl: generated SystemVerilog of the {len(rtl_dirs)} shift/adder layers "
            "(simulated against their python execution by `nashc verify --rtl`); FINN's IP "
            "stitching and synthesis of the design need Vivado")
    write_json(result, out / "report.json")
    report = json.loads((out / "report.json").read_text())  # md and plot: from the JSON
    write_markdown(report, out / "report.md")
    write_plot(report, out / "pareto.png")


STEPS: list[tuple[str, Callable[[CompileState], None]]] = [
    ("parse", step_parse),
    ("search", step_search),
    ("accelerator_search", step_accelerator_search),
    ("train", step_train),
    ("pareto", step_pareto),
    ("baseline", step_baseline),
    ("verify", step_verify),
    ("report", step_report),
]


def compile_file(path: Path, opts: CompileOptions,
                 progress: CompileProgress | Callable[[str], Any] | None = None
                 ) -> tuple[Path, dict[str, Any]]:
    """Runs the pipeline; returns the output directory and the report.

    `progress` receives the pipeline's progress (`nashc.progress.CompileProgress`; a
    plain callable gets each event as a line of text; None: nothing is shown).
    The output directory (`opts.output`, default `<file stem>_nashc`) is written with
    `nashc.targets.outdir.atomic_output_dir`: an existing directory nashc did not write
    is refused unless `opts.force`, and nothing is left behind on an error or SIGTERM."""
    from nashc.targets.outdir import atomic_output_dir

    path = Path(path)
    if not path.is_file():
        raise NashcError(f"{path}: no such file")
    out = (opts.output or Path(f"{path.stem}_nashc")).absolute()
    with atomic_output_dir(out, force=opts.force, command="compile") as tmp:
        hooks = (progress if isinstance(progress, CompileProgress) else
                 CallbackProgress(progress) if progress is not None else CompileProgress())
        state = CompileState(path=path, opts=opts, workdir=tmp, progress=hooks)
        try:
            for name, fn in STEPS:
                hooks.step(name)
                t0 = time.perf_counter()
                try:
                    fn(state)
                except KeyboardInterrupt:
                    if name != "search" or not state.candidates:
                        raise  # nothing scored yet: stop (the CLI exits 130)
                    state.interrupted = True
                state.timings[name] = round(time.perf_counter() - t0, 3)
            report = json.loads((tmp / "report.json").read_text())
        finally:
            if state.executor is not None:
                state.executor.close()
    return out, report
