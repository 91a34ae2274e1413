"""Errors a user can cause, and how they are shown.

`NashcError` is the one exception type the CLI turns into a message and exit code 2
(never a traceback). Errors that point into a `.nash` file carry a `Pos` and are shown
GCC-style::

    FILE:LINE:COL: error: MESSAGE
      the offending line
          ^
    expected: ...

Every layer of nashc (runtime, passes, targets) raises subclasses of `NashcError` for
bad input, e.g. an unsupported ONNX op names the node and its op type.
"""

from __future__ import annotations

from pathlib import Path

from nashc.dsl.ast import Pos

__all__ = ["NashcError", "NashSourceError"]


class NashcError(Exception):
    """An error caused by the user's input; shown without a traceback, exit code 2."""

    def format(self) -> str:
        return f"error: {self}"


class NashSourceError(NashcError):
    """An error at a position in a `.nash` file."""

    def __init__(self, message: str, pos: Pos | None, expected: str | None = None,
                 source: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.expected = expected
        self.source = source

    def format(self) -> str:
        if self.pos is None:
            head = f"error: {self.message}"
            return head if not self.expected else f"{head}\nexpected: {self.expected}"
        lines = [f"{self.pos.file}:{self.pos.line}:{self.pos.col}: error: {self.message}"]
        text = self.source
        if text is None:
            try:
                text = Path(self.pos.file).read_text()
            except OSError:
                text = None
        if text is not None:
            src_lines = text.splitlines()
            if 1 <= self.pos.line <= len(src_lines):
                line = src_lines[self.pos.line - 1].expandtabs(1)
                lines.append(f"  {line}")
                lines.append("  " + " " * (self.pos.col - 1) + "^")
        if self.expected:
            lines.append(f"expected: {self.expected}")
        return "\n".join(lines)
