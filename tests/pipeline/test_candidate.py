"""The candidate interface (`nashc.candidate`): both network sources offer the same
operations, the scoring batch is in the input datatype's range (as training feeds it),
`evaluate_candidate` is a picklable function of (source, choice, seed), and the pipeline's
choice of a design reads a measured accuracy of 0.0 as an accuracy."""

from __future__ import annotations

import pickle
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from helpers.nash import tiny_fc

from nashc.candidate import (
    Candidate,
    CoarseHardware,
    DeclaredNetwork,
    evaluate_candidate,
    network_source,
)
from nashc.dsl import load
from nashc.imported import LoadedNetwork
from nashc.runtime.golden import load_model
from nashc.training import prepare_data

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HW = CoarseHardware(lut=50_000.0, dsp=100.0, clock_mhz=200.0)


def _declared(tmp_path: Path, dtype: str = "uint8", train: bool = True):
    src = tmp_path / "tiny.nash"
    src.write_text(tiny_fc(train=train).replace("1x8x8 uint8", f"1x8x8 {dtype}"))
    return load(src)


def _loaded(tmp_path: Path):
    shutil.copy(EXAMPLES / "tfc_import.nash", tmp_path)
    shutil.copytree(EXAMPLES / "models", tmp_path / "models")
    return load(tmp_path / "tfc_import.nash")


@pytest.mark.parametrize("dtype, top", [("uint8", 255), ("uint4", 15), ("uint2", 3)])
def test_scoring_batch_is_in_the_input_range_training_uses(tmp_path, dtype, top):
    """`input 1x8x8 uint4` + digits: the scoring/calibration batch takes 0..15 like the
    training data (it was 0..255, saturating the input quantizer)."""
    program = _declared(tmp_path, dtype)
    source = DeclaredNetwork(program)
    source.prepare(32, seed=0)
    batch = source.batch.numpy()
    assert batch.shape == (32, 1, 8, 8)
    assert batch.min() == 0 and batch.max() == top
    assert np.array_equal(batch, np.round(batch))
    x, _ = next(iter(prepare_data(program, seed=0).train))
    assert x.max().item() == top  # the range training feeds the network
    assert set(np.unique(batch)) <= set(np.unique(x.numpy())) | set(range(top + 1))


def test_scoring_batch_random_without_data(tmp_path):
    source = DeclaredNetwork(_declared(tmp_path, "uint4", train=False))
    source.prepare(64, seed=1)
    batch = source.batch.numpy()
    assert batch.min() >= 0 and batch.max() <= 15 and len(np.unique(batch)) > 8


@pytest.mark.parametrize("kind", ["declared", "loaded"])
def test_sources_offer_the_same_operations(tmp_path, kind):
    program = _declared(tmp_path) if kind == "declared" else _loaded(tmp_path)
    source = network_source(program)
    assert isinstance(source, LoadedNetwork if kind == "loaded" else DeclaredNetwork)
    assert source.metric == ("fidelity" if kind == "loaded" else "zero_shot")
    choices = source.choices()
    choice = {k: v[0] for k, v in choices.items()}
    source.prepare(8, seed=0)
    built = source.build(choice, 0)
    score = source.score(built)
    assert np.isfinite(score)
    works = source.layer_work(built, choice)
    assert [w.name for w in works] == (["fc0", "head"] if kind == "declared"
                                       else ["fc0", "fc1", "head"])
    path = tmp_path / "cand.onnx"
    model = source.export(choice, 0, path)
    assert path.is_file() and len(load_model(str(path)).graph.node) == len(model.graph.node)
    reference = source.torch_module(choice, 0)
    assert (reference is None) == (kind == "loaded")


@pytest.mark.parametrize("kind", ["declared", "loaded"])
def test_evaluate_candidate_is_a_picklable_function(tmp_path, kind):
    """What an executor maps over choices: the same figures after a pickle round trip
    (as in a worker process), whatever the order of evaluation."""
    program = _declared(tmp_path) if kind == "declared" else _loaded(tmp_path)
    source = network_source(program)
    source.prepare(8, seed=0)
    fn = partial(evaluate_candidate, source, seed=0, hardware=HW)
    again = pickle.loads(pickle.dumps(fn))
    choices = source.choices()
    picks = [{k: v[i % len(v)] for k, v in choices.items()} for i in range(2)]
    here = [fn(c) for c in picks]
    there = [again(c) for c in reversed(picks)][::-1]
    assert [(c.score, c.coarse_fps, c.ops) for c in here] == \
        [(c.score, c.coarse_fps, c.ops) for c in there]
    assert all(isinstance(c, Candidate) and c.coarse_fps > 0 for c in here)
    strict = evaluate_candidate(source, picks[0], 0,
                                CoarseHardware(HW.lut, HW.dsp, HW.clock_mhz, fps_min=1e12))
    assert not strict.coarse_feasible and strict.coarse_fps == here[0].coarse_fps


def test_pareto_keeps_a_measured_accuracy_of_zero(tmp_path):
    """A finalist whose accuracy is 0.0 ranks by that accuracy, not by its score."""
    from nashc.pipeline import CompileOptions, CompileState, step_pareto

    src = tmp_path / "tiny.nash"
    src.write_text(tiny_fc())
    state = CompileState(path=src, opts=CompileOptions(), workdir=tmp_path, program=load(src))
    zero = Candidate({}, score=5.0, fps=200.0, feasible=True, accuracy=0.0)
    some = Candidate({}, score=-1.0, fps=100.0, feasible=True, accuracy=0.5)
    state.finalists = [zero, some]
    step_pareto(state)
    assert state.pareto == [zero, some] or state.pareto == [some, zero]
    assert state.pareto[state.chosen] is some
