"""Quantization-aware training of candidates: the glue between a `.nash` file's `train`
section, the data sets (`nashc.runtime.data`) and the training loop
(`nashc.runtime.train`), used by `nashc compile` (`step_train`) and `nashc train`.

A candidate is a mapping (layer, dim) -> option, as in the search. `build_candidate`
builds its Brevitas module exactly as the pipeline does (``torch.manual_seed(seed)``
then `build_module`), so a trained candidate starts from the weights the zero-shot score
saw. `train_candidate` trains it with the section's epochs, batch and learning rate
(Adam, cosine schedule, cross-entropy; Brevitas fake-quantizes weights and activations in
every forward pass, so this is quantization-aware training) and reports the validation
accuracy per epoch, measured on held-out data.

`train_file` is `nashc train FILE`: it trains one architecture (the declared network,
or a point of an earlier `nashc compile` report) without searching, exports the trained
module to QONNX, checks the export against the module and onnxruntime
(`compare_levels`), and writes ``DIR/model_qonnx.onnx`` and ``DIR/train.json``
atomically (a temporary sibling directory renamed at the end).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nashc.dsl.ast import Program, Train
from nashc.dsl.errors import NashcError, NashSourceError

__all__ = [
    "TrainData",
    "build_candidate",
    "layer_choices",
    "prepare_data",
    "train_candidate",
    "arch_from_report",
    "train_file",
]


@dataclass
class TrainData:
    """Loaders for one program, made once and reused for every candidate."""

    train: Any  # nashc.runtime.data.ArrayLoader
    val: Any
    info: Any  # nashc.runtime.data.DataInfo

    def describe(self) -> dict[str, Any]:
        i = self.info
        return {"dataset": i.dataset, "path": i.path, "classes": i.classes,
                "train_samples": i.train_samples, "val_samples": i.val_samples,
                "source_shape": list(i.source_shape)}


def layer_choices(choice: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """(layer, dim) -> option as per-layer `LayerChoice`s (as the pipeline does)."""
    from nashc.runtime.build import LayerChoice

    per_layer: dict[str, dict[str, Any]] = {}
    for (layer, dim), value in choice.items():
        per_layer.setdefault(layer, {})[dim] = value
    return {layer: LayerChoice(**kw) for layer, kw in per_layer.items()}


def build_candidate(program: Program, choice: dict[tuple[str, str], Any], seed: int,
                    pool: Any = None) -> Any:
    """The candidate's module with the initial weights the pipeline gives it for `seed`;
    with `pool` (a `nashc.runtime.build.ModulePool`) its layers are reused ones, valid
    until the next build from that pool (bit-identical to a fresh build)."""
    import torch

    from nashc.runtime.build import build_module

    if pool is None:
        torch.manual_seed(seed)
    else:  # the CPU generator alone (what the weights are drawn from): seeding the lazy
        # accelerator generators too costs more than a pooled build
        torch.default_generator.manual_seed(seed)
    return build_module(program.network, layer_choices(choice), pool=pool)


def _train_section(program: Program) -> Train:
    section = program.file.train
    if section is None:
        raise NashcError(f"{program.file.path}: no train section; add one, e.g.\n"
                         "  train {\n    dataset digits\n    epochs  5\n    batch   64\n"
                         "    lr      0.01\n  }")
    return section


def _num_outputs(program: Program) -> int:
    return int(np.prod(program.network.layers[-1].out_shape))


def prepare_data(program: Program, seed: int, limit: int | None = None) -> TrainData:
    """Loaders for the program's train section and network input.

    Raises `DatasetMismatch` when the data cannot feed the network and `DatasetError`
    when it is missing or malformed (both `NashcError`s)."""
    from nashc.runtime.data import loaders_for

    section = _train_section(program)
    net = program.network
    if net.input_shape is None:
        raise NashcError(f"network {net.name!r} has no input declaration to train with")
    tr, va, info = loaders_for(section, net.input_shape, section.batch, seed=seed, limit=limit,
                               dtype=net.input_dtype, num_outputs=_num_outputs(program))
    return TrainData(tr, va, info)


def train_candidate(program: Program, choice: dict[tuple[str, str], Any], seed: int, *,
                    data: TrainData | None = None, epochs: int | None = None,
                    progress: bool = False, limit: int | None = None,
                    on_epoch: Callable[[int, float, float | None], None] | None = None,
                    label: str = "training", threads: int | None = 1) -> tuple[Any, Any]:
    """Builds the candidate for `seed` and trains it with the file's train section.

    Returns (module, `TrainResult`); ``result.val_accuracy[-1]`` is the final validation
    accuracy in [0, 1]. `data` reuses loaders (else they are made here), `epochs`
    overrides the section's, `progress` shows a rich progress bar on stderr.

    `threads` sets PyTorch's intra-op threads while training (restored after; None leaves
    them): 1 by default, because on small networks several OpenMP threads are slower
    (measured 0.12 s vs 3-4 s per digits epoch of a 64-16-10 net on this 2-core machine
    under load) and one thread makes the figures independent of the core count."""
    import torch

    from nashc.runtime.train import train

    section = _train_section(program)
    if data is None:
        data = prepare_data(program, seed, limit)
    data.train.reseed(seed)
    module = build_candidate(program, choice, seed)
    n_epochs = section.epochs if epochs is None else epochs
    bar: Any = None
    ctx: Any = nullcontext()
    if progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                       console=Console(stderr=True), transient=True)
        ctx = bar
    steps = len(data.train)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    with ctx:
        task = (bar.add_task(label, total=n_epochs * steps, status="")
                if bar is not None else None)

        def step_cb(epoch: int, i: int, loss: float) -> None:
            if bar is not None:
                bar.update(task, completed=epoch * steps + i + 1,
                           status=f"epoch {epoch + 1}/{n_epochs} loss {loss:.3f}")

        def epoch_cb(epoch: int, loss: float, acc: float | None) -> None:
            if bar is not None:
                bar.console.print(f"{label}: epoch {epoch + 1}/{n_epochs} loss {loss:.4f}"
                                + ("" if acc is None else f" val acc {100 * acc:.2f}%"))
            if on_epoch is not None:
                on_epoch(epoch, loss, acc)

        try:
            result = train(module, data.train, data.val, epochs=n_epochs, lr=section.lr,
                           seed=seed, on_step=step_cb, on_epoch=epoch_cb)
        finally:
            torch.set_num_threads(old_threads)
    result.data = data.describe()
    module.eval()
    return module, result


# --- nashc train ------------------------------------------------------------------------------


def arch_from_report(program: Program, report_path: Path, index: int | None = None
                     ) -> tuple[dict[tuple[str, str], Any], int]:
    """The choice of pareto point `index` (default: the chosen one) of a compile report,
    checked against the program's choice points. Returns (choice, index)."""
    p = Path(report_path)
    try:
        report = json.loads(p.read_text())
    except FileNotFoundError:
        raise NashcError(f"{p}: no such file (expected a report.json from nashc compile)") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NashcError(f"{p}: not a JSON report of nashc compile ({err})") from None
    pareto = report.get("pareto") if isinstance(report, dict) else None
    if not isinstance(pareto, list) or not pareto:
        raise NashcError(f"{p}: no 'pareto' list of points; expected a report.json written by "
                         "nashc compile")
    if index is None:
        chosen = report.get("chosen")
        if not isinstance(chosen, int):
            raise NashcError(f"{p}: no 'chosen' point; pass --index N (0..{len(pareto) - 1})")
        index = chosen
    if not 0 <= index < len(pareto):
        raise NashcError(f"--index {index} is out of range: {p} has {len(pareto)} pareto "
                         f"point{'s' if len(pareto) != 1 else ''} (0..{len(pareto) - 1})")
    arch = pareto[index].get("arch") if isinstance(pareto[index], dict) else None
    if not isinstance(arch, dict):
        raise NashcError(f"{p}: pareto point {index} has no 'arch' mapping")
    choice: dict[tuple[str, str], Any] = {}
    for key, value in arch.items():
        layer, _, dim = str(key).rpartition(".")
        options = program.choices.get((layer, dim))
        if options is None:
            known = ", ".join(f"{ly}.{d}" for ly, d in sorted(program.choices)) or "none"
            raise NashcError(f"{p}: arch key {key!r} is not a choice point of "
                             f"{program.file.path} (its choice points: {known}); was the "
                             "report made from another file?")
        match = [o for o in options if o == value]
        if not match:
            raise NashcError(f"{p}: arch {key} = {value!r} is not one of the options "
                             f"{{{', '.join(map(str, options))}}} in {program.file.path}")
        choice[(layer, dim)] = match[0]
    missing = sorted(set(program.choices) - set(choice))
    if missing:
        raise NashcError(f"{p}: arch lacks the choice points "
                         f"{', '.join(f'{ly}.{d}' for ly, d in missing)} of "
                         f"{program.file.path}; was the report made from another file?")
    return choice, index


def _at_dataset(program: Program, err: NashcError) -> NashcError:
    """A data set error pointed at the `dataset` line of the file."""
    section = program.file.train
    if section is None or isinstance(err, NashSourceError):
        return err
    pos = section.value_pos.get("dataset", section.pos)
    return NashSourceError(str(err), pos)


def train_file(path: Path, arch: Path | None = None, index: int | None = None,
               output: Path | None = None, seed: int | None = None, progress: bool = True,
               limit: int | None = None, epochs: int | None = None, force: bool = False
               ) -> tuple[Path, dict[str, Any]]:
    """`nashc train`: trains one architecture of FILE and writes DIR atomically.

    Returns (DIR, the train.json content)."""
    from nashc.dsl import load
    from nashc.runtime.build import export_qonnx_model
    from nashc.runtime.golden import compare_levels
    from nashc.targets.boards import board_names

    path = Path(path)
    if not path.is_file():
        raise NashcError(f"{path}: no such file")
    if index is not None and arch is None:
        raise NashcError("--index needs --arch REPORT.json (it picks a pareto point of it)")
    program = load(path, targets=board_names())
    section = _train_section(program)
    if program.network.source is not None:
        raise NashcError(f"{path}: networks loaded with `from` cannot be trained yet; declare "
                         "the network in the language")
    if seed is None:
        seed = program.file.search.seed if program.file.search is not None else 0
    choice: dict[tuple[str, str], Any] = {}
    picked = None
    if arch is not None:
        choice, picked = arch_from_report(program, arch, index)
    try:
        data = prepare_data(program, seed, limit)
    except NashcError as err:
        raise _at_dataset(program, err) from None

    out = (output or Path(f"{path.stem}_train")).absolute()
    from nashc.targets.outdir import atomic_output_dir

    with atomic_output_dir(out, force=force, command="train") as tmp:
        module, result = train_candidate(program, choice, seed, data=data, epochs=epochs,
                                         progress=progress, label=f"training {path.name}")
        model = export_qonnx_model(module, program.network, tmp / "model_qonnx.onnx")
        golden = compare_levels(model, module, seed=seed).to_json()
        summary: dict[str, Any] = {
            "source": path.name,
            "network": program.network.name,
            "arch": {f"{ly}.{d}": v for (ly, d), v in sorted(choice.items())},
            "arch_from": None if arch is None else {"report": str(arch), "index": picked},
            "seed": seed,
            "dataset": result.data,
            "epochs": len(result.losses),
            "batch": section.batch,
            "lr": section.lr,
            "limit": limit,
            "losses": result.losses,
            "val_accuracy": result.val_accuracy,
            "accuracy": result.val_accuracy[-1] if result.val_accuracy else None,
            "seconds": round(result.seconds, 2),
            "golden": golden,
        }
        (tmp / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out, summary
