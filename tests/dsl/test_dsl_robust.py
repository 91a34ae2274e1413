"""Inputs `check` used to accept and `compile` could not do, and text the front end used
to mishandle (issue 12, "compile and the language"): each is an error at its line and
column, or accepted and meaning what it says."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nashc.dsl import NashSourceError, check_program, load, parse
from nashc.dsl.check import (
    DIGITS_IMAGES,
    MAX_FEATURE_VALUES,
    MAX_LAYER_WEIGHTS,
    MAX_LAYERS,
)
from nashc.dsl.errors import source_line

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "tfc_digits_w4a4.onnx"
TARGETS = ["u250", "pynq-z1"]
NET = "network n {\n  input %s uint8\n%s\n}\n"


def err_of(text: str, name: str = "t.nash") -> NashSourceError:
    with pytest.raises(NashSourceError) as info:
        check_program(parse(text, name), TARGETS)
    if info.value.source is None:
        info.value.source = text  # as `load` does
    assert info.value.format()  # formatting never fails
    return info.value


# --- what compile cannot build is refused by check, at its statement --------------------


@pytest.mark.parametrize("shape,body,line,col,fragment", [
    ("1x8x8", "  repeat 3 { }", 3, 3, "empty 'repeat' body"),
    ("1x8x8", "  repeat 2 {\n  }\n  fc f out 10", 3, 3, "empty 'repeat' body"),
    ("1x8x8", "  pool p max kernel 2", 1, 9, "no conv, block or fc layer"),
    ("1x8x8", "  pool p max kernel 2\n  pool g global avg", 1, 9, "no conv, block or fc layer"),
    ("1x8x8", "  repeat 2 { pool p max kernel 2 }", 1, 9, "no conv, block or fc layer"),
    ("1x8x8", "  fc f out 999999999999999", 3, 3, "weights; at most"),
    ("1x64x64", "  fc a out 20000\n  fc f out 20000", 4, 3, "weights; at most"),
    ("64x1x1", "  conv c out 40000 kernel 11\n  fc f out 10", 3, 3, "weights; at most"),
    ("1x64x64", "  conv c out 20000 kernel 1\n  fc f out 10", 3, 3, "values per frame"),
])
def test_uncompilable_networks_are_refused_at_their_statement(shape, body, line, col,
                                                               fragment):
    err = err_of(NET % (shape, body))
    assert (err.pos.line, err.pos.col) == (line, col)
    assert fragment in err.message


def test_huge_input_is_refused_at_its_shape():
    err = err_of(NET % ("3x10000x10000", "  fc f out 10"))
    assert (err.pos.line, err.pos.col) == (2, 9)
    assert f"at most {MAX_FEATURE_VALUES:,}" in err.message


def test_widest_candidate_counts():
    # 8192 x 8192 weights fit; the space's width 4 makes them 16x more
    body = "  fc a out 8192\n  fc f out 8192"
    ok = check_program(parse(NET % ("128x8x8", body), "t.nash"), TARGETS)
    assert ok.network.layers[1].out_shape == (8192,)
    assert 8192 * 8192 <= MAX_LAYER_WEIGHTS
    err = err_of(NET % ("128x8x8", "  conv c out 8192 kernel 3\n  fc f out 10")
                 + "space {\n  width c in {1.0, 4.0}\n}\n")
    assert "with width 4 of the space" in err.message and err.pos.line == 3


@pytest.mark.parametrize("clock,ok", [
    ("clock 1e308 GHz", False), ("clock 2 GHz", False), ("period 0.1 ns", False),
    ("clock 0.5 MHz", False), ("period 1 s", False), ("clock 1 GHz", True),
    ("clock 250 MHz", True), ("period 4 ns", True), ("clock 1 MHz", True),
])
def test_clock_range(clock, ok):
    text = NET % ("1x8x8", "  fc f out 10") + f"hardware {{\n  {clock}\n}}\n"
    if ok:
        check_program(parse(text, "t.nash"), TARGETS)
    else:
        err = err_of(text)
        assert err.pos.line == 6 and "outside 1..1000 MHz" in err.message


def test_digits_scoring_batch_at_most_the_data_set():
    train = "train {\n  dataset digits\n}\n"

    def text(n: int) -> str:
        return (NET % ("1x8x8", "  fc f out 10") + f"search {{\n  metric zero_shot batch {n}\n}}\n"
                + train)

    check_program(parse(text(DIGITS_IMAGES), "t.nash"), TARGETS)
    err = err_of(text(DIGITS_IMAGES + 1))
    assert (err.pos.line, err.pos.col) == (6, 26) and "larger than the digits" in err.message


def test_digits_image_count_is_sklearns():
    from sklearn.datasets import load_digits

    assert len(load_digits().images) == DIGITS_IMAGES


@pytest.mark.parametrize("section,line", [
    ("search {\n  metric zero_shot batch 999999999\n}\n", 6),
    ("train {\n  dataset digits\n  batch 999999999999\n}\n", 7),
])
def test_batches_beyond_memory_are_refused(section, line):
    err = err_of(NET % ("3x32x32", "  fc f out 10") + section)
    assert err.pos.line == line and "values; at most" in err.message


# --- 1-bit layers: refused where written --------------------------------------------------


def test_shift_on_bipolar_weights_is_refused_at_the_op_rule():
    body = "  fc a out 16 weights bipolar\n  fc f out 10"
    err = err_of(NET % ("1x8x8", body) + "space {\n  op a in {conv, shift}\n}\n")
    assert (err.pos.line, err.pos.col) == (7, 3)
    assert "shift and adder layers need 2 to 8 weight bits" in err.message
    # with weight bits in the space every candidate's shift layer has 2..8 bits
    ok = check_program(parse(NET % ("1x8x8", body) + "space {\n  op a in {conv, shift}\n"
                             "  wbits a in {2, 4}\n}\n", "t.nash"), TARGETS)
    assert ok.choices[("a", "op")] == ("conv", "shift")


def test_imported_network_abits_1_is_refused_at_the_option(tmp_path):
    import shutil

    shutil.copy(MODEL, tmp_path / "m.onnx")
    path = tmp_path / "t.nash"
    path.write_text('network m from "m.onnx"\nspace {\n  abits * in {2, 1}\n}\n')
    with pytest.raises(NashSourceError) as info:
        load(path, TARGETS)
    assert (info.value.pos.line, info.value.pos.col) == (3, 18)
    assert "2 to 8" in info.value.message


def test_rewrite_rules_and_hybrid_passes_refuse_1_bit():
    from nashc.passes.choices import parse_rule
    from nashc.passes.hybrid import ConvertConvToAdder, ConvertConvToShift, PassError

    assert parse_rule("abits", "fc*=2") == ("abits", "fc*", 2)
    for dim in ("abits", "wbits"):
        with pytest.raises(PassError, match="from 2 to 8"):
            parse_rule(dim, "fc*=1")
    for cls in (ConvertConvToShift, ConvertConvToAdder):
        with pytest.raises(PassError, match="bits=1"):
            cls("*", bits=1)


# --- budgets -------------------------------------------------------------------------------


def test_budget_zero_percent_forbids_like_zero():
    from nashc.targets.boards import budget_to_absolute, get_board

    text = NET % ("1x8x8", "  fc f out 10") + "hardware {\n  budget uram 0%, dsp 0\n}\n"
    prog = check_program(parse(text, "t.nash"), TARGETS)
    res = budget_to_absolute(get_board("u250"), prog.file.hardware.budget)
    assert res.uram == 0 and res.dsp == 0 and res.lut == get_board("u250").resources.lut


# --- text: byte-order mark, line separators, encodings --------------------------------------


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.nash"
    path.write_bytes(b"\xef\xbb\xbf" + (NET % ("1x8x8", "  fc f out 10")).encode())
    assert load(path, TARGETS).network.layers[0].name == "f"
    path.write_bytes(b"\xef\xbb\xbfnetwork n { input 1x8x8 uint8; fc f out 0 }\n")
    with pytest.raises(NashSourceError) as info:
        load(path, TARGETS)
    assert (info.value.pos.line, info.value.pos.col) == (1, 41)  # the mark is no column
    assert info.value.format().splitlines()[1] == "  network n { input 1x8x8 uint8; fc f out 0 }"


@pytest.mark.parametrize("sep", ["\f", "\u2028", "\u2029", "\x1c", "\x85", "\v", "\r"])
def test_error_display_splits_lines_like_the_parser(sep):
    # the separator sits in a comment (allowed); the error is two lines further down
    text = f"network n {{  # a{sep}b\n  input 1x8x8 uint8\n  fc f out 0\n}}\n"
    err = err_of(text)
    assert err.pos.line == 3
    shown = err.format().splitlines()
    assert shown[1] == "    fc f out 0"
    assert shown[2] == "  " + " " * (err.pos.col - 1) + "^"


def test_unexpected_form_feed_is_shown_on_its_line():
    err = err_of("network n {\n  input 1x8x8 uint8\n  fc f out 10\f\n}\n")
    assert (err.pos.line, err.pos.col) == (3, 14)
    assert err.format().splitlines()[1] == "    fc f out 10 "


def test_source_line_counts_newlines_only():
    text = "a\fb\nc\u2028d\ne"
    assert [source_line(text, i) for i in (1, 2, 3, 4)] == ["a b", "c d", "e", None]


def test_non_utf8_file_error_has_line_and_column(tmp_path):
    path = tmp_path / "latin1.nash"
    path.write_bytes(b"network n {\n  input 1x8x8 uint8\n  fc f out 10  # caf\xe9\n}\n")
    with pytest.raises(NashSourceError) as info:
        load(path, TARGETS)
    assert (info.value.pos.line, info.value.pos.col) == (3, 21)
    assert "not UTF-8" in info.value.message and "0xe9" in info.value.message
    assert info.value.format().startswith(f"{path}:3:21: error:")


# --- size: rejected while reading, printed quickly ------------------------------------------


def test_too_many_layer_statements_stop_the_parser():
    lines = [f"  fc f{i} out 2" for i in range(MAX_LAYERS + 1)]
    # what follows is a syntax error the parser would report if it read that far
    text = "network n {\n  input 1x8x8 uint8\n" + "\n".join(lines) + "\n  @@@\n}\n"
    with pytest.raises(NashSourceError) as info:
        parse(text, "big.nash")
    assert (info.value.pos.line, info.value.pos.col) == (MAX_LAYERS + 3, 3)
    assert f"more than {MAX_LAYERS} layers" in info.value.message


def test_layer_limit_counts_expanded_repeats():
    err = err_of(NET % ("1x8x8", "  repeat 101 { repeat 100 { fc f out 2 } }"))
    assert f"more than {MAX_LAYERS} layers" in err.message


def test_long_summary_prints_every_layer_as_plain_columns():
    from rich.console import Console

    from nashc.summary import print_summary

    n = 2000
    text = NET % ("1x8x8", "\n".join(f"  fc f{i} out 2" for i in range(n)))
    prog = check_program(parse(text, "t.nash"), TARGETS)
    con = Console(file=io.StringIO(), width=100)
    print_summary(prog, con)
    out = con.file.getvalue()
    assert f"layers ({n})" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("f")]
    assert [r[0] for r in rows] == [f"f{i}" for i in range(n)]
    assert all(r[1:] == ["fc", "2", "int8", "uint8"] for r in rows)


# --- search settings the search cannot carry out ---------------------------------------------


@pytest.mark.parametrize("strategy,line,col,fragment", [
    ("strategy random samples 999999999999", 6, 27, "more than 1,000,000 candidates"),
    ("strategy evolution population 10000000", 6, 33, "more than 1,000,000 candidates"),
    ("strategy evolution generations 10000000", 6, 34, "more than 1,000,000 candidates"),
    ("strategy exhaustive", 6, 3, "exhaustive search of 1,048,576 candidates"),
])
def test_search_sizes_beyond_what_the_search_can_do(strategy, line, col, fragment):
    body = "\n".join(f"  fc f{i} out 4" for i in range(10))
    space = "space {\n  wbits * in {2, 3, 4, 5}\n}\n"  # 4^10 candidates
    err = err_of(NET % ("1x8x8", body) + f"search {{\n  {strategy}\n}}\n" + space)
    assert (err.pos.line, err.pos.col) == (line + 9, col), err.format()
    assert fragment in err.message


def test_exhaustive_limit_is_the_searchs():
    import inspect

    from nashc.dsl.check import MAX_EXHAUSTIVE
    from nashc.passes.nas import exhaustive

    assert inspect.signature(exhaustive).parameters["max_candidates"].default == MAX_EXHAUSTIVE


def test_exhaustive_search_of_a_small_space_is_fine():
    text = NET % ("1x8x8", "  fc f out 4") + "search {\n  strategy exhaustive\n}\n" + \
        "space {\n  wbits f in {2, 3, 4, 5}\n}\n"
    assert check_program(parse(text, "t.nash"), TARGETS).space_size == 4
