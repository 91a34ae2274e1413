"""One candidate interface for the compile pipeline, whatever the network's source.

A *network source* is the network of a `.nash` file: declared in the language
(`DeclaredNetwork`, a Brevitas module built per candidate) or loaded with
``network NAME from "model.onnx"`` (`nashc.imported.LoadedNetwork`, the trained graph
rewritten per candidate). Both offer the pipeline the same operations:

- ``choices()``: the choice points of the space and their options;
- ``prepare(n, seed)``: the scoring batch, n inputs in the range of the input's datatype
  (as training feeds it);
- ``build(choice, seed)``: the candidate, a PyTorch module with seeded initial weights or
  the rewritten QONNX graph;
- ``score(built)``: its score (zero-shot, or fidelity to the loaded model);
- ``layer_work(built, choice)``: MACs and lane limits of its compute layers (the cost
  model's input);
- ``export(choice, seed, path)``: the candidate as a QONNX model (FINN's input);
- ``torch_module(choice, seed)``: the module the export came from (golden level 1), or
  None;
- ``accuracy(choice, seed, data)``: its validation accuracy (trained for declared
  networks, measured as it is for loaded ones) and the trained module, if any.

`evaluate_candidate(source, choice, seed, hardware)` is the coarse stage for one
candidate: a plain function of picklable arguments, so an executor can run it in worker
processes or on a cluster (``functools.partial(evaluate_candidate, source, seed=...,
hardware=...)`` mapped over choices). Its result depends only on its arguments: every
candidate's initial weights and the scoring batch are fixed by the seed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nashc.dsl.ast import Program
from nashc.passes.costmodel import LayerWork, OpKind, coarse_fps

__all__ = [
    "Candidate",
    "Choice",
    "CoarseHardware",
    "DeclaredNetwork",
    "NetworkSource",
    "evaluate_candidate",
    "network_source",
]

#: (layer, dim) -> option, e.g. {("fc1", "op"): "shift", ("fc0", "wbits"): 4}
Choice = dict[tuple[str, str], Any]

#: Reports progress text (the CLI's status line), or None.
Progress = Callable[[str], Any] | None


@dataclass
class Candidate:
    """One architecture through the two stages."""

    choice: Choice
    score: float = float("nan")
    coarse_fps: float = 0.0
    coarse_feasible: bool = True
    fps: float | None = None
    latency_ms: float | None = None
    resources: dict[str, float] | None = None  # FINN's keys (nashc.targets.boards.RESOURCE_KEYS)
    feasible: bool | None = None
    accuracy: float | None = None
    ops: dict[str, int] = field(default_factory=dict)
    qonnx_path: Path | None = None
    dataflow: Any = None  # folded FINN dataflow model
    lowered: Any = None
    error: str | None = None
    module: Any = None  # the trained PyTorch module (step_train), else None

    @property
    def arch(self) -> dict[str, Any]:
        return {f"{layer}.{dim}": value for (layer, dim), value in sorted(self.choice.items())}


@dataclass(frozen=True)
class CoarseHardware:
    """What the coarse cost model needs of the target: LUT and DSP budgets (counts, inf
    when unbounded), the clock in MHz and the file's fps requirement (None: none)."""

    lut: float
    dsp: float
    clock_mhz: float
    fps_min: float | None = None


class NetworkSource(ABC):
    """A network and its search space, as the pipeline sees it (see the module docstring).

    Instances are picklable and hold the scoring batch once `prepare` ran, so they can be
    sent to worker processes."""

    program: Program

    @property
    @abstractmethod
    def metric(self) -> str:
        """The score's name in reports (``zero_shot``, ``fidelity``, ...)."""

    def choices(self) -> dict[tuple[str, str], tuple[Any, ...]]:
        """Choice point -> its options, as the search strategies take them."""
        return {k: tuple(v) for k, v in self.program.choices.items()}

    def op_counts(self, choice: Choice) -> dict[str, int]:
        """How many compute layers of the candidate are conv (multiplication), shift, adder."""
        counts = {"conv": 0, "shift": 0, "adder": 0}
        for layer in self.program.network.layers:
            if layer.kind in ("conv", "fc"):
                counts[str(choice.get((layer.name, "op"), "conv"))] += 1
        return counts

    @property
    def input_pixels(self) -> int:
        """H x W of the network input (1 when unknown): FINN's window generator takes one
        pixel per cycle, a floor on the first layer's cycles."""
        shape = self.program.network.input_shape
        return int(shape[1] * shape[2]) if shape is not None else 1

    @abstractmethod
    def prepare(self, n: int, seed: int) -> None:
        """Makes the scoring batch of `n` inputs for `seed` (in the range of the input's
        datatype, as the data loaders give it)."""

    @abstractmethod
    def build(self, choice: Choice, seed: int) -> Any:
        """The candidate: what `score` and `layer_work` take."""

    @abstractmethod
    def score(self, built: Any) -> float:
        """Higher is better; needs `prepare` first."""

    @abstractmethod
    def layer_work(self, built: Any, choice: Choice) -> list[LayerWork]:
        """MACs per frame and lane limits of every compute layer (`coarse_fps`'s input)."""

    def scored(self, choice: Choice, seed: int) -> tuple[float, list[LayerWork]]:
        """The coarse stage's two measurements of a candidate: its score and its layer
        work (`build`, `score`, `layer_work`; a source may share work between them)."""
        built = self.build(choice, seed)
        return float(self.score(built)), self.layer_work(built, choice)

    @abstractmethod
    def export(self, choice: Choice, seed: int, path: Path, trained: Any = None) -> Any:
        """The candidate as a QONNX `ModelWrapper`, saved at `path` (`trained`: a trained
        module to export instead of the freshly built one)."""

    @abstractmethod
    def torch_module(self, choice: Choice, seed: int) -> Any:
        """The PyTorch module `export` wrote (golden level 1), or None without one."""

    @abstractmethod
    def accuracy(self, choice: Choice, seed: int, data: Any, label: str = "",
                 progress: Progress = None) -> tuple[float, Any]:
        """(validation accuracy in [0, 1] on `data` (`nashc.training.TrainData`), the
        trained module or None when nothing was trained)."""

    @abstractmethod
    def accuracy_notes(self, data: Any, count: int, seed: int) -> list[str]:
        """What the report says about how `count` accuracies were obtained."""


def network_source(program: Program) -> NetworkSource:
    """The source of the program's network: loaded from its file (the model is read and
    the space checked against it here) or declared in the language."""
    if program.network.source is not None:
        from nashc.imported import load_source

        return load_source(program)  # LoadedNetwork.load, errors at the `from` path
    return DeclaredNetwork(program)


def evaluate_candidate(source: NetworkSource, choice: Choice, seed: int,
                       hardware: CoarseHardware) -> Candidate:
    """The coarse stage for one candidate: its score and the cost model's optimistic fps
    bound inside the LUT/DSP budget (`nashc.passes.costmodel.coarse_fps`); infeasible
    when the bound misses ``hardware.fps_min``. A non-finite score becomes -1e9.
    `source` must be prepared (`NetworkSource.prepare`)."""
    cand = Candidate(dict(choice), ops=source.op_counts(choice))
    cand.score, works = source.scored(choice, seed)
    fps, _ = coarse_fps(works, hardware.lut, hardware.dsp, hardware.clock_mhz,
                        input_pixels=source.input_pixels)
    cand.coarse_fps = fps
    if hardware.fps_min is not None and fps < hardware.fps_min:
        cand.coarse_feasible = False
    if not math.isfinite(cand.score):
        cand.score = -1e9
    return cand


# --- networks declared in the language ----------------------------------------------------------


@dataclass
class DeclaredNetwork(NetworkSource):
    """A network declared in the language: a candidate is its Brevitas module
    (`nashc.training.build_candidate`: ``torch.manual_seed(seed)`` then `build_module`),
    scored zero-shot on the batch (`nashc.passes.zeroshot.SCORES`), trained with the
    file's `train` section.

    The coarse stage (`scored`) builds candidates from a `ModulePool` kept in the process
    (each layer shape built once, bit-identical to a fresh build) and reads the layer
    work off the score's own forward pass; everything else builds fresh modules."""

    program: Program
    batch: Any = None  # torch.Tensor (n, C, H, W), set by `prepare`
    _pool: Any = field(default=None, repr=False, compare=False)  # ModulePool, per process

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None  # modules stay in the process that built them
        return state

    @property
    def metric(self) -> str:
        search = self.program.file.search
        return search.metric if search is not None else "zero_shot"

    def prepare(self, n: int, seed: int) -> None:
        self.batch = declared_scoring_batch(self.program, n, seed)

    def build(self, choice: Choice, seed: int) -> Any:
        from nashc.training import build_candidate

        return build_candidate(self.program, choice, seed)

    def score(self, built: Any) -> float:
        from nashc.passes.zeroshot import SCORES

        # `built` is made for this evaluation (`evaluate_candidate`): scored in place, no copy
        return float(SCORES.get(self.metric, SCORES["zero_shot"])(built, self.batch,
                                                                  copy=False))

    def layer_work(self, built: Any, choice: Choice) -> list[LayerWork]:
        return module_layer_work(built, self.batch, weight_bits(self.program, choice))

    def scored(self, choice: Choice, seed: int) -> tuple[float, list[LayerWork]]:
        from nashc.runtime.build import ModulePool
        from nashc.training import build_candidate

        if self._pool is None:
            self._pool = ModulePool()
        built = build_candidate(self.program, choice, seed, pool=self._pool)
        score: list[float] = []
        works = module_layer_work(built, self.batch, weight_bits(self.program, choice),
                                  run=lambda: score.append(self.score(built)))
        return float(score[0]), works

    def calibrated(self, choice: Choice, seed: int) -> Any:
        """The candidate's module with BatchNorm statistics calibrated on the scoring batch
        (`nashc.runtime.build.calibrate_batchnorm`), in eval mode."""
        from nashc.runtime.build import calibrate_batchnorm

        return calibrate_batchnorm(self.build(choice, seed), self.batch)

    def export(self, choice: Choice, seed: int, path: Path, trained: Any = None) -> Any:
        from nashc.runtime.build import export_qonnx_model

        module = trained if trained is not None else self.calibrated(choice, seed)
        return export_qonnx_model(module, self.program.network, path)

    def torch_module(self, choice: Choice, seed: int) -> Any:
        # the same seed and batch rebuild the module whose weights were exported
        return self.calibrated(choice, seed)

    def accuracy(self, choice: Choice, seed: int, data: Any, label: str = "",
                 progress: Progress = None) -> tuple[float, Any]:
        from nashc.training import train_candidate

        section = self.program.file.train
        assert section is not None

        def on_epoch(epoch: int, loss: float, acc: float | None) -> None:
            if progress:
                progress(f"training {label}: epoch {epoch + 1}/{section.epochs} loss {loss:.3f}"
                         + ("" if acc is None else f" val acc {100 * acc:.1f}%"))

        module, result = train_candidate(self.program, choice, seed, data=data,
                                         on_epoch=on_epoch)
        return float(result.val_accuracy[-1]), module

    def accuracy_notes(self, data: Any, count: int, seed: int) -> list[str]:
        section = self.program.file.train
        assert section is not None
        info = data.info
        return [
            f"accuracy: validation accuracy measured after training {count} finalists for "
            f"{section.epochs} epoch{'s' if section.epochs != 1 else ''} on {info.dataset}"
            f"{f' {info.path}' if info.path else ''} ({info.train_samples} training / "
            f"{info.val_samples} validation images, batch {section.batch}, lr {section.lr:g}, "
            f"seed {seed})"]


def declared_scoring_batch(program: Program, n: int, seed: int) -> Any:
    """`n` inputs for zero-shot scoring, as float32 (n, C, H, W) in the range of the
    input's datatype (`nashc.runtime.data.to_input_range`, as training feeds it: 0..15
    for uint4): seeded real digits when the train section says ``digits`` and the input is
    1x8x8, else seeded random integers of the input datatype."""
    import torch

    net = program.network
    assert net.input_shape is not None and net.input_dtype is not None
    shape = tuple(net.input_shape)
    train = program.file.train
    dt = net.input_dtype
    if train is not None and train.dataset == "digits" and shape == (1, 8, 8) \
            and not dt.bipolar:
        from sklearn.datasets import load_digits

        from nashc.runtime.data import to_input_range

        digits = load_digits()
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(digits.images), size=n, replace=False)
        pixels = np.round(digits.images[idx].astype(np.float32) * (255.0 / 16.0))
        x = torch.from_numpy(pixels.astype(np.uint8)).reshape(n, *shape)
        return to_input_range(x, dt)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (-(2 ** (dt.bits - 1)), 2 ** (dt.bits - 1) - 1) if dt.signed else (0, 2 ** dt.bits - 1)
    return torch.randint(lo, hi + 1, (n, *shape), generator=gen).float()


def weight_bits(program: Program, choice: Choice) -> dict[str, tuple[int, int]]:
    """Layer -> (weight bits, activation bits) of a declared network's candidate."""
    out = {}
    for layer in program.network.layers:
        if layer.kind not in ("conv", "fc"):
            continue
        wb = int(choice.get((layer.name, "wbits"), layer.weights.bits if layer.weights else 8))
        ab = int(choice.get((layer.name, "abits"),
                            layer.activations.bits if layer.activations else 8))
        out[layer.name] = (wb, ab)
    return out


def module_layer_work(module: Any, batch: Any, bits: dict[str, tuple[int, int]],
                      run: Callable[[], Any] | None = None) -> list[LayerWork]:
    """MACs per frame and lane limits of every compute layer of a built module, read off
    one forward pass of the first input of `batch` in eval mode, or off the first call of
    each layer in ``run()`` (e.g. the zero-shot score's own forward pass: shapes and
    quantizer bit widths do not depend on the batch or the mode); a layer's activation
    bits are its input quantizer's when it has one, else ``bits[layer][1]``."""
    import torch

    from nashc.runtime.modules import forward_hooks

    works: dict[str, LayerWork] = {}
    layers = module.compute_layers()

    def make_hook(layer: str) -> Callable[..., None]:
        def hook(mod: Any, inp: Any, out: Any) -> None:
            if layer in works:
                return
            name = type(mod).__name__
            kind: OpKind = "shift" if name.startswith("Shift") else "adder" if name.startswith(
                "Adder") else "conv"
            t = out.value if hasattr(out, "value") else out
            weight = mod.weight
            per_out = int(np.prod(weight.shape[1:]))
            out_ch = int(weight.shape[0])
            pixels = int(np.prod(t.shape[2:])) if t.dim() == 4 else 1
            wbits, abits = bits.get(layer, (8, 8))
            bw = getattr(inp[0], "bit_width", None)
            if bw is not None:
                abits = int(float(bw))
            works[layer] = LayerWork(layer, kind, per_out * out_ch * pixels,
                                     per_out * out_ch, wbits, abits)
        return hook

    with forward_hooks((mod, make_hook(layer)) for layer, mod in layers.items()):
        if run is not None:
            run()
        if len(works) < len(layers):  # no run, or one that did not call every layer
            module.eval()
            with torch.no_grad():
                module(batch[:1])
    return list(works.values())
