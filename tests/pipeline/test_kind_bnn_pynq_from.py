"""Model kind 10 (issue 12): `network ... from` on BNN-PYNQ exports. Brevitas' TensorNorm
exports a constant ``Pow`` that qonnx's cleanup folds (ops are checked after the
cleanup), and the graph's own layer names (``/features.2/MatMul``) are written quoted in
a `space` selector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.brevitas_nets import export
from helpers.nash import loaded_net

from nashc.cli import cli
from nashc.dsl import parse
from nashc.dsl.errors import NashSourceError
from nashc.runtime.load import UnsupportedOpsError, load_onnx_network

pytestmark = pytest.mark.finn

def _tfc(tmp_path: Path, name: str) -> Path:
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    model, _ = model_with_cfg(name, pretrained=False)
    return export(model, (1, 1, 28, 28), tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("name", ["TFC_2W2A", "TFC_1W1A"])
def test_tensornorm_pow_is_folded_and_layers_keep_their_names(tmp_path: Path,
                                                              name: str) -> None:
    import onnx

    path = _tfc(tmp_path, name)
    assert "Pow" in {n.op_type for n in onnx.load(str(path)).graph.node}
    model = load_onnx_network(path)
    ops = {n.op_type for n in model.graph.node}
    assert "Pow" not in ops
    layers = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    assert layers == ["/features.2/MatMul", "/features.6/MatMul", "/features.10/MatMul",
                      "/features.14/MatMul"]


def test_an_op_left_after_the_cleanup_is_named_as_in_the_file(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    path = _tfc(tmp_path, "TFC_2W2A")
    proto = onnx.load(str(path))
    last = proto.graph.node[-1]
    out = last.output[0]
    last.output[0] = out + "_pre"
    proto.graph.node.append(helper.make_node("Sin", [out + "_pre"], [out], name="/my/Sin"))
    bad = tmp_path / "sin.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(UnsupportedOpsError) as info:
        load_onnx_network(bad)
    assert info.value.nodes == [("/my/Sin", "Sin")]


def test_quoted_selectors_parse() -> None:
    prog = parse('network n from "m.onnx"\nspace {\n  wbits "/1/MatMul", "features.*", '
                 'fc in {2}\n  fix "/x y"\n}\n', "q.nash")
    rule = prog.space.rules[0]
    assert rule.selector == ("/1/MatMul", "features.*", "fc")
    assert rule.selector_pos[0].col == 9
    assert prog.space.fixed == ("/x y",)
    with pytest.raises(NashSourceError, match="empty layer name"):
        parse('network n from "m.onnx"\nspace {\n  wbits "" in {2}\n}\n', "q.nash")


def test_compile_bnn_pynq_tfc_with_quoted_selectors(tmp_path: Path) -> None:
    path = _tfc(tmp_path, "TFC_2W2A")
    src = tmp_path / "bnn.nash"
    src.write_text(loaded_net(path.name, 'wbits "/features.2/MatMul", "/features.6/*" in {2, 4}'
                              '\n  fix "/features.14/MatMul"', "lut 5%", keep=2, name="bnn"))
    runner = CliRunner()
    res = runner.invoke(cli, ["check", str(src)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["compile", str(src), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["golden"]["ok"] is True
    assert [lv["name"] for lv in report["golden"]["levels"]][-1] == "finn-dataflow-vs-qonnx"
