"""Training of candidates: `train_candidate` on digits, `nashc train` end to end (the
written QONNX model carries the trained weights: onnxruntime reproduces the reported
accuracy), clear errors, and `nashc compile` with a `train` section reporting measured
accuracies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers.nash import tiny_fc

from nashc.cli import cli
from nashc.dsl import load
from nashc.runtime.golden import compare_levels, load_model, to_standard_onnx
from nashc.training import build_candidate, prepare_data, train_candidate

NET = """
network three {
  input 1x8x8 uint8
  weights int4
  activations uint4
  fc fc0 out 32
  fc fc1 out 32
  fc head out 10 weights int8
}
space {
  op    fc1 in {conv, shift, adder}
  wbits fc0 in {2, 4}
  fix head
}
"""
TRAIN = "train { dataset digits; epochs %d; batch 64; lr 0.01 }\n"


def _write(tmp_path: Path, text: str, name: str = "three.nash") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return load(_write(tmp_path_factory.mktemp("prog"), NET + TRAIN % 2))


def _onnxruntime_accuracy(model_path: Path, loader) -> float:
    """Top-1 accuracy of a written QONNX model run by onnxruntime (standard-ONNX lowering)."""
    import onnxruntime as ort

    std = to_standard_onnx(load_model(model_path))
    sess = ort.InferenceSession(std.model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    right = total = 0
    for x, y in loader:
        for xi, yi in zip(x.numpy(), y.numpy()):
            out = sess.run(None, {name: xi[None].astype(np.float32)})[0]
            right += int(np.argmax(out) == yi)
            total += 1
    return right / total


def test_build_candidate_matches_the_pipeline(program) -> None:
    from nashc.candidate import DeclaredNetwork

    choice = {("fc1", "op"): "shift", ("fc0", "wbits"): 2}
    ours = build_candidate(program, choice, seed=3).state_dict()
    theirs = DeclaredNetwork(program).build(choice, 3).state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("op, floor", [("conv", 0.8), ("shift", 0.8), ("adder", 0.3)])
def test_train_candidate_learns_digits(program, op: str, floor: float) -> None:
    # measured (seed 0, 2 epochs): conv 0.972, shift 0.964, adder 0.451; chance is 0.1
    data = prepare_data(program, seed=0)
    choice = {("fc1", "op"): op, ("fc0", "wbits"): 4}
    module, result = train_candidate(program, choice, 0, data=data)
    assert len(result.losses) == 2 and len(result.val_accuracy) == 2
    assert result.losses[1] < result.losses[0]
    assert result.val_accuracy[-1] > floor, result.val_accuracy
    assert result.data["dataset"] == "digits" and result.data["val_samples"] == 359
    assert not module.training
    # same seed, same data: the same figures (loaders are reseeded per candidate)
    _, again = train_candidate(program, choice, 0, data=data)
    assert again.losses == result.losses and again.val_accuracy == result.val_accuracy


def test_nashc_train_end_to_end(tmp_path: Path, program) -> None:
    src = _write(tmp_path, NET + TRAIN % 2)
    out = tmp_path / "trained"
    result = CliRunner().invoke(cli, ["train", str(src), "-o", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    # besides nashc's marker (.nashc-output, so a later run may replace it): these two
    assert sorted(p.name for p in out.iterdir()) == [".nashc-output", "model_qonnx.onnx",
                                                     "train.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trained")]
    summary = json.loads((out / "train.json").read_text())
    assert summary["seed"] == 1 and summary["epochs"] == 2 and summary["arch"] == {}
    assert summary["dataset"]["dataset"] == "digits"
    assert len(summary["losses"]) == 2 and summary["accuracy"] == summary["val_accuracy"][-1]
    assert summary["accuracy"] > 0.8
    assert summary["golden"]["ok"] is True
    assert "val accuracy" in result.output and "final validation accuracy" in result.output
    # the written model carries the trained weights: onnxruntime measures the same accuracy
    val = prepare_data(program, seed=1).val
    acc = _onnxruntime_accuracy(out / "model_qonnx.onnx", val)
    assert abs(acc - summary["accuracy"]) <= 1.5 / 359, (acc, summary["accuracy"])
    # and it matches the module training rebuilds (training is deterministic)
    module, again = train_candidate(program, {}, 1)
    assert again.val_accuracy == summary["val_accuracy"]
    golden = compare_levels(load_model(out / "model_qonnx.onnx"), module, seed=0)
    assert golden.ok, golden.to_json()
    assert [lv.name for lv in golden.levels][:2] == ["torch-vs-qonnx", "qonnx-vs-onnxruntime"]


def _report(tmp_path: Path, points: list[dict], chosen: int | None = 0) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"pareto": [{"arch": a} for a in points], "chosen": chosen}))
    return path


def test_nashc_train_arch_from_report(tmp_path: Path) -> None:
    src = _write(tmp_path, NET + TRAIN % 1)
    report = _report(tmp_path, [{"fc0.wbits": 4, "fc1.op": "conv"},
                                {"fc0.wbits": 2, "fc1.op": "shift"}])
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["train", str(src), "--arch", str(report), "--index", "1",
                                      "-o", str(out), "--epochs", "1", "--limit", "300"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "train.json").read_text())
    assert summary["arch"] == {"fc0.wbits": 2, "fc1.op": "shift"}
    assert summary["arch_from"]["index"] == 1
    assert summary["dataset"]["train_samples"] == 300 and summary["dataset"]["val_samples"] == 300
    model = load_model(out / "model_qonnx.onnx")
    assert "ShiftMatMul" in {n.op_type for n in model.graph.node}


@pytest.mark.parametrize("case, message", [
    ("index", "--index 5 is out of range"),
    ("key", "arch key 'fc9.op' is not a choice point"),
    ("value", "fc1.op = 'mult' is not one of the options"),
    ("missing", "arch lacks the choice points fc1.op"),
    ("nofile", "no such file (expected a report.json from nashc compile)"),
    ("notjson", "not a JSON report of nashc compile"),
    ("index_only", "--index needs --arch"),
    ("no_train", "no train section"),
    ("digits_3x32", "digits gives 1x8x8 images; the network takes 3x32x32"),
    ("no_cifar", "cifar10 data set"),
])
def test_nashc_train_errors_are_clear(tmp_path: Path, case: str, message: str) -> None:
    text = NET + TRAIN % 1
    args: list[str] = []
    if case == "index":
        args = ["--arch", str(_report(tmp_path, [{"fc0.wbits": 4, "fc1.op": "conv"}])),
                "--index", "5"]
    elif case == "key":
        args = ["--arch", str(_report(tmp_path, [{"fc9.op": "conv"}]))]
    elif case == "value":
        args = ["--arch", str(_report(tmp_path, [{"fc0.wbits": 4, "fc1.op": "mult"}]))]
    elif case == "missing":
        args = ["--arch", str(_report(tmp_path, [{"fc0.wbits": 4}]))]
    elif case == "nofile":
        args = ["--arch", str(tmp_path / "absent.json")]
    elif case == "notjson":
        (tmp_path / "r.json").write_text("{not json")
        args = ["--arch", str(tmp_path / "r.json")]
    elif case == "index_only":
        args = ["--index", "0"]
    elif case == "no_train":
        text = NET
    elif case == "digits_3x32":
        text = text.replace("1x8x8", "3x32x32")
    elif case == "no_cifar":
        text = NET + 'train {\n  dataset cifar10 "nowhere"\n  epochs 1\n}\n'
    src = _write(tmp_path, text)
    out = tmp_path / "never"
    result = CliRunner().invoke(cli, ["train", str(src), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    if case == "no_cifar":  # points at the dataset line of the file
        assert "three.nash:" in result.output and 'dataset cifar10 "nowhere"' in result.output
        assert str(tmp_path / "nowhere") in result.output


# --- the pipeline step ---------------------------------------------------------------------


def _state(tmp_path: Path, text: str):
    from nashc.pipeline import Candidate, CompileOptions, CompileState

    src = _write(tmp_path, text)
    state = CompileState(path=src, opts=CompileOptions(), workdir=tmp_path / "w",
                         program=load(src))
    state.finalists = [Candidate({("fc1", "op"): "conv", ("fc0", "wbits"): 4})]
    return state


def test_step_train_skips_a_dataset_that_does_not_fit(tmp_path: Path) -> None:
    from nashc.pipeline import step_train

    state = _state(tmp_path, (NET + TRAIN % 1).replace("1x8x8", "3x32x32"))
    step_train(state)
    assert state.finalists[0].accuracy is None and state.finalists[0].module is None
    assert len(state.notes) == 1
    assert state.notes[0].startswith("train section skipped: digits gives 1x8x8 images")


def test_step_train_without_train_section_does_nothing(tmp_path: Path) -> None:
    from nashc.pipeline import step_train

    state = _state(tmp_path, NET)
    step_train(state)
    assert state.finalists[0].accuracy is None and not state.notes


def test_examples_resnet8_cifar_would_skip_training() -> None:
    """The bundled example declares a digits train section for a 3x32x32 network: compile
    must note it instead of failing (see step_train)."""
    from nashc.runtime.data import DatasetMismatch

    root = Path(__file__).resolve().parents[2]
    prog = load(root / "examples" / "resnet8_cifar.nash")
    if prog.file.train is None or prog.file.train.dataset != "digits":
        pytest.skip("the example no longer trains on digits")
    with pytest.raises(DatasetMismatch, match="digits gives 1x8x8 images"):
        prepare_data(prog, seed=0)


@pytest.mark.finn
def test_compile_with_train_section_reports_measured_accuracy(tmp_path: Path) -> None:
    from nashc.pipeline import CompileOptions, compile_file
    from nashc.progress import CompileProgress

    class Recorder(CompileProgress):
        def __init__(self) -> None:
            self.events: list[tuple] = []

        def __getattribute__(self, name: str):  # every hook call is recorded
            attr = object.__getattribute__(self, name)
            if name.startswith(("step", "search_", "stage_", "message")):
                events = object.__getattribute__(self, "events")
                return lambda *a: events.append((name, *a))
            return attr

    rec = Recorder()
    src = _write(tmp_path, tiny_fc(train=True), "tiny.nash")
    out, report = compile_file(src, CompileOptions(output=tmp_path / "out", jobs=1,
                                                   survivors=3), progress=rec)
    assert report["pareto"]
    # the pipeline's progress hooks: steps in order, the search's count, each FINN stage
    # with its candidates and lowering steps, training epochs
    ev = rec.events
    assert [e[1] for e in ev if e[0] == "step"] == [
        "parse", "search", "accelerator_search", "train", "pareto", "baseline", "verify",
        "report"]
    assert ("search_started", 4, None) in ev
    assert [e for e in ev if e[0] == "search_finished"] == [("search_finished", 4, None)]
    assert [e[1] for e in ev if e[0] == "search_advanced"][-1] == 4
    assert [e[1:] for e in ev if e[0] == "stage_started"] == [
        ("FINN lowering + folding", 3), ("training + FINN lowering", 3)]
    first = ev.index(("stage_started", "FINN lowering + folding", 3))
    steps = [e[1] for e in ev[first:] if e[0] == "stage_step"]
    assert steps[:3] == ["qonnx_to_finn", "tidy_up", "streamline"] and "convert_to_hw" in steps
    assert "folding search" in steps and "epoch 1/1" in " ".join(steps)
    assert [e[1] for e in ev if e[0] == "stage_candidate"] == [0, 1, 2, 0, 1, 2]
    for point in report["pareto"]:
        assert isinstance(point["accuracy"], float) and 0.3 < point["accuracy"] <= 1.0
    assert any(n.startswith("accuracy: validation accuracy measured after training 3 "
                            "finalists for 1 epoch on digits") for n in report["notes"])
    assert report["golden"]["ok"] is True
    chosen = report["pareto"][report["chosen"]]
    # the written design carries the trained weights: onnxruntime measures that accuracy
    program = load(src)
    val = prepare_data(program, seed=0).val
    acc = _onnxruntime_accuracy(out / "design" / "model_qonnx.onnx", val)
    assert abs(acc - chosen["accuracy"]) <= 1.5 / 359, (acc, chosen["accuracy"])
    # `nashc train --arch` reproduces the figure without searching
    result = CliRunner().invoke(cli, ["train", str(src), "--arch", str(out / "report.json"),
                                      "-o", str(tmp_path / "retrained")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "retrained" / "train.json").read_text())
    assert summary["arch"] == chosen["arch"]
    assert summary["accuracy"] == pytest.approx(chosen["accuracy"])
