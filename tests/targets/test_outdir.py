"""`nashc.targets.outdir`: nashc never deletes what it did not write, never leaves a
half-written output or a temporary directory behind (issue 12; issue 10 item 5)."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nashc.dsl.errors import NashcError
from nashc.targets.outdir import (
    MARKER,
    atomic_output_dir,
    owned_temp_dir,
    remove_stale,
)


def siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_publishes_with_marker_and_umask(tmp_path):
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        with atomic_output_dir(out, command="test") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.nashc-tmp-")
            (tmp / "a.txt").write_text("a")
    finally:
        os.umask(old)
    assert siblings(tmp_path) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    assert json.loads((out / MARKER).read_text())["command"] == "test"
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # not mkdtemp's 0700


def test_replaces_a_previous_output_and_an_empty_directory(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "first").write_text("1")
    with atomic_output_dir(out) as tmp:
        (tmp / "second").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "second"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_output_dir(empty) as tmp:
        (tmp / "x").write_text("x")
    assert (empty / "x").is_file()
    assert siblings(tmp_path) == ["empty", "out"]


def test_refuses_a_users_directory_unless_forced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(NashcError, match="not written by nashc.*--force"):
        with atomic_output_dir(out):
            raise AssertionError("the body must not run")
    assert (out / "thesis.tex").read_text() == "precious"
    assert siblings(tmp_path) == ["mine"]
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "r").write_text("r")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "r"]


@pytest.mark.parametrize("force", [False, True])
def test_never_replaces_a_file_or_link(tmp_path, force):
    f = tmp_path / "out"
    f.write_text("user data")
    with pytest.raises(NashcError, match="not a directory"):
        with atomic_output_dir(f, force=force):
            pass
    assert f.read_text() == "user data"
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(NashcError, match="not a directory"):
        with atomic_output_dir(link, force=force):
            pass
    assert link.is_symlink()


def test_an_error_leaves_everything_as_it_was(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "v1").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "v2").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "v1"]
    assert siblings(tmp_path) == ["out"]


def test_a_file_appearing_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NashcError, match="not a directory"):
        with atomic_output_dir(out):
            out.write_text("written by someone else during the run")
    assert out.read_text().startswith("written by someone")
    assert siblings(tmp_path) == ["out"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_file_system_is_an_error(tmp_path, code):
    out = tmp_path / "out"
    with pytest.raises(NashcError, match=f"cannot write {out}: {os.strerror(code)}"):
        with atomic_output_dir(out) as tmp:
            raise OSError(code, os.strerror(code), str(tmp / "report.json"))
    assert siblings(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_parent_is_an_error(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(NashcError, match="cannot write"):
            with atomic_output_dir(parent / "out"):
                pass
    finally:
        parent.chmod(0o755)


def test_permission_error_elsewhere_is_not_blamed_on_the_output(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_output_dir(tmp_path / "out"):
            raise PermissionError(errno.EACCES, "Permission denied", "/etc/some-input")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_directories_of_dead_processes_are_removed(tmp_path):
    # one left by a killed nashc (its pid is gone), one of a live process, one of a user
    stale = owned_temp_dir(tmp_path, ".out.")
    (stale / "half.onnx").write_text("x")
    pid = dead_pid()
    dead = stale.with_name(stale.name.replace(f"-{os.getpid()}-", f"-{pid}-"))
    stale.rename(dead)
    empty = tmp_path / f".x.nashc-old-{pid}-abc123"
    empty.mkdir()
    live = owned_temp_dir(tmp_path, ".other.")
    user = tmp_path / f".mine.nashc-tmp-{pid}-keep"
    user.mkdir()
    (user / "notes").write_text("no owner file: not nashc's")
    removed = remove_stale(tmp_path)
    assert sorted(removed) == sorted([dead, empty])
    assert live.is_dir() and user.is_dir() and not dead.exists()
    # the next run beside them removes stale ones too
    dead2 = tmp_path / f".y.nashc-tmp-{pid}-zz"
    dead2.mkdir()
    with atomic_output_dir(tmp_path / "next"):
        pass
    assert not dead2.exists()
