"""SystemVerilog for nashc's hybrid matrix-vector units (shift and adder MVAUs).

`mvau_params` reads a layer's FINN attributes and weights into the parameters of the
RTL core (``hdl/nashc_mvau.sv``, datapath ``hdl/nashc_mvau_pe.sv``); `write_mvau`
writes a top module with FINN's port names (``ap_clk``, ``ap_rst_n``, ``in0_V_*``,
``out0_V_*``), the two core files and the ROM init files:

* weights: ``WMEM = (MW / SIMD) * (MH / PE)`` lines of ``PE * SIMD`` code words
  (address ``nf * SF + sf``; PE ``p``, lane ``s`` at bits ``[(p*SIMD + s)*WB +: WB]``),
  hexadecimal for ``$readmemh``. Shift: ``WB = weightDataType`` bits, one sign bit and
  a ``WB - 1``-bit exponent code: code ``k`` (``0 <= k <= KMAX``) is ``±2^k``, code
  ``KMAX + 1`` is zero; ``KMAX`` is the largest exponent of the layer's integer-coded
  weights (``shiftExpMin`` shifts them to ``k >= 0``). Adder: the integer weights in
  ``weightDataType``'s two's complement (or unsigned) bits.
* thresholds (``noActivation = 0``): ``MH / PE`` lines of ``PE * T`` signed thresholds
  of ``TW`` bits, rounded up to integers and clipped to the accumulator range plus one
  (exact: the accumulator is an integer), as FINN's MVAU applies MultiThreshold.

Raises `RtlError` (a `NashcError`) naming the node when a layer cannot be expressed:
non-integer or bipolar activations, bipolar outputs, weights outside their code word,
an accumulator that does not fit ``outputDataType``, MW/MH not divisible by SIMD/PE.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from nashc.dsl.errors import NashcError

__all__ = [
    "RtlError",
    "MvauParams",
    "CORE_FILES",
    "core_file",
    "mvau_params",
    "weight_rom",
    "threshold_rom",
    "top_module_text",
    "write_mvau",
    "pack_beats",
    "unpack_beats",
]

#: The static SystemVerilog files of the core, in compilation order.
CORE_FILES = ("nashc_rom.sv", "nashc_mvau_pe.sv", "nashc_mvau.sv")

KIND_CODES = {"shift": 0, "adder": 1, "mult": 2}


class RtlError(NashcError):
    """A layer cannot be expressed by nashc's RTL matrix-vector unit."""


def core_file(name: str) -> Path:
    """Path of a file in ``targets/rtl/hdl`` (installed as package data)."""
    return Path(str(resources.files("nashc.targets.rtl") / "hdl" / name))


def _roundup(n: int, m: int) -> int:
    return -(-n // m) * m


def _signed_bits(lo: int, hi: int) -> int:
    """Bits of the smallest two's complement type holding [lo, hi]."""
    b = 1
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b


@dataclass(frozen=True)
class MvauParams:
    """Parameters of ``nashc_mvau`` (see ``hdl/nashc_mvau.sv``); widths in bits."""

    kind: str  # "shift" | "adder"
    mw: int
    mh: int
    pe: int
    simd: int
    abits: int
    signed_x: bool
    wbits: int  # stored word: shift code word or adder integer
    signed_w: bool
    kmax: int  # shift: largest exponent code; 0 for adder
    acc_w: int  # signed accumulator inside the core
    no_act: bool
    t: int  # thresholds per channel (1 when no_act, unused)
    tw: int  # threshold bits (signed)
    obits: int  # output bits per PE
    signed_o: bool
    actval: int
    in_w: int  # padded stream widths (FINN's get_instream_width_padded)
    out_w: int
    rom_style: str = "auto"  # FINN's ram_style: "auto" | "block" | "distributed"

    @property
    def sf(self) -> int:
        return self.mw // self.simd

    @property
    def nf(self) -> int:
        return self.mh // self.pe

    def verilog_params(self) -> dict[str, int]:
        return {
            "KIND": KIND_CODES[self.kind], "MW": self.mw, "MH": self.mh, "PE": self.pe,
            "SIMD": self.simd, "A": self.abits, "SIGNED_X": int(self.signed_x),
            "WB": self.wbits, "SIGNED_W": int(self.signed_w), "KMAX": self.kmax,
            "ACC_W": self.acc_w, "NO_ACT": int(self.no_act), "T": self.t, "TW": self.tw,
            "O": self.obits, "ACTVAL": self.actval, "IN_W": self.in_w, "OUT_W": self.out_w,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _acc_range(kind: str, w: np.ndarray, xlo: int, xhi: int) -> tuple[int, int]:
    """Exact accumulator range over all inputs in [xlo, xhi] (per column, then extremes)."""
    w = np.asarray(w, dtype=np.int64)
    if kind == "adder":
        far = np.maximum(np.abs(xlo - w), np.abs(xhi - w)).sum(axis=0)
        near = np.where(w < xlo, xlo - w, np.where(w > xhi, w - xhi, 0)).sum(axis=0)
        return -int(far.max()), -int(near.min())
    pos = np.where(w > 0, w, 0).sum(axis=0)
    neg = np.where(w < 0, w, 0).sum(axis=0)
    return int((pos * xlo + neg * xhi).min()), int((pos * xhi + neg * xlo).max())


def mvau_params(kind: str, attrs: dict[str, Any], w_int: np.ndarray,
                thresholds: np.ndarray | None, where: str) -> MvauParams:
    """Core parameters for a layer with FINN MVAU attributes `attrs` (MW, MH, PE, SIMD,
    inputDataType, weightDataType, outputDataType, noActivation, ActVal), integer(-coded)
    weights `w_int` of shape (MW, MH) and thresholds of shape (MH or 1, T) or None.
    `where` names the layer in errors. ``ram_style`` (FINN's, for the ROMs) may be
    auto, block or distributed."""
    if kind not in ("shift", "adder"):
        raise RtlError(f"{where}: unknown kind {kind!r}")
    mw, mh, pe, simd = (int(attrs[k]) for k in ("MW", "MH", "PE", "SIMD"))
    if mw % simd or mh % pe:
        raise RtlError(f"{where}: MW={mw} must be a multiple of SIMD={simd} and "
                       f"MH={mh} of PE={pe}")
    idt = DataType[attrs["inputDataType"]]
    wdt = DataType[attrs["weightDataType"]]
    odt = DataType[attrs["outputDataType"]]
    if not idt.is_integer() or idt.get_canonical_name() == "BIPOLAR":
        raise RtlError(f"{where}: inputDataType {idt.name} is not an integer type; the "
                       "RTL unit takes integer activation codes")
    if odt.get_canonical_name() == "BIPOLAR":
        raise RtlError(f"{where}: BIPOLAR outputs are not supported by the RTL unit")
    w = np.asarray(w_int, dtype=np.float64)
    if w.shape != (mw, mh) or np.any(w != np.round(w)):
        raise RtlError(f"{where}: weights must be integers of shape ({mw}, {mh}), "
                       f"got shape {w.shape}")
    wi = w.astype(np.int64)
    wb = wdt.bitwidth()
    kmax = 0
    signed_w = True
    if kind == "shift":
        mag = np.abs(wi)
        nz = mag[mag > 0]
        if nz.size and np.any(nz & (nz - 1)):
            raise RtlError(f"{where}: shift weights must be 0 or ±2^k")
        kmax = int(np.log2(nz.max())) if nz.size else 0
        codes_needed = kmax + 1 + (1 if nz.size < mag.size else 0)
        if wb < 2 or codes_needed > (1 << (wb - 1)):
            raise RtlError(f"{where}: weightDataType {wdt.name} ({wb}-bit code word) cannot "
                           f"hold a sign and {codes_needed} exponent codes")
    else:
        signed_w = wdt.signed()
        if wi.min() < wdt.min() or wi.max() > wdt.max():
            raise RtlError(f"{where}: adder weights [{wi.min()}, {wi.max()}] outside "
                           f"weightDataType {wdt.name}")
    xlo, xhi = int(idt.min()), int(idt.max())
    lo, hi = _acc_range(kind, wi, xlo, xhi)
    rom_style = str(attrs.get("ram_style", "auto"))
    if rom_style not in ("auto", "block", "distributed"):
        raise RtlError(f"{where}: ram_style={rom_style!r}: the RTL unit keeps its weights "
                       "in a ROM (auto, block or distributed)")
    no_act = bool(int(attrs.get("noActivation", 1)))
    t_count, tw = 1, 2
    if no_act:
        obits = odt.bitwidth()
        if lo < odt.min() or hi > odt.max():
            raise RtlError(f"{where}: the accumulator range [{lo}, {hi}] does not fit "
                           f"outputDataType {odt.name}")
        acc_w = max(_signed_bits(lo, hi), obits) + 1
    else:
        if thresholds is None:
            raise RtlError(f"{where}: noActivation=0 needs a threshold tensor")
        thr = np.asarray(thresholds, dtype=np.float64)
        if thr.ndim != 2 or thr.shape[0] not in (1, mh):
            raise RtlError(f"{where}: thresholds must have shape ({mh} or 1, T), "
                           f"got {thr.shape}")
        t_count = int(thr.shape[1])
        obits = odt.bitwidth()
        acc_w = _signed_bits(lo, hi) + 1
        tw = _signed_bits(lo, hi + 1)
    return MvauParams(
        kind=kind, mw=mw, mh=mh, pe=pe, simd=simd, abits=idt.bitwidth(),
        signed_x=idt.signed(), wbits=wb, signed_w=signed_w, kmax=kmax, acc_w=acc_w,
        no_act=no_act, t=t_count, tw=tw, obits=obits, signed_o=odt.signed(),
        actval=int(attrs.get("ActVal", 0)),
        in_w=_roundup(simd * idt.bitwidth(), 8), out_w=_roundup(pe * obits, 8),
        rom_style=rom_style)


def _code_words(p: MvauParams, w_int: np.ndarray) -> np.ndarray:
    """Per-weight stored words (MW, MH) as non-negative ints of p.wbits bits."""
    wi = np.asarray(w_int, dtype=np.float64).astype(np.int64)
    mask = (1 << p.wbits) - 1
    if p.kind == "adder":
        return wi & mask
    mag = np.abs(wi)
    k = np.where(mag > 0, np.log2(np.maximum(mag, 1)).astype(np.int64), p.kmax + 1)
    sign = (wi < 0).astype(np.int64)
    return (sign << (p.wbits - 1)) | k


def weight_rom(p: MvauParams, w_int: np.ndarray) -> list[int]:
    """The WMEM ROM words (address nf * SF + sf), see the module docstring."""
    words = _code_words(p, w_int)
    rom = []
    for nf in range(p.nf):
        for sf in range(p.sf):
            v = 0
            for pe in range(p.pe):
                for s in range(p.simd):
                    wv = int(words[sf * p.simd + s, nf * p.pe + pe])
                    v |= wv << ((pe * p.simd + s) * p.wbits)
            rom.append(v)
    return rom


def hw_thresholds(p: MvauParams, thresholds: np.ndarray, w_int: np.ndarray,
                  idt: DataType) -> np.ndarray:
    """Integer thresholds (MH, T) as the core compares them: rounded up, clipped to
    [acc_min, acc_max + 1] of this layer (exact for an integer accumulator)."""
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.shape[0] == 1:
        thr = np.repeat(thr, p.mh, axis=0)
    lo, hi = _acc_range(p.kind, np.asarray(w_int, np.float64).astype(np.int64),
                        int(idt.min()), int(idt.max()))
    return np.clip(np.ceil(thr), lo, hi + 1).astype(np.int64)


def threshold_rom(p: MvauParams, thr_int: np.ndarray) -> list[int]:
    """The NF threshold ROM words (see the module docstring)."""
    mask = (1 << p.tw) - 1
    rom = []
    for nf in range(p.nf):
        v = 0
        for pe in range(p.pe):
            for t in range(p.t):
                v |= (int(thr_int[nf * p.pe + pe, t]) & mask) << ((pe * p.t + t) * p.tw)
        rom.append(v)
    return rom


def _mem_text(words: list[int], bits: int) -> str:
    digits = max(1, -(-bits // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def top_module_text(p: MvauParams, top: str, weight_file: str, thresh_file: str) -> str:
    """The top module: FINN's port names, the core with `p`'s parameters."""
    tpl = core_file("top.sv.tpl").read_text()
    params = ",\n".join(f"        .{k}({v})" for k, v in p.verilog_params().items())
    return (tpl.replace("$TOP$", top).replace("$PARAMS$", params)
            .replace("$KIND$", p.kind).replace("$WEIGHT_FILE$", weight_file)
            .replace("$THRESH_FILE$", thresh_file).replace("$ROM_STYLE$", p.rom_style)
            .replace("$IN_W$", str(p.in_w)).replace("$OUT_W$", str(p.out_w)))


def write_mvau(p: MvauParams, w_int: np.ndarray, thr_int: np.ndarray | None,
               out_dir: Path, top: str, absolute_rom_paths: bool = False) -> list[Path]:
    """Writes ``{top}.sv``, the core files and ``{top}_weights.mem`` (and
    ``{top}_thresholds.mem``) into `out_dir`; returns the SystemVerilog files in
    compilation order. The ROM files are named in the top module relative to the
    directory the simulator/synthesis runs in, or absolute with `absolute_rom_paths`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wname, tname = f"{top}_weights.mem", f"{top}_thresholds.mem"
    (out_dir / wname).write_text(_mem_text(weight_rom(p, w_int), p.pe * p.simd * p.wbits))
    if not p.no_act:
        if thr_int is None:
            raise RtlError(f"{top}: thresholds missing")
        (out_dir / tname).write_text(_mem_text(threshold_rom(p, thr_int),
                                               p.pe * p.t * p.tw))
    if absolute_rom_paths:
        wref, tref = str((out_dir / wname).resolve()), str((out_dir / tname).resolve())
    else:
        wref, tref = wname, tname
    files = []
    for name in CORE_FILES:
        dst = out_dir / name
        shutil.copyfile(core_file(name), dst)
        files.append(dst)
    top_path = out_dir / f"{top}.sv"
    top_path.write_text(top_module_text(p, top, wref, tref))
    files.append(top_path)
    return files


def pack_beats(values: np.ndarray, bits: int, signed: bool) -> list[int]:
    """Packs the innermost axis of integer `values` into one int per row, element 0 in
    the least significant bits (FINN's order for AXI-stream words)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1, values.shape[-1])
    mask = (1 << bits) - 1
    out = []
    for row in v:
        word = 0
        for i, e in enumerate(row.tolist()):
            word |= (int(e) & mask) << (i * bits)
        out.append(word)
    return out


def unpack_beats(words: list[int], n: int, bits: int, signed: bool) -> np.ndarray:
    """Inverse of `pack_beats`: (len(words), n) integers."""
    mask = (1 << bits) - 1
    out = np.zeros((len(words), n), dtype=np.int64)
    for r, word in enumerate(words):
        for i in range(n):
            e = (word >> (i * bits)) & mask
            if signed and e >> (bits - 1):
                e -= 1 << bits
            out[r, i] = e
    return out
