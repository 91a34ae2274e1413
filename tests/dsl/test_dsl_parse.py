"""Every form of the language reference (docs/language.md) parses and means what is said."""

from __future__ import annotations

from pathlib import Path

import pytest

from nashc.dsl import NashSourceError, parse
from nashc.dsl.ast import BlockStmt, ConvStmt, DType, FcStmt, PoolStmt, Pos, RepeatStmt

NETWORK = """\
network resnet8 {
  input 3x32x32 uint8          # C x H x W and the input datatype
  weights int4                 # default weight datatype (int2..int8, bipolar)
  activations uint4            # default activation datatype (uint1..uint8)

  conv  stem out 16 kernel 3              # stride 1, padding "same" by default
  block b1   residual out 16              # basic residual block: two 3x3 convs
  block b2   residual out 32 stride 2
  block b3   residual out 64 stride 2
  pool  gap  global avg
  fc    head out 10 weights int8          # per-layer override
}
"""

SPACE = """\
space {
  op      b*.conv*  in {conv, shift, adder}   # hybrid operator per layer
  kernel  b*.conv*  in {3, 5}
  width   b*        in {0.5, 0.75, 1.0}       # channel multiplier
  wbits   *         in {2, 4, 8}
  abits   *         in {2, 4}
  fix     stem, head                          # these layers keep their declared settings
}
"""

HARDWARE = """\
hardware {
  target  u250                                # --target on the command line overrides it
  clock   250 MHz                             # or: period 4 ns
  budget  lut 70%, bram 70%, uram 50%, dsp 60%   # share of the device; absolute counts also allowed: lut 800000
  fps     >= 2000                             # optional requirement
  latency <= 2 ms                             # optional requirement
}
"""

SEARCH = """\
search {
  metric      zero_shot batch 32       # the hybrid-aware zero-shot score
  strategy    evolution population 64 generations 20   # or: random samples 500 | exhaustive
  accelerator coarse_to_fine           # or: finn_setfolding (FINN's own heuristic, for comparison)
  keep        pareto 8                 # how many Pareto points to report and lower
  seed        0
}
"""

TRAIN = """\
train {
  dataset digits                       # bundled with scikit-learn; or: cifar10 "path", imagefolder "path"
  epochs  20
  batch   64
  lr      0.01
}
"""

FULL = NETWORK + "\n" + SPACE + "\n" + HARDWARE + "\n" + SEARCH + "\n" + TRAIN


def test_network_section_means_what_dsl_md_says():
    nf = parse(NETWORK, "r.nash")
    net = nf.network
    assert net.name == "resnet8" and net.pos == Pos("r.nash", 1, 1)
    assert (net.input.channels, net.input.height, net.input.width) == (3, 32, 32)
    assert net.input.dtype == DType("uint8")
    assert net.weights == DType("int4") and net.activations == DType("uint4")
    stem, b1, b2, b3, gap, head = net.layers
    assert stem == ConvStmt("stem", 16, 3, 1, None, None, None, Pos("r.nash", 6, 3))
    assert isinstance(b1, BlockStmt) and (b1.name, b1.out, b1.stride) == ("b1", 16, 1)
    assert (b2.out, b2.stride, b3.out, b3.stride) == (32, 2, 64, 2)
    assert isinstance(gap, PoolStmt) and gap.global_ and gap.mode == "avg"
    assert isinstance(head, FcStmt) and head.out == 10 and head.weights == DType("int8")
    assert head.activations is None
    assert nf.space is None and nf.hardware is None and nf.search is None and nf.train is None


def test_space_section():
    space = parse(NETWORK + SPACE, "r.nash").space
    assert space is not None
    dims = [(r.dim, r.selector, r.options) for r in space.rules]
    assert dims == [
        ("op", ("b*.conv*",), ("conv", "shift", "adder")),
        ("kernel", ("b*.conv*",), (3, 5)),
        ("width", ("b*",), (0.5, 0.75, 1.0)),
        ("wbits", ("*",), (2, 4, 8)),
        ("abits", ("*",), (2, 4)),
    ]
    assert space.fixed == ("stem", "head")
    assert space.rules[0].selector_pos == (Pos("r.nash", 14, 11),)
    assert space.fixed_item_pos == (Pos("r.nash", 19, 11), Pos("r.nash", 19, 17))


def test_hardware_section():
    hw = parse(NETWORK + HARDWARE, "r.nash").hardware
    assert hw is not None
    assert hw.target == "u250" and hw.clock_mhz == 250.0
    assert [(b.resource, b.value, b.percent) for b in hw.budget] == [
        ("lut", 70.0, True), ("bram", 70.0, True), ("uram", 50.0, True), ("dsp", 60.0, True)]
    assert hw.fps_min == 2000.0 and hw.latency_max_ms == 2.0


@pytest.mark.parametrize("clock,mhz", [
    ("clock 250 MHz", 250.0), ("clock 0.3 GHz", 300.0), ("period 4 ns", 250.0),
    ("period 0.01 us", 100.0), ("clock 200 mhz", 200.0),
])
def test_clock_forms(clock, mhz):
    hw = parse(NETWORK + f"hardware {{\n {clock}\n}}\n", "r.nash").hardware
    assert hw.clock_mhz == pytest.approx(mhz)


@pytest.mark.parametrize("text,ms", [("2 ms", 2.0), ("500 us", 0.5), ("1 s", 1000.0)])
def test_latency_units(text, ms):
    hw = parse(NETWORK + f"hardware {{ latency <= {text} }}", "r.nash").hardware
    assert hw.latency_max_ms == pytest.approx(ms)


def test_absolute_budget_and_pynq_target():
    hw = parse(NETWORK + "hardware { target PYNQ-Z1; budget lut 800000, dsp 50% }",
               "r.nash").hardware
    assert hw.target == "pynq-z1"
    assert [(b.resource, b.value, b.percent) for b in hw.budget] == [
        ("lut", 800000.0, False), ("dsp", 50.0, True)]


def test_search_section():
    s = parse(NETWORK + SEARCH, "r.nash").search
    assert (s.metric, s.metric_batch, s.strategy, s.population, s.generations) == (
        "zero_shot", 32, "evolution", 64, 20)
    assert (s.accelerator, s.keep_pareto, s.seed) == ("coarse_to_fine", 8, 0)


@pytest.mark.parametrize("line,expect", [
    ("strategy random samples 500", {"strategy": "random", "samples": 500}),
    ("strategy exhaustive", {"strategy": "exhaustive"}),
    ("strategy evolution generations 3", {"strategy": "evolution", "generations": 3,
                                          "population": 64}),
    ("accelerator finn_setfolding", {"accelerator": "finn_setfolding"}),
    ("metric zero_shot", {"metric": "zero_shot", "metric_batch": 32}),
    ("keep pareto 3; seed 42", {"keep_pareto": 3, "seed": 42}),
])
def test_search_variants(line, expect):
    s = parse(NETWORK + f"search {{\n {line}\n}}", "r.nash").search
    for key, value in expect.items():
        assert getattr(s, key) == value


def test_train_section():
    t = parse(NETWORK + TRAIN, "r.nash").train
    assert (t.dataset, t.dataset_path, t.epochs, t.batch, t.lr) == ("digits", None, 20, 64, 0.01)


@pytest.mark.parametrize("kind", ["cifar10", "imagefolder"])
def test_train_dataset_paths_resolve_against_the_file(kind):
    t = parse(NETWORK + f'train {{ dataset {kind} "data/x" }}', "/some/dir/r.nash").train
    assert t.dataset == kind and t.dataset_path == Path("/some/dir/data/x")
    assert t.dataset_path_text == "data/x"


def test_full_example_parses():
    nf = parse(FULL, "r.nash")
    assert nf.network.name == "resnet8"
    assert all(x is not None for x in (nf.space, nf.hardware, nf.search, nf.train))


def test_network_from():
    nf = parse('network cnv from "models/cnv_w2a2.onnx"     # QONNX or plain ONNX\n',
               "/proj/a.nash")
    assert nf.network.name == "cnv"
    assert nf.network.source == Path("/proj/models/cnv_w2a2.onnx")
    assert nf.network.source_pos == Pos("/proj/a.nash", 1, 18)


def test_semicolons_blank_lines_and_comments_are_free():
    text = ("# header\n\n\nnetwork n {   # c\n\n input 1x8x8 uint8; weights int2 ;; \n"
            "  # comment line\n fc a out 4 ; fc b out 2\n\n}\n# trailing")
    net = parse(text, "x.nash").network
    assert [layer.name for layer in net.layers] == ["a", "b"]
    assert net.weights == DType("int2")
    one_line = parse("network n { input 1x8x8 uint8; fc a out 2 }", "x.nash").network
    assert one_line.layers[0].out == 2


def test_repeat_nested_and_overrides():
    text = """network n {
  input 3x16x16 uint8
  repeat 2 {
    conv c out 8 kernel 3 stride 1 pad 1 weights int2 activations uint3
    repeat 3 { fc f out 4 }
  }
}"""
    (rep,) = parse(text, "x.nash").network.layers
    assert isinstance(rep, RepeatStmt) and rep.count == 2
    conv, inner = rep.body
    assert (conv.name, conv.out, conv.kernel, conv.stride, conv.pad) == ("c", 8, 3, 1, 1)
    assert conv.weights == DType("int2") and conv.activations == DType("uint3")
    assert isinstance(inner, RepeatStmt) and inner.count == 3 and inner.body[0].name == "f"


def test_keywords_are_contextual():
    net = parse("network n { input 1x8x8 uint8; fc out out 3; fc pool out 2 }",
                "x.nash").network
    assert [layer.name for layer in net.layers] == ["out", "pool"]


def test_pool_window():
    (pool,) = parse("network n { input 1x8x8 uint8; pool p max kernel 3 stride 2 }",
                    "x.nash").network.layers
    assert (pool.mode, pool.kernel, pool.stride, pool.global_) == ("max", 3, 2, False)


@pytest.mark.parametrize("text,line,col,fragment,expected", [
    ("network n {\n  conv c out 16 kernal 3\n}", 2, 17, "unexpected 'kernal'; did you mean "
     "'kernel'?", "'kernel'"),
    ("network n {\n  input 3x32x32 uint8\n  conv c out 16 kernel 3\n", 3, 25,
     "unexpected end of file", "'}'"),
    ("network n {\n  input 3x32x32 uint8 @\n}", 2, 23, "unexpected character '@'",
     "end of the statement"),
    ("network n {\n  fc a out\n}", 2, 11, "unexpected end of line", "a number"),
    ("network {\n}", 1, 9, "unexpected '{'", "a name"),
    ("network n { input 3x32 uint8 }", 1, 19, "unexpected", "a shape"),
    ("network n { fc a out 3.5 }", 1, 22, "out must be a whole number", "a whole number"),
    ("network n { input 1x8x8 uint9 }", 1, 25, "unknown datatype 'uint9'", "bipolar"),
    ("network n { fc a out 3 weights float32 }", 1, 32, "unknown datatype 'float32'",
     "int2, int3"),
    ("network n { fc a kernel 3 out 2 }", 1, 25, "'kernel' does not apply to a fc layer",
     "'out'"),
    ("network n { conv c out 3 }", 1, 13, "conv 'c' needs 'kernel N'", "'kernel'"),
    ("network n { fc a out 3 out 4 }", 1, 28, "'out' given twice", None),
    ("network n { fc a out 3 }\nnetwork m { fc a out 3 }", 2, 1, "a second 'network' section",
     None),
    ("space { fix a }", 1, 1, "needs a 'network' section", "network NAME"),
    ("network n { input 1x8x8 uint8 }\nhardware { clock 250 Hz }", 2, 22, "unexpected 'Hz'",
     "frequency unit"),
    ("network n { pool p global max }", 1, 27, "only a global 'avg' pool", "'avg'"),
    ("network n { fc a out 99999999999999999999 }", 1, 22, "too large", None),
    ('network n from ""', 1, 16, "empty path", None),
    ("network n { input 1x8x8 uint8 }\nsearch { strategy greedy }", 2, 19,
     "unexpected 'greedy'", "'evolution'"),
    ("", 1, 1, "needs a 'network' section", "network NAME"),
    ("# only a comment\n", 1, 1, "needs a 'network' section", "network NAME"),
])
def test_syntax_errors_point_at_line_and_column(text, line, col, fragment, expected):
    with pytest.raises(NashSourceError) as info:
        parse(text, "bad.nash")
    err = info.value
    assert (err.pos.file, err.pos.line, err.pos.col) == ("bad.nash", line, col)
    assert fragment in err.message
    if expected is not None:
        assert expected in (err.expected or "")
    shown = err.format()
    assert shown.startswith(f"bad.nash:{line}:{col}: error: ")
    if text.strip():
        assert "^" in shown


def test_error_format_shows_line_and_caret():
    with pytest.raises(NashSourceError) as info:
        parse("network n {\n  conv c out 16 kernal 3\n}", "bad.nash")
    lines = info.value.format().splitlines()
    assert lines[0] == ("bad.nash:2:17: error: unexpected 'kernal'; did you mean 'kernel'?")
    assert lines[1] == "    conv c out 16 kernal 3"
    assert lines[2] == "  " + " " * 16 + "^"
    assert lines[3].startswith("expected: ")


def test_expected_list_is_short():
    with pytest.raises(NashSourceError) as info:
        parse("network n {\n  input 1x8x8 uint8\n  bogus\n}", "bad.nash")
    assert info.value.expected.count(",") <= 8
    assert "'conv'" in info.value.expected
