"""Output directories written atomically and safely (`nashc compile`, `train`, `estimate`).

    with atomic_output_dir(out, force=force, command="compile") as tmp:
        ...  # write everything into tmp
    # here `out` is the finished directory; on any error (or SIGTERM) nothing changed

- The output is built in a hidden temporary sibling ``.NAME.nashc-tmp-PID-XXXX`` (same
  file system, so the final rename is atomic) and renamed to `out` only when the body
  finished; on any error, Ctrl-C or SIGTERM (`terminate_as_exit`) the temporary directory
  is removed. A run killed with SIGKILL cannot clean up: the next run of nashc in the
  same parent directory removes such directories whose process is gone (`remove_stale`).
- nashc never deletes what it did not write: a published directory holds a marker file
  (`MARKER`); an existing `out` is replaced only when it is such a previous output or an
  empty directory. A non-empty directory without the marker is refused unless
  ``force`` (``--force``); a file or symbolic link at `out` is always refused.
- The published directory gets the user's umask (``mkdtemp`` makes it 0700).
- A full or read-only file system is a `NashcError` naming the output, not a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from nashc.dsl.errors import NashcError

__all__ = ["MARKER", "TEMP_TAG", "Terminated", "atomic_output_dir", "check_output_dir",
           "owned_temp_dir", "remove_stale", "terminate_as_exit", "write_error"]

#: File inside every directory nashc publishes; its presence lets a later run replace it.
MARKER = ".nashc-output"
#: Tag in the names of nashc's temporary directories: ``.NAME.nashc-tmp-PID-XXXX``.
TEMP_TAG = "nashc-tmp"
#: File inside each temporary directory naming its process and host.
_OWNER = ".nashc-owner"
_TEMP_RE = re.compile(r"nashc-(?:tmp|old)-(\d+)-[A-Za-z0-9_]+$")
#: errno values that always mean "the output cannot be written" (full, read-only, ...).
_FULL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}
#: errno values that mean so when the failing path is in the output's directory.
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST,
                 errno.EISDIR}


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM (`terminate_as_exit`): unwinds like an error,
    so every ``finally`` and context manager cleans up, and exits with 128 + 15."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` (main thread only; elsewhere a no-op)."""
    try:
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def write_error(path: Path, err: OSError) -> NashcError | None:
    """A `NashcError` for an OSError that means `path` cannot be written: a full or
    read-only file system anywhere, no permission (and the like) below `path`'s
    directory; None for other errors."""
    if err.errno not in _FULL_ERRNOS:
        if err.errno not in _WRITE_ERRNOS or not err.filename:
            return None
        try:
            Path(os.fsdecode(err.filename)).absolute().relative_to(path.absolute().parent)
        except ValueError:
            return None
    return NashcError(f"cannot write {path}: {err.strerror or err}")


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Removes nashc's temporary directories in `parent` left by processes that are gone
    (killed with SIGKILL, or a crash of Python itself): names ``*.nashc-tmp-PID-*`` or
    ``*.nashc-old-PID-*`` whose owner file names this host (or that are empty) and whose
    PID is not running. Returns the removed paths. Never raises."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    host = socket.gethostname()
    for entry in entries:
        m = _TEMP_RE.search(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir():
            continue
        if _alive(int(m.group(1))):
            continue
        owner = entry / _OWNER
        try:
            ok = json.loads(owner.read_text()).get("host") == host
        except (OSError, ValueError, AttributeError):
            try:  # killed between mkdtemp and writing the owner file: empty
                ok = not any(entry.iterdir())
            except OSError:
                ok = False
        if ok:
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    return removed


def owned_temp_dir(parent: Path, prefix: str, kind: str = "tmp") -> Path:
    """A new temporary directory ``PARENT/PREFIX.nashc-KIND-PID-XXXX`` holding an owner
    file (pid, host), so `remove_stale` can recognise it once its process is gone."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}nashc-{kind}-{os.getpid()}-", dir=parent))
    (path / _OWNER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    return path


def check_output_dir(out: Path, force: bool = False) -> None:
    """Raises `NashcError` unless nashc may write its output directory at `out`: `out`
    does not exist, is an empty directory, or a directory nashc wrote (`MARKER`); with
    `force` any directory. A file or symbolic link is never replaced."""
    if not out.name:
        raise NashcError(f"{out}: not a directory nashc can write its output to")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NashcError(f"{out} exists and is not a directory; nashc does not replace it "
                         "(choose another output with -o)")
    if not out.exists() or force or (out / MARKER).is_file():
        return
    try:
        empty = not any(out.iterdir())
    except OSError as err:
        raise NashcError(f"cannot read {out}: {err.strerror or err}") from None
    if not empty:
        raise NashcError(f"{out} exists, is not empty and was not written by nashc (no "
                         f"{MARKER} file in it); nashc replaces only its own outputs. Choose "
                         "another output with -o, or give --force to replace it")


def _publish(tmp: Path, out: Path, force: bool, command: str) -> None:
    from nashc import __version__

    (tmp / _OWNER).unlink(missing_ok=True)
    (tmp / MARKER).write_text(json.dumps({"written_by": "nashc", "version": __version__,
                                          "command": command}) + "\n")
    os.chmod(tmp, 0o777 & ~_umask())
    check_output_dir(out, force)  # again: something may have appeared meanwhile
    if out.exists():
        old = owned_temp_dir(out.parent, f".{out.name}.", kind="old")
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


@contextmanager
def atomic_output_dir(out: str | Path, force: bool = False,
                      command: str = "") -> Iterator[Path]:
    """Yields an empty temporary directory beside `out`; when the block finishes, it is
    renamed to `out` (replacing a previous nashc output, see `check_output_dir`).

    Raises `NashcError` before the block runs when `out` may not be written, and for a
    full, read-only or otherwise unwritable file system. On any exception (SIGTERM
    included, as `Terminated`) the temporary directory is removed and `out` is left as
    it was. Stale temporary directories of dead nashc processes beside `out` are removed
    first (`remove_stale`)."""
    out = Path(out).absolute()
    check_output_dir(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise (write_error(out.parent, err) or err) from None
    remove_stale(out.parent)
    try:
        tmp = owned_temp_dir(out.parent, f".{out.name}.")
    except OSError as err:
        raise (write_error(out, err) or err) from None
    try:
        with terminate_as_exit():
            yield tmp
            _publish(tmp, out, force, command)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        mapped = write_error(out, err)
        if mapped is None:
            raise
        raise mapped from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
