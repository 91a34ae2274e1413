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

__all__ = ["NashcError", "NashSourceError", "source_line"]


def source_line(text: str, line: int) -> str | None:
    """Line `line` (1-based) of `text` as the parser counts lines: only "\\n" ends a line
    (`str.splitlines` would also split at form feeds, U+2028 and other separators, and
    show the wrong line). Characters that do not print as one column (tab, form feed,
    carriage return, other controls) are shown as a space, so the caret lines up."""
    if line < 1:
        return None
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    end = text.find("\n", start)
    raw = text[start:] if end < 0 else text[start:end]
    return "".join(ch if ch.isprintable() else " " for ch in raw)


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
                text = Path(self.pos.file).read_text(encoding="utf-8-sig", errors="replace")
            except OSError:
                text = None
        if text is not None:
            shown = source_line(text, self.pos.line)
            if shown is not None:
                lines.append(f"  {shown}")
                lines.append("  " + " " * (self.pos.col - 1) + "^")
        if self.expected:
            lines.append(f"expected: {self.expected}")
        return "\n".join(lines)
