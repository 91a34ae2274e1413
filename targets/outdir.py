"""Output directories written atomically (used by `nashc estimate`, `compile`, `train`).

A command builds its output in a temporary sibling directory and calls `publish_dir`
at the very end; on an error it removes the temporary directory, so a failed run never
leaves a half-written output and never touches an existing one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["make_temp_sibling", "publish_dir"]


def make_temp_sibling(out: Path) -> Path:
    """A new, empty temporary directory next to `out` (same file system: renames are atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def publish_dir(tmp: Path, out: Path) -> None:
    """Moves the finished `tmp` to `out`, replacing an existing `out` only at the end."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
