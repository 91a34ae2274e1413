"""The `.nash` language front end: grammar, AST, semantic checks, errors.

    from nashc.dsl import load
    program = load("examples/resnet8_cifar.nash", targets={"u250"})
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from nashc.dsl.ast import NashFile, Pos, Program
from nashc.dsl.check import check_program
from nashc.dsl.errors import NashcError, NashSourceError
from nashc.dsl.parser import parse

__all__ = ["parse", "load", "check_program", "NashcError", "NashSourceError"]


def read_source(path: str | Path) -> str:
    """Reads a `.nash` file as UTF-8 (a leading byte-order mark is dropped); a missing or
    unreadable file is a `NashcError`, bytes that are not UTF-8 a `NashSourceError` at
    their line and column."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise NashcError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NashcError(f"{path}: is a directory, not a .nash file") from None
    except OSError as exc:
        raise NashcError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]  # the offsets of utf-8-sig errors do not count the mark
        start = exc.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line = data.count(b"\n", 0, start) + 1
        col = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
        text = data.decode("utf-8", errors="replace")
        raise NashSourceError(f"not UTF-8 text: byte 0x{data[start]:02x} cannot start or "
                              "continue a character", Pos(str(path), line, col),
                              "a file saved as UTF-8", text) from None


def load(path: str | Path, targets: Collection[str] | None = None) -> Program:
    """Reads, parses and validates a `.nash` file into a `Program`.

    `targets`: the known board names (lowercase); None skips the target check.
    Raises `NashcError` (usually a `NashSourceError` with file:line:col) on any error.
    """
    text = read_source(path)
    nashfile: NashFile = parse(text, str(path))
    try:
        return check_program(nashfile, targets)
    except NashSourceError as err:
        if err.source is None:
            err.source = text
        raise
