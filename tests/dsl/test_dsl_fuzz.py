"""Any text in, only NashcError out: never a traceback from the front end."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nashc.dsl import NashcError, check_program, parse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEXTS = [p.read_text() for p in sorted(EXAMPLES.glob("*.nash"))]
TARGETS = ["u250", "pynq-z1"]
WORDS = ["network", "conv", "block", "pool", "fc", "repeat", "residual", "out", "kernel",
         "stride", "pad", "{", "}", ";", "\n", ",", "%", "in", "-1", "0", "3", "99", "1.5",
         "1e9", "int4", "uint9", "x", "3x32x32", '"', "#", "*", "global", "avg", "from",
         "space", "hardware", "fix", "target", "budget", ">=", "<=", "MHz", "ns", "@", "\t"]


def run(text: str) -> None:
    try:
        check_program(parse(text, "fuzz.nash"), TARGETS)
    except NashcError as err:
        assert err.format()  # formatting never fails either


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text(text):
    run(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join))
def test_random_words(text):
    run(text)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        piece = draw(st.sampled_from(WORDS) | st.text(max_size=5))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + piece + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_examples(text):
    run(text)


def test_deep_nesting_is_an_error():
    text = "network n { input 1x2x2 uint8\n" + "repeat 1 {\n" * 500 + "fc a out 1\n" + \
        "}\n" * 501
    try:
        run(text)
    except RecursionError as exc:  # pragma: no cover - the failure this test guards against
        raise AssertionError("deep nesting leaked a RecursionError") from exc
    try:
        parse(text, "deep.nash")
    except NashcError as err:
        assert "nesting deeper" in str(err)
    else:
        raise AssertionError("500 nested repeats were accepted")


PIECES = [b"network n {\n", b"  input 1x8x8 uint8\n", b"  fc f out 10\n", b"}\n",
          b"\xef\xbb\xbf", b"\xe9", b"\xff\xfe", b"\x00", b"\f", "\u2028".encode(),
          b"\r\n", b"# caf\xc3\xa9\n", b"repeat 3 { }\n", b"pool p max kernel 2\n",
          b"hardware { clock 1e308 GHz }\n", b"budget uram 0%\n", b'"', b"{", b"}"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=8)), max_size=30)
       .map(b"".join))
def test_random_bytes_through_load(tmp_path, data):
    """Any bytes in a file: `load` (decoding included) raises only NashcError, and the
    error display never fails."""
    from nashc.dsl import load

    path = tmp_path / "fuzz.nash"
    path.write_bytes(data)
    try:
        load(path, TARGETS)
    except NashcError as err:
        assert err.format()
