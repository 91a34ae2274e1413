"""Search over a network loaded with ``network NAME from "model.onnx"``.

Such a network has no PyTorch module: it is a QONNX graph with trained weights. A
candidate is the loaded graph rewritten by the graph passes (`nashc.passes.choices`:
channel widths, weight and activation bits, shift/adder swaps), so the search is a
compression search of the trained model. Removed channels are compensated on the scoring
batch (`nashc.passes.width`, affine: each reader's per-channel output mean and standard
deviation restored), since nothing is retrained:

* **score** (``metric fidelity``): how closely the candidate reproduces the loaded
  model on the scoring batch: the share of inputs whose top-1 class it keeps, ties
  broken by the mean cosine similarity of the output vectors (`fidelity_score`). The
  candidates are not fine-tuned, so this is a measurement of the rewritten graph itself,
  run in onnxruntime. Agreement ranks accuracy better than the cosine alone
  (bench/RESULTS.md section 6: Kendall tau 0.83-0.86 vs 0.73-0.76 on 60 candidates).
* **accuracy**: with a ``train`` section whose data set fits the input, the finalists'
  top-1 accuracy on its validation split, measured without fine-tuning (the loaded
  model's own accuracy is given for reference). Fine-tuning needs the PyTorch module:
  declare the network in the language, or fine-tune the chosen graph in Brevitas.
* **hardware**: the same coarse cost model as declared networks (`coarse_fps`), from
  the graph's layers, then FINN lowering and the folding search.

`LoadedNetwork` is this network source behind the pipeline's candidate interface
(`nashc.candidate.NetworkSource`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from nashc.candidate import Choice, NetworkSource
from nashc.dsl.ast import Program
from nashc.dsl.errors import NashcError
from nashc.passes.costmodel import LayerWork
from nashc.runtime.golden import SampleRunner

__all__ = ["LoadedNetwork", "accuracy", "choice_rules", "graph_layer_work", "fidelity",
           "fidelity_score", "scoring_batch"]


def choice_rules(choice: dict[tuple[str, str], Any]) -> list[tuple[str, str, Any]]:
    """``{(layer, dim): value}`` -> `ApplyChoices` rules, one per (dim, value) with the
    layers joined into one selector (fewer passes than one rule per layer)."""
    grouped: dict[tuple[str, Any], list[str]] = {}
    for (layer, dim), value in choice.items():
        grouped.setdefault((dim, value), []).append(layer)
    return [(dim, ",".join(layers), value) for (dim, value), layers in grouped.items()]


def _input_bits(model: ModelWrapper, tensor: str) -> int:
    from nashc.passes.graph import PASS_THROUGH, quant_bits

    for _ in range(16):
        prod = model.find_producer(tensor)
        if prod is None:
            dt = model.get_tensor_datatype(tensor)
            return int(dt.bitwidth()) if dt.is_integer() else 8
        if prod.op_type in PASS_THROUGH or prod.op_type in ("AveragePool", "Trunc"):
            if prod.op_type == "Trunc":  # the output bit width is its last input
                bw = model.get_initializer(prod.input[-1]) if len(prod.input) > 4 else None
                if bw is not None:
                    return int(np.asarray(bw))
            tensor = prod.input[0]
            continue
        if prod.op_type in ("Quant", "BipolarQuant"):
            return quant_bits(model, prod) or 8
        if prod.op_type == "MultiThreshold":
            dt = model.get_tensor_datatype(prod.output[0])
            return int(dt.bitwidth())
        return 8
    return 8


def graph_layer_work(model: ModelWrapper) -> list[LayerWork]:
    """MACs per frame and lane limits of every compute layer of a QONNX graph. Output
    shapes the graph does not record (no ``value_info``, e.g. a model saved without shape
    inference) are inferred first on a copy (qonnx's `InferShapes`): a conv counted as one
    pixel made the coarse fps bound ~20x too optimistic."""
    from qonnx.transformation.infer_shapes import InferShapes

    from nashc.passes.choices import layer_summary
    from nashc.passes.graph import weight_values
    from nashc.runtime.load import COMPUTE_OP_TYPES

    if any(model.get_tensor_shape(n.output[0]) is None for n in model.graph.node
           if n.op_type in COMPUTE_OP_TYPES):
        model = ModelWrapper(model.model.__deepcopy__()).transform(InferShapes())
    summary = layer_summary(model)
    works = []
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OP_TYPES:
            continue
        w, _ = weight_values(model, node.input[1])
        shape = model.get_tensor_shape(node.output[0]) or []
        pixels = int(np.prod(shape[2:])) if len(shape) == 4 else 1
        kind = "shift" if node.op_type.startswith("Shift") else \
            "adder" if node.op_type.startswith("Adder") else "conv"
        wbits = summary[node.name][2] or 8
        works.append(LayerWork(node.name, kind, int(w.size) * pixels, int(w.size),  # type: ignore[arg-type]
                               int(wbits), _input_bits(model, node.input[0])))
    return works


def fidelity(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(mean cosine similarity, top-1 agreement) of output rows against reference rows."""
    a = out.reshape(len(out), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.where((na > 0) & (nb > 0), (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300),
                   np.where((na == 0) & (nb == 0), 1.0, 0.0))
    return float(cos.mean()), float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


def fidelity_score(cos: float, agreement: float, n: int) -> float:
    """Top-1 agreement over ``n`` inputs, ties broken by the cosine: the cosine term,
    (cos - 1) / 4n, moves a score by less than half of one agreement step (1/n)."""
    return agreement + (cos - 1.0) / (4.0 * max(n, 1))


@dataclass
class LoadedNetwork(NetworkSource):
    """A network loaded with ``from``: the loaded model and the scoring batch, small
    enough to send to workers. A candidate is the graph rewritten by `ApplyChoices`
    (``seed`` plays no part: nothing is initialised), scored by its fidelity to the loaded
    model, measured (not trained) for accuracy."""

    program: Program
    model_bytes: bytes
    batch: np.ndarray | None = None
    reference: np.ndarray | None = None
    activations: dict[str, np.ndarray] | None = None  # layer inputs on the batch
    _base: ModelWrapper | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_base"] = None
        return state

    @classmethod
    def load(cls, program: Program) -> LoadedNetwork:
        """Loads the program's model and checks that its layers are the ones the language
        named (choices refer to them)."""
        from nashc.runtime.load import COMPUTE_OP_TYPES, load_onnx_network

        net = program.network
        assert net.source is not None
        model = load_onnx_network(net.source)
        names = {n.name for n in model.graph.node if n.op_type in COMPUTE_OP_TYPES}
        missing = sorted({layer for layer, _ in program.choices} - names)
        if missing:
            raise NashcError(f"{net.source}: layers {', '.join(missing)} of the search space "
                             "are not node names of the cleaned-up graph (unnamed nodes are "
                             f"renamed on loading; its layers: {', '.join(sorted(names))})")
        search = cls(program, model.model.SerializeToString())
        search.check_choices(program)
        return search

    def check_choices(self, program: Program) -> None:
        """Applies every option of every choice alone to the loaded graph, so a choice the
        graph cannot take (e.g. activation bits of a layer no quantizer follows) is an
        error before the search, naming the layer and the option."""
        from nashc.passes.graph import PassError

        for (layer, dim), options in program.choices.items():
            for value in options:
                if (dim, value) in (("op", "conv"), ("width", 1.0)):
                    continue  # the loaded graph as it is
                try:
                    self.candidate({(layer, dim): value})
                except PassError as err:
                    raise NashcError(f"{program.file.path}: the space sets {dim} {value} on "
                                     f"layer {layer}, which the loaded graph cannot take: "
                                     f"{err}") from None

    def base(self) -> ModelWrapper:
        if self._base is None:
            self._base = ModelWrapper(onnx.ModelProto.FromString(self.model_bytes))
        return self._base

    @property
    def metric(self) -> str:
        return "fidelity"

    def candidate(self, choice: Choice) -> ModelWrapper:
        """The loaded graph with ``choice`` applied (a new model)."""
        from nashc.passes.choices import ApplyChoices

        model = ModelWrapper(onnx.ModelProto.FromString(self.model_bytes))
        return model.transform(ApplyChoices(choice_rules(choice), activations=self.activations),
                               make_deepcopy=False)

    def set_batch(self, batch: np.ndarray) -> None:
        """The scoring batch: the loaded model's outputs on it are the reference, its
        layer inputs calibrate the compensation of removed channels."""
        from nashc.passes.width import layer_inputs

        self.batch = np.asarray(batch, dtype=np.float32)
        self.reference = SampleRunner(self.base()).output(self.batch)
        self.activations = layer_inputs(self.base(), self.batch)

    def score(self, model: ModelWrapper) -> float:
        """`fidelity_score` of a candidate against the loaded model."""
        assert self.batch is not None and self.reference is not None
        cos, agreement = fidelity(SampleRunner(model).output(self.batch), self.reference)
        return fidelity_score(cos, agreement, len(self.batch))

    # --- the candidate interface (nashc.candidate.NetworkSource) ----------------------------

    def prepare(self, n: int, seed: int) -> None:
        self.set_batch(scoring_batch(self.program, self.base(), n, seed))

    def build(self, choice: Choice, seed: int) -> ModelWrapper:
        return self.candidate(choice)

    def layer_work(self, built: ModelWrapper, choice: Choice) -> list[LayerWork]:
        return graph_layer_work(built)

    def export(self, choice: Choice, seed: int, path: Path, trained: Any = None) -> ModelWrapper:
        model = self.candidate(choice)
        model.save(str(path))
        return model

    def torch_module(self, choice: Choice, seed: int) -> Any:
        return None  # a loaded graph has no PyTorch module: no golden level 1

    def accuracy(self, choice: Choice, seed: int, data: Any, label: str = "",
                 progress: Callable[[str], Any] | None = None) -> tuple[float, Any]:
        if progress:
            progress(f"measuring accuracy {label}")
        return accuracy(self.candidate(choice), data.val), None

    def accuracy_notes(self, data: Any, count: int, seed: int) -> list[str]:
        base = accuracy(self.base(), data.val)
        info = data.info
        notes = [
            f"accuracy: the loaded model's graph rewritten and measured without fine-tuning on "
            f"the validation split of {info.dataset}{f' {info.path}' if info.path else ''} "
            f"({info.val_samples} images); the loaded model itself: {100 * base:.2f}%. "
            "Fine-tune the chosen design in Brevitas, or declare the network in the language "
            "to search and train it"]
        if base < 2.0 / max(info.classes, 2):
            notes.append(
                f"the loaded model itself scores {100 * base:.1f}% on {info.dataset} (chance: "
                f"{100 / max(info.classes, 1):.0f}%): check that it was trained on this data "
                "and that its input takes pixels in the range given (0..255 for uint8 or an "
                "unannotated input; a normalisation must be part of the graph)")
        return notes


def accuracy(model: ModelWrapper, loader: Any) -> float:
    """Top-1 accuracy of a graph over a (validation) loader of (x, y) tensors."""
    run = SampleRunner(model)
    right = total = 0
    for x, y in loader:
        pred = run.output(x.numpy()).reshape(len(y), -1).argmax(axis=1)
        right += int((pred == y.numpy()).sum())
        total += len(y)
    return right / max(total, 1)


def scoring_batch(program: Program, model: ModelWrapper, n: int, seed: int) -> np.ndarray:
    """``n`` training images when the train section's data set fits the input (the
    validation split measures accuracy), else seeded random inputs of the model's input
    datatype."""
    from nashc.runtime.data import DatasetMismatch
    from nashc.runtime.golden import random_inputs

    if program.file.train is not None:
        from nashc.training import prepare_data

        try:
            data = prepare_data(program, seed, limit=max(n, 1))
        except DatasetMismatch:
            data = None
        if data is not None:
            xs = [x.numpy() for x, _ in data.train]  # accuracy is measured on data.val
            batch = np.concatenate(xs, axis=0)[:n]
            if len(batch) == n:
                return batch.astype(np.float32)
    name = model.graph.input[0].name
    return np.concatenate([random_inputs(model, seed=seed * 1000 + i)[name]
                           for i in range(n)], axis=0)


def load_source(program: Program) -> LoadedNetwork:
    """`LoadedNetwork.load` of a network loaded with `from`, for `nashc check` and `compile`
    alike, with the cleaned-up graph also run once in onnxruntime on a seeded random input
    (`runtime.golden.random_inputs`), as the search runs it: a model `check` accepts is
    one `compile` can use. Any failure (an unreadable, truncated or inconsistent model, a
    graph onnxruntime refuses) is a `NashSourceError` at the path in the `.nash` file."""
    from nashc.dsl.errors import NashSourceError
    from nashc.runtime.golden import random_inputs

    net = program.file.network
    pos = net.source_pos or net.pos
    shown = net.source_text or str(net.source)
    try:
        search = LoadedNetwork.load(program)
        base = search.base()
        name = base.graph.input[0].name
        SampleRunner(base).output(random_inputs(base, seed=0)[name])
    except NashSourceError:
        raise
    except NashcError as err:
        raise NashSourceError(str(err), pos) from None
    except Exception as err:  # onnx, qonnx and onnxruntime raise many types on bad models
        text = str(err).strip().splitlines()
        raise NashSourceError(f"'{shown}' cannot be used: {type(err).__name__}"
                              f"{': ' + text[0] if text else ''}", pos) from None
    return search
