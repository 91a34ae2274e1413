"""The `.nash` language front end: grammar, AST, semantic checks, errors.

    from nashc.dsl import load
    program = load("examples/resnet8_cifar.nash", targets={"u250"})
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from nashc.dsl.ast import NashFile, Program
from nashc.dsl.check import check_program
from nashc.dsl.errors import NashcError, NashSourceError
from nashc.dsl.parser import parse

__all__ = ["parse", "load", "check_program", "NashcError", "NashSourceError"]


def read_source(path: str | Path) -> str:
    """Reads a `.nash` file; a missing or unreadable file is a `NashcError`."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NashcError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NashcError(f"{path}: is a directory, not a .nash file") from None
    except UnicodeDecodeError as exc:
        raise NashcError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise NashcError(f"{path}: cannot read: {exc.strerror or exc}") from None


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
