"""Semantic checks and resolution: shapes, names, space choices, hardware/search/train."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from nashc.dsl import NashcError, NashSourceError, check_program, load, parse
from nashc.dsl.ast import DType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TARGETS = ["u250", "u200", "pynq-z1", "zcu104"]
BASE = "network n {\n  input 3x32x32 uint8\n%s\n}\n"


def resolve(body: str, rest: str = "", targets=TARGETS):
    return check_program(parse(BASE % body + rest, "t.nash"), targets)


@pytest.mark.parametrize("stmt,shape", [
    ("conv c out 16 kernel 3", (16, 32, 32)),
    ("conv c out 16 kernel 5", (16, 32, 32)),
    ("conv c out 8 kernel 3 pad 0", (8, 30, 30)),
    ("conv c out 8 kernel 3 stride 2", (8, 16, 16)),
    ("conv c out 8 kernel 1 stride 4", (8, 8, 8)),
    ("conv c out 8 kernel 5 pad 0 stride 2", (8, 14, 14)),
    ("conv c out 8 kernel 2", (8, 33, 33)),
    ("pool p max kernel 2", (3, 16, 16)),
    ("pool p avg kernel 3 stride 1", (3, 30, 30)),
    ("pool p max kernel 3 stride 2", (3, 15, 15)),
    ("pool p global avg", (3, 1, 1)),
    ("fc f out 10", (10,)),
    ("block b residual out 3", (3, 32, 32)),
    ("block b residual out 16 stride 2", (16, 16, 16)),
])
def test_shape_inference(stmt, shape):
    # a trailing fc: a network needs a compute layer (a pool alone is refused)
    net = resolve("  " + stmt + "\n  fc tail out 2").network
    assert net.layers[0].out_shape == shape
    assert net.layers[-2].out_shape == shape
    assert net.layers[0].in_shape == (3, 32, 32)


# A stride that does not divide the map floors the output as PyTorch and FINN do
# (floor((size + 2 pad - kernel) / stride) + 1): the 32x32 input becomes 15x15 first.
@pytest.mark.parametrize("stmt,shape", [
    ("conv c out 8 kernel 3 stride 2", (8, 8, 8)),
    ("conv c out 8 kernel 3 stride 2 pad 0", (8, 7, 7)),
    ("conv c out 8 kernel 3 stride 3", (8, 5, 5)),
    ("conv c out 8 kernel 1 stride 4", (8, 4, 4)),
    ("block b residual out 8 stride 2", (8, 8, 8)),
    ("block b residual out 8 stride 3", (8, 5, 5)),
    ("pool q max kernel 2", (3, 7, 7)),
])
def test_stride_floors_on_odd_maps(stmt, shape):
    net = resolve("  pool p max kernel 3 stride 2\n  " + stmt + "\n  fc f out 2").network
    assert net.layers[0].out_shape == (3, 15, 15)
    assert net.layers[1].in_shape == (3, 15, 15)
    assert net.layers[1].out_shape == shape


def test_block_expansion():
    net = resolve("  block b residual out 16 stride 2\n  block c residual out 16").network
    names = [(layer.name, layer.kind) for layer in net.layers]
    assert names == [("b", "block"), ("b.conv1", "conv"), ("b.conv2", "conv"),
                     ("b.down", "conv"), ("b.add", "add"),
                     ("c", "block"), ("c.conv1", "conv"), ("c.conv2", "conv"), ("c.add", "add")]
    down = net.layer("b.down")
    assert (down.kernel, down.stride, down.pad, down.parent) == (1, 2, 0, "b")
    assert net.layer("b.conv1").in_shape == (3, 32, 32)
    assert net.layer("b.conv2").in_shape == (16, 16, 16)
    assert net.layer("c.conv1").kernel == 3 and net.layer("c.conv1").pad == 1


def test_block_downsamples_only_when_channels_or_stride_change():
    net = resolve("  conv s out 8 kernel 3\n  block b residual out 8").network
    assert "b.down" not in [layer.name for layer in net.layers]


def test_cnv_shapes_match_finn():
    prog = load(EXAMPLES / "cnv_cifar.nash", TARGETS)
    spatial = [layer.out_shape for layer in prog.network.layers]
    assert spatial == [(64, 30, 30), (64, 28, 28), (64, 14, 14), (128, 12, 12), (128, 10, 10),
                       (128, 5, 5), (256, 3, 3), (256, 1, 1), (512,), (512,), (10,)]
    assert prog.network.layer("fc0").in_shape == (256, 1, 1)
    assert prog.network.layer("conv3").weights == DType("int2")
    assert prog.network.layer("fc2").activations == DType("uint2")


def test_dtype_inheritance_and_defaults():
    net = resolve("  conv a out 4 kernel 3 activations uint2\n  fc b out 2 weights bipolar").network
    assert net.layer("a").weights == DType("int8") and net.layer("a").activations == DType("uint2")
    assert net.layer("b").weights == DType("bipolar")
    text = ("network n {\n input 1x4x4 uint8\n weights int3\n activations uint5\n"
            " fc a out 2\n block q residual out 2\n}")
    net = check_program(parse(text.replace("block q residual out 2", "fc z out 3"), "t.nash"))
    assert net.network.layer("a").weights == DType("int3")
    assert net.network.layer("z").activations == DType("uint5")


def test_repeat_expansion_suffixes():
    body = "  repeat 2 {\n    conv c out 4 kernel 3\n    repeat 2 { block b residual out 4 }\n  }"
    names = [layer.name for layer in resolve(body).network.layers if layer.kind != "add"]
    assert names == [
        "c_0", "b_0_0", "b_0_0.conv1", "b_0_0.conv2", "b_0_1", "b_0_1.conv1", "b_0_1.conv2",
        "c_1", "b_1_0", "b_1_0.conv1", "b_1_0.conv2", "b_1_1", "b_1_1.conv1", "b_1_1.conv2"]


def test_examples_check():
    for path in sorted(EXAMPLES.glob("*.nash")):
        prog = load(path, TARGETS)
        assert prog.network.layers, path
    assert {p.name for p in EXAMPLES.glob("*.nash")} >= {
        "resnet8_cifar.nash", "tfc_digits.nash", "cnv_cifar.nash"}


def test_resnet8_choices_follow_the_rules():
    prog = load(EXAMPLES / "resnet8_cifar.nash", TARGETS)
    ch = prog.choices
    convs = [f"b{i}.conv{j}" for i in (1, 2, 3) for j in (1, 2)]
    assert sorted(n for n, d in ch if d == "op") == sorted(convs)
    assert sorted(n for n, d in ch if d == "kernel") == sorted(convs)
    assert sorted(n for n, d in ch if d == "width") == ["b1", "b2", "b3"]
    bits_layers = sorted(convs + ["b2.down", "b3.down"])
    assert sorted(n for n, d in ch if d == "wbits") == bits_layers
    assert sorted(n for n, d in ch if d == "abits") == bits_layers
    assert not any(n in ("stem", "head", "gap") for n, _ in ch)
    assert ch[("b1", "width")] == (0.5, 0.75, 1.0)
    assert prog.space_size == 3**6 * 2**6 * 3**3 * 3**8 * 2**8


def test_last_rule_wins_and_fix_covers_block_layers():
    body = "  conv s out 8 kernel 3\n  block b residual out 8\n  fc h out 2"
    space = ("space {\n wbits * in {2, 4}\n wbits h in {8}\n op s, h in {shift}\n"
             " fix b\n}")
    prog = resolve(body, space)
    assert prog.choices[("h", "wbits")] == (8,)
    assert prog.choices[("s", "wbits")] == (2, 4)
    assert prog.choices[("s", "op")] == ("shift",)
    assert not any(n.startswith("b") for n, _ in prog.choices)
    assert prog.space_size == 2 * 1 * 1 * 1


def test_no_space_means_size_one():
    prog = resolve("  fc f out 2")
    assert prog.choices == {} and prog.space_size == 1


def onnx_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108)
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [256, 5], [0.0] * 1280)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 256])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv_a", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w2"], ["y"], name="fc_b"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [w, w2, shape])
    onnx.save(helper.make_model(graph), str(path))


def test_network_from_onnx(tmp_path):
    (tmp_path / "models").mkdir()
    onnx_model(tmp_path / "models" / "m.onnx")
    path = tmp_path / "a.nash"
    path.write_text('network m from "models/m.onnx"\nspace { op conv_* in {conv, shift} }\n')
    prog = load(path, TARGETS)
    net = prog.network
    assert net.source == tmp_path / "models" / "m.onnx"
    assert [(layer.name, layer.kind) for layer in net.layers] == [("conv_a", "conv"),
                                                                  ("fc_b", "fc")]
    assert net.input_shape == (3, 8, 8)
    assert net.layer("conv_a").kernel == 3 and net.layer("fc_b").out_shape == (5,)
    assert prog.choices == {("conv_a", "op"): ("conv", "shift")}


def test_network_from_not_onnx(tmp_path):
    (tmp_path / "m.onnx").write_text("not a model")
    path = tmp_path / "a.nash"
    path.write_text('network m from "m.onnx"\n')
    with pytest.raises(NashSourceError) as info:
        load(path)
    assert (info.value.pos.line, info.value.pos.col) == (1, 16)
    assert "cannot read" in info.value.message


# (body, rest, line, col, fragment) — lines count from the start of BASE % body + rest
ERRORS = [
    ("  pool p max kernel 2\n  pool q max kernel 33", "", 4, 21, "bigger than its input"),
    ("  conv c out 8 kernel 40 pad 0", "", 3, 23, "kernel 40 of 'c' is bigger"),
    ("  fc a out 3\n  fc a out 4", "", 4, 3, "duplicate layer name 'a' (first at line 3)"),
    ("  repeat 2 { fc a out 2 }\n  fc a_1 out 2", "", 4, 3, "duplicate layer name 'a_1'"),
    ("  fc a out 3\n  conv c out 2 kernel 1", "", 4, 3, "needs a CxHxW feature map"),
    ("  fc a out -3", "", 3, 12, "out must be positive, got -3"),
    ("  conv c out 4 kernel 3 stride 0", "", 3, 32, "stride must be positive"),
    ("  conv c out 4 kernel 3 pad -1", "", 3, 29, "pad must not be negative"),
    ("  repeat 0 { fc a out 2 }", "", 3, 10, "count must be positive"),
    ("  fc a out 2", "space {\n  wbits a, zz* in {2}\n}", 6, 12,
     "selector 'zz*' matches no layer"),
    ("  fc a out 2", "space {\n  fix q\n}", 6, 7, "'fix q' matches no layer"),
    ("  fc a out 2", "space {\n  kernel a in {3}\n}", 6, 10, "'kernel' does not apply"),
    ("  fc a out 2", "space {\n  op a in {conv, mul}\n}", 6, 18, "unknown op 'mul'"),
    ("  conv a out 2 kernel 3", "space {\n  kernel a in {3, 4}\n}", 6, 19,
     "odd positive whole number"),
    ("  conv a out 2 kernel 3", "space {\n  width a in {0.5, 5}\n}", 6, 20, "width option"),
    ("  fc a out 2", "space {\n  wbits a in {1}\n}", 6, 15, "from 2 to 8"),
    ("  fc a out 2", "space {\n  abits a in {9}\n}", 6, 15, "from 1 to 8"),
    ("  fc a out 2", "space {\n  abits a in {2, 2}\n}", 6, 18, "given twice"),
    ("  fc a out 2", "hardware {\n  target u999\n}", 6, 10, "unknown target 'u999'"),
    ("  fc a out 2", "hardware {\n  budget lut 50%, bram 101%\n}", 6, 19,
     "budget bram 101% must be within [0, 100]%"),
    # 0% forbids a resource like an absolute 0 (issue 12); below 0 is an error
    ("  fc a out 2", "hardware {\n  budget lut -1%\n}", 6, 10, "must be within"),
    ("  fc a out 2", "hardware {\n  budget lut -5\n}", 6, 10, "non-negative whole count"),
    ("  fc a out 2", "hardware {\n  budget gpu 5%\n}", 6, 10, "unknown resource 'gpu'"),
    ("  fc a out 2", "hardware {\n  budget lut 5%, lut 6%\n}", 6, 18, "given twice"),
    ("  fc a out 2", "hardware {\n  clock -250 MHz\n}", 6, 9, "clock must be positive"),
    ("  fc a out 2", "hardware {\n  period 0 ns\n}", 6, 10, "clock must be positive"),
    ("  fc a out 2", "hardware {\n  fps >= -1\n}", 6, 10, "fps must be positive"),
    ("  fc a out 2", "hardware {\n  latency <= 0 ms\n}", 6, 14, "latency must be positive"),
    ("  fc a out 2", "search {\n  strategy random samples -5\n}", 6, 27,
     "samples must be positive, got -5"),
    ("  fc a out 2", "search {\n  keep pareto 0\n}", 6, 15, "keep pareto must be positive"),
    ("  fc a out 2", "search {\n  seed -1\n}", 6, 8, "seed must not be negative"),
    ("  fc a out 2", "search {\n  metric params\n}", 6, 10, "unknown metric 'params'"),
    ("  fc a out 2", "train {\n  epochs -5\n}", 6, 10, "epochs must be positive, got -5"),
    ("  fc a out 2", "train {\n  lr 0\n}", 6, 6, "lr must be positive"),
]


@pytest.mark.parametrize("body,rest,line,col,fragment", ERRORS)
def test_semantic_errors_point_at_line_and_column(write, body, rest, line, col, fragment):
    path = write(BASE % body + rest)
    with pytest.raises(NashSourceError) as info:
        load(path, TARGETS)
    err = info.value
    assert (err.pos.line, err.pos.col) == (line, col), err.format()
    assert fragment in err.message
    shown = err.format()
    assert shown.startswith(f"{path}:{line}:{col}: error: ")
    assert shown.splitlines()[2].index("^") == col + 1  # caret under the column


def test_missing_from_file_error(write):
    path = write('network cnv from "models/missing.onnx"\n')
    with pytest.raises(NashSourceError) as info:
        load(path)
    assert (info.value.pos.line, info.value.pos.col) == (1, 18)
    assert "'models/missing.onnx' not found" in info.value.message


def test_unknown_target_lists_known_ones(write):
    path = write(BASE % "  fc a out 2" + "hardware { target zz9 }")
    with pytest.raises(NashSourceError) as info:
        load(path, ["u250", "pynq-z1"])
    assert info.value.expected == "one of u250, pynq-z1"


def test_targets_none_skips_the_target_check(write):
    path = write(BASE % "  fc a out 2" + "hardware { target zz9 }")
    assert load(path).file.hardware.target == "zz9"


def test_missing_input_and_empty_network(write):
    with pytest.raises(NashSourceError, match="needs an 'input"):
        load(write("network n { fc a out 2 }"))
    with pytest.raises(NashSourceError, match="has no layers"):
        load(write("network n { input 1x2x2 uint8 }"))
    with pytest.raises(NashSourceError, match="input height must be positive"):
        load(write("network n { input 1x0x2 uint8; fc a out 1 }"))


def test_huge_repeat_is_an_error_not_a_hang(write):
    with pytest.raises(NashSourceError, match="more than"):
        load(write("network n { input 1x2x2 uint8\n repeat 1000000000 { fc a out 1 } }"))


@pytest.mark.parametrize("name", ["missing.nash", "adir"])
def test_unreadable_files_are_nashc_errors(tmp_path, name):
    (tmp_path / "adir").mkdir()
    with pytest.raises(NashcError):
        load(tmp_path / name)
    (tmp_path / "bin.nash").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(NashcError, match="UTF-8"):
        load(tmp_path / "bin.nash")


@pytest.mark.parametrize("space,line_col,fragment", [
    ("space { kernel conv_a in {3, 5} }", (2, 9), "'kernel' cannot be searched"),
    ("space { width conv_a in {0.5, 2.0} }", (2, 9), "can only be narrowed"),
])
def test_network_from_onnx_space_limits(tmp_path, space, line_col, fragment):
    onnx_model(tmp_path / "m.onnx")
    path = tmp_path / "a.nash"
    path.write_text(f'network m from "m.onnx"\n{space}\n')
    with pytest.raises(NashSourceError) as info:
        load(path, TARGETS)
    assert (info.value.pos.line, info.value.pos.col) == line_col
    assert fragment in info.value.message


def test_network_from_onnx_widths_of_fc_layers(tmp_path):
    onnx_model(tmp_path / "m.onnx")
    path = tmp_path / "a.nash"
    path.write_text('network m from "m.onnx"\nspace { width * in {0.5, 1.0} }\n')
    assert set(load(path, TARGETS).choices) == {("conv_a", "width"), ("fc_b", "width")}


@pytest.mark.parametrize("imported,metric,ok", [
    (True, "fidelity", True), (True, "zero_shot", False),
    (False, "zero_shot", True), (False, "fidelity", False),
])
def test_metric_fits_the_network(tmp_path, imported, metric, ok):
    onnx_model(tmp_path / "m.onnx")
    net = ('network m from "m.onnx"' if imported else
           "network m {\n  input 1x8x8 uint8\n  fc a out 4\n}")
    path = tmp_path / "a.nash"
    path.write_text(f"{net}\nsearch {{\n  metric {metric}\n}}\n")
    if ok:
        load(path, TARGETS)
        return
    with pytest.raises(NashSourceError) as info:
        load(path, TARGETS)
    assert info.value.pos.col == 10 and "metric" in info.value.message
