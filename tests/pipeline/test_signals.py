"""Signals during a run (issue 12): SIGTERM and Ctrl-C unwind with one line and leave no
temporary directory; after SIGKILL the next run removes what the killed one left.
The commands run as real processes (`python -m nashc.cli`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.nash import tiny_fc

from nashc.targets.outdir import atomic_output_dir

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "tfc_digits_w4a4.onnx"
TIMEOUT = 240


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NASHC_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "nashc.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(cond, proc: subprocess.Popen[str], what: str) -> None:
    end = time.monotonic() + TIMEOUT
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended ({proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def temps(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".nashc-" in p.name]


def in_finn_stage(parent: Path) -> bool:
    return any((t / "_finn").exists() for t in temps(parent))


def workers(pid: int) -> list[int]:
    """The pool's worker processes of `pid` (spawned: ``... spawn_main ...`` command
    lines; multiprocessing's resource tracker is not one)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmd:
                out.append(int(entry.name))
    return out


@pytest.mark.finn
@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"),
                                           (signal.SIGINT, 130, "interrupted")])
def test_signal_during_finn_stage_cleans_up(tmp_path, sig, code, word):
    out = tmp_path / "est"
    proc = start(["estimate", str(MODEL), "-o", str(out)], tmp_path)
    wait_for(lambda: in_finn_stage(tmp_path), proc, "the FINN stage")
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"nashc estimate: {word}"
    assert temps(tmp_path) == [] and not out.exists()


@pytest.mark.finn
def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "est"
    proc = start(["estimate", str(MODEL), "-o", str(out)], tmp_path)
    wait_for(lambda: in_finn_stage(tmp_path), proc, "the FINN stage")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    left = temps(tmp_path)
    assert len(left) == 1 and (left[0] / "_finn").is_dir()  # SIGKILL cannot clean up
    with atomic_output_dir(tmp_path / "next") as tmp:  # the next run beside it
        (tmp / "x").write_text("x")
    assert temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next"]


def test_ctrl_c_while_search_workers_start_exits_130_with_one_line(tmp_path):
    src = tmp_path / "t.nash"
    src.write_text(tiny_fc().replace("random samples 4", "random samples 200"))
    out = tmp_path / "out"
    proc = start(["compile", str(src), "-o", str(out), "--jobs", "2"], tmp_path)
    wait_for(lambda: len(workers(proc.pid)) >= 2, proc, "the search's worker processes")
    time.sleep(1.0)  # the workers are importing torch now (seconds)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: the whole group
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "nashc compile: interrupted"
    assert temps(tmp_path) == [] and not out.exists()
