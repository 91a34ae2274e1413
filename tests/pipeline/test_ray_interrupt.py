"""Ctrl-C of `nashc compile --executor ray` (issue 12; nashc/executor.py, docs/cluster.md),
as a terminal sends it: SIGINT to the command's process group. Before any candidate is
scored the run stops: exit 130, one line, nothing written, no temporary directory; after
some are scored the search stops and the run goes on with them (exit 0, the report says
the search was interrupted). Either way no process of the local Ray the run started (GCS,
raylet, the `ray::` workers) is left: every process of the command's session is recorded
by PID (and start time) while it runs and must be gone after it exits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = [pytest.mark.slow]
TIMEOUT = 300

#: conv candidates (a second or so each to build and score) so that the first batch of
#: 16 takes seconds on 2 Ray workers; a space of 7 x 7 x 3 x 3
NASH = """network small {
  input 3x16x16 uint8
  weights int4
  activations uint4
  conv c0 out 16 kernel 3
  conv c1 out 32 kernel 3 stride 2
  conv c2 out 32 kernel 3
  pool g global avg
  fc head out 10 weights int8
}
space {
  wbits c0, c1 in {2, 3, 4, 5, 6, 7, 8}
  abits c0, c1 in {2, 3, 4, 5, 6, 7, 8}
  op c1, c2 in {conv, shift, adder}
  fix head
}
hardware {
  target u250
  clock 200 MHz
}
search {
  strategy random samples 400
  keep pareto 2
  seed 0
}
"""


def _start(args: list[str], cwd: Path, env_dirs: dict[str, Path]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{k: str(v) for k, v in env_dirs.items()})
    env.pop("NASHC_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "nashc.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=open(cwd / "stderr.txt", "w"),
                            text=True, start_new_session=True)


def _session(sid: int) -> dict[int, tuple[str, str]]:
    """PID -> (start time in clock ticks, command line) of the live processes of session
    `sid` (the command and everything it started: Ray's GCS, raylet and workers)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out[int(entry.name)] = (fields[19], cmd.strip())
    return out


def _alive(recorded: dict[int, tuple[str, str]]) -> list[str]:
    """The recorded processes still running (same PID and start time, not a zombie)."""
    left = []
    for pid, (start, cmd) in recorded.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            left.append(f"{pid} {cmd[:120]}")
    return left


def _run_and_interrupt(tmp_path: Path, ready, quiet: bool):  # type: ignore[no-untyped-def]
    """Starts the compile, waits until `ready(stderr, session)` holds, sends SIGINT to its
    process group; returns (exit code, stderr, recorded session processes)."""
    src = tmp_path / "small.nash"
    src.write_text(NASH)
    ray_tmp = Path(tempfile.mkdtemp(prefix="nr"))  # Ray's socket paths must stay short
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    args = ["compile", str(src), "-o", str(tmp_path / "out"), "--executor", "ray",
            "--jobs", "2"] + (["--quiet"] if quiet else [])
    proc = _start(args, tmp_path, {"RAY_TMPDIR": ray_tmp, "TMPDIR": tmpdir})
    recorded: dict[int, tuple[str, str]] = {}
    try:
        end = time.monotonic() + TIMEOUT
        while True:
            recorded.update(_session(proc.pid))
            err = (tmp_path / "stderr.txt").read_text()
            if ready(err, recorded):
                break
            if proc.poll() is not None:
                pytest.fail(f"the compile ended ({proc.returncode}) first:\n{err[-3000:]}")
            if time.monotonic() > end:
                pytest.fail("timed out waiting for the search")
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        proc.communicate(timeout=TIMEOUT)
        deadline = time.monotonic() + 30  # Ray's processes stop after the driver's exit
        while _alive(recorded) and time.monotonic() < deadline:
            time.sleep(0.2)
        return proc.returncode, (tmp_path / "stderr.txt").read_text(), recorded
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _workers(recorded: dict[int, tuple[str, str]]) -> list[int]:
    """Ray's worker processes (``ray::IDLE``, ``ray::_ray_call``), not its agents."""
    return [pid for pid, (_, cmd) in recorded.items()
            if cmd.startswith("ray::") and "Agent" not in cmd]


def _ray_started(recorded: dict[int, tuple[str, str]]) -> bool:
    return any("raylet" in cmd for _, cmd in recorded.values())


def _no_nashc_temps(tmp_path: Path) -> None:
    assert [p.name for p in tmp_path.iterdir() if ".nashc-" in p.name] == []
    # nashc's own (FINN work directories nashc_finn_*); torch may leave its caches here
    assert [p.name for p in (tmp_path / "tmp").iterdir() if "nashc" in p.name] == []


@pytest.mark.parametrize("when", ["ray_starting", "workers_started"])
def test_ctrl_c_before_any_candidate_exits_130_and_stops_ray(tmp_path: Path,
                                                             when: str) -> None:
    """While Ray starts (its raylet is up, `ray.init` not returned), or once its workers
    run but before the first batch of candidates is scored."""
    ready = ((lambda err, rec: _ray_started(rec)) if when == "ray_starting" else
             (lambda err, rec: len(_workers(rec)) >= 1))
    code, err, recorded = _run_and_interrupt(tmp_path, ready, quiet=True)
    assert code == 130, err[-3000:]
    assert err.strip() == "nashc compile: interrupted", err[-3000:]  # one line, no noise
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not (tmp_path / "out").exists()
    _no_nashc_temps(tmp_path)
    assert any("gcs_server" in cmd or "raylet" in cmd for _, cmd in recorded.values())
    assert _alive(recorded) == []


def test_ctrl_c_after_some_candidates_keeps_them_and_stops_ray(tmp_path: Path) -> None:
    def scored(err: str, rec: dict[int, tuple[str, str]]) -> bool:
        return any(line.split("search: ")[-1].split("/")[0].isdigit()
                   for line in err.splitlines() if "candidates, " in line)

    code, err, recorded = _run_and_interrupt(tmp_path, scored, quiet=False)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "search stopped early: interrupted" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["search"]["interrupted"] is True
    assert report["search"]["stop_reason"] == "interrupted"
    assert 0 < report["search"]["candidates_evaluated"] < 400
    assert report["golden"]["ok"] is True
    _no_nashc_temps(tmp_path)
    assert _workers(recorded), "no ray:: worker process was seen"
    assert _alive(recorded) == []
