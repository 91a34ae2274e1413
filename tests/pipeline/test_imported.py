"""Networks loaded with `from`: graph candidates, fidelity, the graph cost model, and
`nashc compile` on the shipped examples/tfc_import.nash."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from nashc.candidate import module_layer_work, weight_bits
from nashc.dsl import load
from nashc.dsl.errors import NashcError
from nashc.imported import LoadedNetwork, choice_rules, fidelity, graph_layer_work
from nashc.runtime.build import LayerChoice, build_module, export_qonnx_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

NET = """network n {
  input 3x8x8 uint8
  weights int4
  activations uint4
  conv stem out 8 kernel 3
  block b1 residual out 16 stride 2
  pool gap global avg
  fc head out 10 weights int8
}
"""


def test_choice_rules_group_layers_by_value():
    rules = choice_rules({("a", "width"): 0.5, ("b", "width"): 0.5, ("a", "wbits"): 4,
                          ("b", "width2"): 1.0})
    assert ("width", "a,b", 0.5) in rules and ("wbits", "a", 4) in rules
    assert len(rules) == 3


def test_fidelity():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0]])
    assert fidelity(ref, ref) == (pytest.approx(1.0), 1.0)
    assert fidelity(2 * ref, ref) == (pytest.approx(1.0), 1.0)
    cos, agree = fidelity(-ref, ref)
    assert cos == pytest.approx(-1.0) and agree == 0.0
    assert fidelity(np.zeros_like(ref), ref) == (0.0, 0.5)  # argmax of zeros is 0


@pytest.mark.parametrize("choice", [{}, {"b1": LayerChoice(width=0.5, op="shift", wbits=2)},
                                    {"stem": LayerChoice(op="adder", abits=2)}])
def test_graph_cost_model_matches_the_module(tmp_path, choice):
    """The graph's layer work equals what the module's forward pass reports."""
    src = tmp_path / "n.nash"
    src.write_text(NET)
    program = load(src)
    torch.manual_seed(0)
    module = build_module(program.network, choice)
    model = export_qonnx_model(module, program.network, tmp_path / "n.onnx")
    batch = torch.randint(0, 256, (2, 3, 8, 8)).float()
    flat = {(k, d): getattr(c, d) for k, c in choice.items()
            for d in ("wbits", "abits") if getattr(c, d) is not None}
    from_module = module_layer_work(module, batch, weight_bits(program, flat))
    from_graph = graph_layer_work(model)
    assert sorted(from_graph, key=repr) == sorted(from_module, key=repr)
    # a graph saved without shapes (no value_info): the same work, shapes inferred
    bare = ModelWrapper(model.model.__deepcopy__())
    del bare.graph.value_info[:]
    assert any(bare.get_tensor_shape(n.output[0]) is None for n in bare.graph.node
               if n.op_type == "Conv")
    assert sorted(graph_layer_work(bare), key=repr) == sorted(from_module, key=repr)


def _example(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "tfc_import.nash", tmp_path)
    shutil.copytree(EXAMPLES / "models", tmp_path / "models")
    return tmp_path / "tfc_import.nash"


def test_graph_candidates_apply_the_choices(tmp_path):
    program = load(_example(tmp_path))
    gs = LoadedNetwork.load(program)
    model = gs.candidate({("fc0", "width"): 0.25, ("fc1", "width"): 0.5,
                          ("fc1", "op"): "shift", ("fc0", "wbits"): 2})
    works = {w.name: w for w in graph_layer_work(model)}
    assert works["fc0"].max_lanes == 64 * 16 and works["fc0"].wbits == 2
    assert works["fc1"].op == "shift" and works["fc1"].max_lanes == 16 * 32
    assert works["head"].max_lanes == 32 * 10
    gs.set_batch(np.random.default_rng(0).integers(0, 256, (8, 1, 8, 8)))
    assert gs.score(gs.base()) == pytest.approx(1.0)  # all 8 agree, cosine 1
    assert 0 < gs.score(model) < 1


def test_layers_missing_from_the_graph_are_named(tmp_path):
    program = load(_example(tmp_path))
    bad = type(program)(program.file, program.network,
                        {("nope", "wbits"): (2, 4), **program.choices})
    with pytest.raises(NashcError, match="layers nope of the search space"):
        LoadedNetwork.load(bad)


@pytest.mark.finn
def test_compile_the_import_example(tmp_path):
    from click.testing import CliRunner

    from nashc.cli import cli

    src = _example(tmp_path)
    src.write_text(src.read_text().replace("samples 60", "samples 12"))
    res = CliRunner().invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out"),
                                   "--jobs", "1"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["search"]["metric"] == "fidelity"
    assert report["search"]["candidates_evaluated"] == 12
    names = [lv["name"] for lv in report["golden"]["levels"]]
    assert names == ["qonnx-vs-onnxruntime", "finn-dataflow-vs-qonnx"]  # no module: no level 1
    assert report["golden"]["ok"]
    assert any("without fine-tuning" in n and "the loaded model itself: 98.33%" in n
               for n in report["notes"])
    for p in report["pareto"]:
        assert 0 < p["accuracy"] <= 1 and -1 <= p["score"] <= 1
        assert p["resources"]["lut"] <= report["budget"]["lut"]
        assert p["resources"]["dsp"] == 0
    chosen = report["pareto"][report["chosen"]]
    design = ModelWrapper(str(tmp_path / "out" / "design" / "model_qonnx.onnx"))
    widths = json.loads(design.get_metadata_prop("nashc.SetChannelWidth") or "[]")
    narrowed = {layer for rec in widths for layer in rec["layers"]}
    assert narrowed == {k.split(".")[0] for k, v in chosen["arch"].items()
                        if k.endswith(".width") and v < 1}
    # the per-layer table names the graph's layers with their chosen widths and bits,
    # and every layer found its FINN node
    rows = {r["layer"]: r for r in chosen["layers"]}
    for key, value in chosen["arch"].items():
        layer, dim = key.split(".")
        if dim in ("wbits", "abits"):
            assert rows[layer][dim] == value, (key, rows[layer])
    assert all(r["finn_node"] and r["pe"] and r["simd"] for r in chosen["layers"])
    assert rows["fc0"]["width"] == round(64 * chosen["arch"].get("fc0.width", 1.0))


@pytest.mark.finn
def test_compensated_graph_passes_level_3(tmp_path):
    """Narrowed with compensation (a float bias after every reader, the head included):
    FINN's hardware graph still matches the QONNX graph on the integers."""
    from nashc.passes.width import SetChannelWidth, layer_inputs
    from nashc.runtime.build import load_onnx_network
    from nashc.runtime.golden import compare_levels
    from nashc.targets.boards import get_board
    from nashc.targets.hybrid_lowering import hybrid_extra_steps
    from nashc.targets.lower import lower_to_hw
    from nashc.targets.verify import verify_dataflow

    model = load_onnx_network(EXAMPLES / "models" / "tfc_digits_w4a4.onnx")
    batch = np.random.default_rng(0).integers(0, 256, (16, 1, 8, 8)).astype(np.float32)
    model = model.transform(SetChannelWidth("fc0,fc1", 0.5,
                                            activations=layer_inputs(model, batch)))
    assert sum(n.name.endswith("_compensation") for n in model.graph.node) == 2
    assert compare_levels(model).ok
    board = get_board("u250")
    lowered = lower_to_hw(ModelWrapper(copy.deepcopy(model.model)), board, board.default_clock_mhz,
                          hybrid_extra_steps())
    diff, ok = verify_dataflow(model, lowered, seed=3)
    assert ok, diff


def test_a_choice_the_graph_cannot_take_fails_before_the_search(tmp_path):
    src = _example(tmp_path)
    src.write_text(src.read_text().replace("  op    fc1       in {conv, shift}",
                                           "  op    fc1       in {conv, shift}\n"
                                           "  abits head in {2, 4}"))
    from click.testing import CliRunner

    from nashc.cli import cli

    res = CliRunner().invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "sets abits 2 on layer head" in res.output and "no Quant node" in res.output
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    res = CliRunner().invoke(cli, ["check", str(src)])  # check tries the space too
    assert res.exit_code == 2 and "sets abits 2 on layer head" in res.output, res.output


def test_check_tries_the_space_on_the_graph(tmp_path):
    from click.testing import CliRunner

    from nashc.cli import cli

    res = CliRunner().invoke(cli, ["check", str(_example(tmp_path))])
    assert res.exit_code == 0, res.output
    assert "every option of the space applies to the loaded graph" in res.output


@pytest.mark.finn
def test_an_untrained_model_is_flagged(tmp_path):
    """A loaded model near chance on the data set gets a warning in the report."""
    from click.testing import CliRunner

    from nashc.cli import cli

    declared = load(EXAMPLES / "tfc_digits.nash").network
    torch.manual_seed(0)
    export_qonnx_model(build_module(declared, {}), declared, tmp_path / "untrained.onnx")
    src = tmp_path / "u.nash"
    src.write_text('network u from "untrained.onnx"\nspace { width fc0 in {0.5, 1.0} }\n'
                   "hardware { target u250\n budget lut 50%, dsp 50% }\n"
                   "search { strategy exhaustive\n keep pareto 2 }\ntrain { dataset digits }\n")
    res = CliRunner().invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out"),
                                   "--jobs", "1"])
    assert res.exit_code == 0, res.output
    notes = json.loads((tmp_path / "out" / "report.json").read_text())["notes"]
    assert any("the loaded model itself scores" in n and "chance: 10%" in n for n in notes)
