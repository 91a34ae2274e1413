"""FINN hardware layers for the hybrid matrix-vector units: shift and adder MVAUs.

`ShiftMVAU` / `AdderMVAU` (domain ``finn.custom_op.fpgadataflow``) and their HLS
specialisations `ShiftMVAU_hls` / `AdderMVAU_hls` (domain
``finn.custom_op.fpgadataflow.hls``) subclass FINN's `MVAU` / `MVAU_hls`, so folding
(PE/SIMD/MW/MH), `get_exp_cycles`, the weight-memory estimates (`bram_estimation`,
`uram_estimation`, FINN's rules for the same memory width and depth) and FINN's analyses
(`res_estimation`, `exp_cycles_per_layer`, `dataflow_performance`) work on them unchanged.
`register_hw_layers` registers the six classes with qonnx's registry
(`add_op_to_domain`) and with FINN's own per-domain tables (which `SpecializeLayers`
consults to find an ``_hls``/``_rtl`` variant).

Arithmetic (python execution, bit-exact; inputs are the integer codes of the
activations, as for FINN's MVAU):

* adder: ``acc[n] = -sum_k |x[k] - W[k, n]|`` with integer weights ``W`` on the input's
  grid, then FINN's MultiThreshold (``noActivation=0``) as MVAU does.
* shift: ``acc = x @ W_int``. The weights of the QONNX op are ``±2^e`` (``e <= 0``); the
  initializer holds them integer-coded, ``W_int = W * 2^-shiftExpMin`` with
  ``shiftExpMin`` the most negative exponent used (an attribute), so ``W_int`` are
  ``0`` or ``±2^k``, ``0 <= k <= -shiftExpMin``. Thresholds are stored scaled by the same
  ``2^-shiftExpMin`` (exact: a power of two) and rounded up (exact for an integer
  accumulator: ``a >= t  <=>  a >= ceil(t)``), so thresholded outputs equal the QONNX
  model's. Without thresholds the output is the integer accumulator, i.e. the QONNX
  value times ``2^-shiftExpMin`` (the lowering puts a ``Mul`` after it).
  The hardware stores each weight as a code word: 1 sign bit plus an exponent code
  (the exponents used, plus one code for zero when a weight is 0). ``weightDataType``
  is ``INT<word bits>``: its width is the stored word (what FINN's memory estimates
  need), not the range of ``W_int``. For DeepShift weights of ``b`` bits the word is
  ``b`` bits, ``b + 1`` only when a layer uses all ``2^(b-1)`` exponents and zeros.

Hardware: `ShiftMVAU_rtl` / `AdderMVAU_rtl` (domain ``finn.custom_op.fpgadataflow.rtl``)
are the RTL specialisations, which FINN's ``SpecializeLayers`` picks by default (a
layer asks for the ``_hls`` one with ``preferred_impl_style="hls"``). They generate
SystemVerilog (`nashc.targets.rtl.generate`: a folded unit with FINN's MVAU stream
interface, weights as code words in a ROM, thresholds applied in the unit as FINN's MVAU
does with ``noActivation=0``), implement FINN's ``generate_hdl``, ``get_rtl_file_list``,
``code_generation_ipi``/``instantiate_ip`` (Vivado IP integrator commands; running them
needs Vivado) and ``execute_node`` in python mode and in ``rtlsim`` mode through
Verilator (`nashc.targets.rtl.sim`; FINN's own rtlsim needs Vivado's xsim). The ROM
replaces FINN's weight streamer: ``mem_mode`` ``internal_embedded`` and
``internal_decoupled`` both become the embedded ROM (``ram_style`` sets its
``rom_style``), ``external``/``dynamic`` weights and runtime-writeable weights are not
supported. The ``_hls`` classes have no HLS code: their code-generation entry points
raise `NashcError`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls
from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend
from qonnx.core.datatype import DataType
from qonnx.custom_op.general.multithreshold import multithreshold
from qonnx.custom_op.registry import add_op_to_domain

from nashc.dsl.errors import NashcError
from nashc.passes.costmodel import LAYER_OVERHEAD_LUTS, ROUTING, lane_luts

__all__ = [
    "HW_DOMAIN",
    "HLS_DOMAIN",
    "HybridLayerError",
    "ShiftMVAU",
    "AdderMVAU",
    "ShiftMVAU_hls",
    "AdderMVAU_hls",
    "ShiftMVAU_rtl",
    "AdderMVAU_rtl",
    "RTL_DOMAIN",
    "HYBRID_HW_OP_TYPES",
    "is_hybrid_hw_node",
    "shift_word_bits",
    "register_hw_layers",
]

HW_DOMAIN = "finn.custom_op.fpgadataflow"
HLS_DOMAIN = "finn.custom_op.fpgadataflow.hls"
RTL_DOMAIN = "finn.custom_op.fpgadataflow.rtl"
HYBRID_HW_OP_TYPES = ("ShiftMVAU", "AdderMVAU", "ShiftMVAU_hls", "AdderMVAU_hls",
                      "ShiftMVAU_rtl", "AdderMVAU_rtl")

#: Rows of the input processed per numpy step of the adder execution (bounds memory).
_ADDER_CHUNK = 256


class HybridLayerError(NashcError):
    """A hybrid hardware layer is misconfigured or asked for code it cannot generate."""


def is_hybrid_hw_node(node: Any) -> bool:
    """True for nashc's hybrid MVAU nodes (abstract, HLS or RTL)."""
    return node.domain in (HW_DOMAIN, HLS_DOMAIN, RTL_DOMAIN) and \
        node.op_type in HYBRID_HW_OP_TYPES


def shift_word_bits(w_int: np.ndarray) -> int:
    """Bits of the stored (sign, exponent code) word for integer-coded shift weights
    ``W_int`` (0 or ``±2^k``, ``k >= 0``): one sign bit plus enough bits for the shift
    codes ``0..max k`` and, if some weight is 0, one zero code. At least 2 bits."""
    mag = np.abs(np.asarray(w_int, dtype=np.float64))
    nz = mag[mag > 0]
    codes = (int(np.log2(nz.max())) + 1) if nz.size else 0
    if nz.size < mag.size:
        codes += 1
    return 1 + max(1, math.ceil(math.log2(max(codes, 2))))


class _HybridMVAU:
    """Shared behaviour of the shift/adder MVAUs (mixed in before FINN's MVAU classes)."""

    kind = "shift"

    # -- attributes and checks -----------------------------------------------------------

    def get_nodeattr_types(self) -> dict[str, Any]:
        attrs = super().get_nodeattr_types()  # type: ignore[misc]
        # shift/adder lanes are LUT-only: FINN's "dsp" choice does not exist here
        attrs["resType"] = ("s", False, "lut", {"lut"})
        # the weights are a ROM (`nashc.targets.rtl`): initialised contents, so no URAM
        # (UltraScale+ URAM has none; FINN pairs "ultra" with runtime-writeable weights)
        # and no runtime-writeable weights
        attrs["ram_style"] = ("s", False, "auto", {"auto", "block", "distributed"})
        attrs["runtime_writeable_weights"] = ("i", False, 0, {0})
        # bit width of the hybrid weights in the QONNX model (DeepShift / AdderNet b)
        attrs["weightBits"] = ("i", False, 0)
        if self.kind == "shift":
            attrs["shiftExpMin"] = ("i", False, 0)
        return attrs

    def _where(self) -> str:
        node = self.onnx_node  # type: ignore[attr-defined]
        return f"node {node.name!r} ({node.op_type})"

    def verify_node(self) -> list[str]:
        """FINN's MVAU checks, plus: resType must be "lut" and no xnor/bipolar mode."""
        from qonnx.util.basic import get_by_name

        res = get_by_name(self.onnx_node.attribute, "resType")  # type: ignore[attr-defined]
        if res is not None and res.s.decode() != "lut":
            raise HybridLayerError(f"{self._where()}: resType={res.s.decode()!r}: "
                                   f"{self.kind} lanes have no multiplier and use LUTs only")
        if self.get_nodeattr("binaryXnorMode"):  # type: ignore[attr-defined]
            raise HybridLayerError(f"{self._where()}: binaryXnorMode is not supported")
        return list(super().verify_node())  # type: ignore[misc]

    # -- python execution ----------------------------------------------------------------

    def _accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def execute_node(self, context: dict[str, np.ndarray], graph: Any) -> None:
        """Python execution (exec_mode ""): the integer accumulator, then thresholds."""
        mode = self.get_nodeattr("exec_mode")  # type: ignore[attr-defined]
        if mode in ("cppsim", "rtlsim"):
            self._no_codegen(f"exec_mode={mode!r}")
        self._python_execute(context, graph)

    def _python_execute(self, context: dict[str, np.ndarray], graph: Any) -> None:
        node = self.onnx_node  # type: ignore[attr-defined]
        x = np.asarray(context[node.input[0]], dtype=np.float64)
        x = x.reshape(self.get_normal_input_shape())  # type: ignore[attr-defined]
        w = np.asarray(context[node.input[1]], dtype=np.float64)
        thr = np.asarray(context[node.input[2]]) if len(node.input) > 2 else None
        result = self.python_outputs(x, w, thr)
        oshape = context[node.output[0]].shape
        context[node.output[0]] = np.asarray(result, dtype=np.float32).reshape(oshape)

    def python_outputs(self, x: np.ndarray, w: np.ndarray,
                       thr: np.ndarray | None) -> np.ndarray:
        """The layer's outputs (..., MH) for integer inputs `x` (..., MW), weights (MW, MH)
        and thresholds (MH or 1, T) (used when noActivation=0): the python execution."""
        acc = self._accumulate(np.asarray(x, np.float64), np.asarray(w, np.float64))
        result = acc
        if self.get_nodeattr("noActivation") == 0:  # type: ignore[attr-defined]
            odt_is_bipolar = self.get_nodeattr("outputDataType") == "BIPOLAR"  # type: ignore
            out_scale = 2 if odt_is_bipolar else 1
            out_bias = -1 if odt_is_bipolar else self.get_nodeattr("ActVal")  # type: ignore
            # channels last (MH is the last axis) for any rank; FINN's MVAU transposes
            # 4D NHWC to NCHW and back, which is the same
            result = multithreshold(result, thr, out_scale, out_bias, channels_last=True)
        return np.asarray(result)

    # -- datatypes -----------------------------------------------------------------------

    def acc_range(self, w: np.ndarray) -> tuple[float, float]:
        """Exact (min, max) of the accumulator over all inputs of inputDataType."""
        idt = DataType[self.get_nodeattr("inputDataType")]  # type: ignore[attr-defined]
        xlo, xhi = float(idt.min()), float(idt.max())
        w = np.asarray(w, dtype=np.float64)
        if self.kind == "adder":
            # per output column: max_k max(|xlo - w|, |xhi - w|); min is 0 if w in range
            far = np.maximum(np.abs(xlo - w), np.abs(xhi - w)).sum(axis=0)
            near = np.where(w < xlo, xlo - w, np.where(w > xhi, w - xhi, 0.0)).sum(axis=0)
            return -float(far.max()), -float(near.min())
        pos = np.where(w > 0, w, 0).sum(axis=0)
        neg = np.where(w < 0, w, 0).sum(axis=0)
        hi = pos * xhi + neg * xlo
        lo = pos * xlo + neg * xhi
        return float(lo.min()), float(hi.max())

    def minimize_accumulator_width(self, model: Any, datatype_only: bool = False) -> DataType:
        """Sets accDataType (and outputDataType without thresholds) to the smallest integer
        type holding the exact accumulator range of this layer's weights."""
        w = model.get_initializer(self.onnx_node.input[1])  # type: ignore[attr-defined]
        lo, hi = self.acc_range(w)
        adt = DataType.get_smallest_possible(hi) if lo >= 0 else \
            DataType.get_smallest_possible(min(lo, -hi - 1))
        self.set_nodeattr("accDataType", adt.name)  # type: ignore[attr-defined]
        if self.get_nodeattr("noActivation"):  # type: ignore[attr-defined]
            self.set_nodeattr("outputDataType", adt.name)  # type: ignore[attr-defined]
        return adt

    def minimize_weight_bit_width(self, model: Any, datatype_only: bool = False) -> DataType:
        """Keeps weightDataType: it is the stored code word, fixed at conversion."""
        return DataType[self.get_nodeattr("weightDataType")]  # type: ignore[attr-defined]

    # -- resources -----------------------------------------------------------------------

    def _acc_bits(self) -> int:
        """Accumulator width: accDataType when set below INT32, else the datapath bound
        (lane operand width + ceil(log2 MW) + 1 for the sign)."""
        adt = DataType[self.get_nodeattr("accDataType")]  # type: ignore[attr-defined]
        mw = int(self.get_nodeattr("MW"))  # type: ignore[attr-defined]
        a = self.get_input_datatype(0).bitwidth()  # type: ignore[attr-defined]
        wb = self.get_input_datatype(1).bitwidth()  # type: ignore[attr-defined]
        operand = a + 2 ** (wb - 1) - 1 if self.kind == "shift" else max(a, wb) + 1
        bound = operand + math.ceil(math.log2(max(mw, 2))) + 1
        return min(adt.bitwidth(), bound)

    def lut_estimation(self, fpgapart: str | None = None) -> int:
        """LUTs of the unit, FINN's MVAU_hls model with the hybrid lane datapath.

        ``c0 + P * Q * lane + c1 * P * (acc + thr + comp) + c2`` where

        * ``lane = costmodel.lane_luts(kind, W, A)`` is one SIMD lane of one PE including
          its share of the adder tree: from Yosys synthesis of this unit's RTL PE when
          ``passes/lane_costs.json`` exists (`costmodel.lane_cost_source`), else the
          analytic datapath (shift: barrel shifter over ``A + E`` bits,
          ``E = 2^(W-1)-1``, negation and tree; adder: subtractor, absolute value and
          tree) with FINN's routing factor 1.1. No multiplier, no DSP.
        * ``acc`` = accumulator bits per PE (`_acc_bits`), one LUT per bit on the carry
          chain, as FINN counts it;
        * with thresholds in LUTRAM (``ram_style_thresholds="distributed"``), FINN's terms
          ``thr = (2^B - 1) * acc * ceil(TMEM / 64)`` (threshold storage, B output bits)
          and ``comp = (2^B - 1) * acc`` (comparators); 0 otherwise;
        * ``c0 = 300`` (control) and ``c2 = P * Q * W * ceil(WMEM / 64)`` when the weights
          are in LUTRAM (``ram_style="distributed"``, or internal_embedded with
          WMEM <= 128), FINN's weight-LUTRAM term; W is the stored weight word.
        """
        P = int(self.get_nodeattr("PE"))  # type: ignore[attr-defined]
        Q = int(self.get_nodeattr("SIMD"))  # type: ignore[attr-defined]
        W = self.get_input_datatype(1).bitwidth()  # type: ignore[attr-defined]
        A = self.get_input_datatype(0).bitwidth()  # type: ignore[attr-defined]
        mmode = self.get_nodeattr("mem_mode")  # type: ignore[attr-defined]
        mstyle = self.get_nodeattr("ram_style")  # type: ignore[attr-defined]
        wmem = self.calc_wmem()  # type: ignore[attr-defined]
        c2 = 0
        if (mmode == "internal_decoupled" and mstyle == "distributed") or (
                mmode == "internal_embedded" and wmem <= 128):
            c2 = (P * Q * W) * math.ceil(wmem / 64)
        lanes = P * Q * lane_luts(self.kind, W, A)  # type: ignore[arg-type]
        acc_bits = self._acc_bits()
        thr_luts = comp_luts = 0
        noact = self.get_nodeattr("noActivation")  # type: ignore[attr-defined]
        tstyle = self.get_nodeattr("ram_style_thresholds")  # type: ignore[attr-defined]
        if noact == 0 and tstyle == "distributed":
            B = self.get_output_datatype().bitwidth()  # type: ignore[attr-defined]
            thr_luts = (2**B - 1) * acc_bits * math.ceil(self.calc_tmem() / 64)  # type: ignore
            comp_luts = (2**B - 1) * acc_bits
        return int(LAYER_OVERHEAD_LUTS + lanes
                   + ROUTING * P * (acc_bits + thr_luts + comp_luts) + c2)

    def dsp_estimation(self, fpgapart: str | None = None) -> int:
        """Always 0: a shift lane is a mux tree plus negation, an adder lane a subtractor
        plus absolute value; neither has a multiplier to map to a DSP slice."""
        return 0

    # -- no code generation --------------------------------------------------------------

    def _no_codegen(self, what: str) -> Any:
        op = "ShiftMVAU_rtl" if self.kind == "shift" else "AdderMVAU_rtl"
        raise HybridLayerError(
            f"{self._where()}: {what}: nashc's {self.kind} matrix-vector unit has no HLS/RTL "
            f"code in this variant (estimates and python execution only); its hardware is "
            f"{op} (FINN's SpecializeLayers picks it unless preferred_impl_style='hls')")

    def code_generation_ipgen(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("HLS IP generation")

    def code_generation_cppsim(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("C++ simulation code generation")

    def code_generation_ipi(self, *args: Any, **kwargs: Any) -> Any:
        return self._no_codegen("IP integrator code generation")

    def ipgen_singlenode_code(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("HLS synthesis")

    def compile_singlenode_code(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("C++ simulation build")

    def generate_params(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("parameter file generation")

    def make_weight_file(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("weight file generation")

    def get_template_param_values(self) -> Any:
        return self._no_codegen("HLS template parameters")

    def instantiate_ip(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("IP instantiation")

    def prepare_rtlsim(self, *args: Any, **kwargs: Any) -> None:
        self._no_codegen("RTL simulation")

    def get_rtlsim(self, *args: Any, **kwargs: Any) -> Any:
        return self._no_codegen("RTL simulation")


class _ShiftArith(_HybridMVAU):
    kind = "shift"

    def _accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``x @ W_int``: integer codes of activations times integer-coded ±2^k weights
        (exact in float64 below 2^53)."""
        return np.matmul(x, w)


class _AdderArith(_HybridMVAU):
    kind = "adder"

    def _accumulate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``-sum_k |x[..., k] - W[k, n]|`` in chunks of rows (exact integers)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        out = np.empty((x2.shape[0], w.shape[1]), dtype=np.float64)
        for i in range(0, x2.shape[0], _ADDER_CHUNK):
            blk = x2[i:i + _ADDER_CHUNK, :, None]
            out[i:i + _ADDER_CHUNK] = -np.abs(blk - w[None, :, :]).sum(axis=1)
        return out.reshape(*lead, w.shape[1])


class ShiftMVAU(_ShiftArith, MVAU):
    """Matrix-vector unit whose weights are signed powers of two: each lane shifts the
    input and adds it into the tree (DeepShift). Abstract FINN layer; see module doc."""


class AdderMVAU(_AdderArith, MVAU):
    """Matrix-vector unit computing ``-sum |x - w|`` (AdderNet): each lane subtracts,
    takes the absolute value and adds it into the tree. Abstract FINN layer."""


class ShiftMVAU_hls(_ShiftArith, MVAU_hls):  # noqa: N801 (FINN's naming)
    """HLS-specialised `ShiftMVAU` (estimates and python execution; no code generation)."""


class AdderMVAU_hls(_AdderArith, MVAU_hls):  # noqa: N801 (FINN's naming)
    """HLS-specialised `AdderMVAU` (estimates and python execution; no code generation)."""


class _RtlMVAU:
    """FINN's RTL-backend entry points for the hybrid units (mixed in first)."""

    kind = "shift"

    # -- code generation -----------------------------------------------------------------

    def _attrs(self) -> dict[str, Any]:
        names = ("MW", "MH", "PE", "SIMD", "inputDataType", "weightDataType",
                 "outputDataType", "noActivation", "ActVal", "ram_style")
        return {n: self.get_nodeattr(n) for n in names}  # type: ignore[attr-defined]

    def rtl_params(self, w_int: np.ndarray, thresholds: np.ndarray | None) -> Any:
        """`nashc.targets.rtl.generate.MvauParams` of this layer for these weights."""
        from nashc.targets.rtl.generate import mvau_params

        mem_mode = self.get_nodeattr("mem_mode")  # type: ignore[attr-defined]
        if mem_mode not in ("internal_embedded", "internal_decoupled"):
            raise HybridLayerError(f"{self._where()}: mem_mode={mem_mode!r}: the RTL unit "  # type: ignore[attr-defined]
                                   "keeps its weights in a ROM (internal_embedded or "
                                   "internal_decoupled)")
        if self.get_nodeattr("runtime_writeable_weights"):  # type: ignore[attr-defined]
            raise HybridLayerError(f"{self._where()}: runtime-writeable weights are not "  # type: ignore[attr-defined]
                                   "supported by the RTL unit (its weights are a ROM)")
        return mvau_params(self.kind, self._attrs(), w_int, thresholds,
                           self._where())  # type: ignore[attr-defined]

    def write_rtl(self, model: Any, out_dir: str | Path, top: str | None = None,
                  absolute_rom_paths: bool = False) -> list[Path]:
        """Writes this layer's SystemVerilog and ROM files into `out_dir` (see
        `nashc.targets.rtl.generate.write_mvau`); returns the SystemVerilog files."""
        from nashc.targets.rtl.generate import hw_thresholds, write_mvau

        node = self.onnx_node  # type: ignore[attr-defined]
        w = model.get_initializer(node.input[1])
        t = model.get_initializer(node.input[2]) if len(node.input) > 2 else None
        if w is None:
            raise HybridLayerError(f"{self._where()}: the weights are not an initializer")  # type: ignore[attr-defined]
        p = self.rtl_params(w, t)
        idt = self.get_input_datatype(0)  # type: ignore[attr-defined]
        thr = None if p.no_act or t is None else hw_thresholds(p, t, w, idt)
        name = top or self.get_verilog_top_module_name()  # type: ignore[attr-defined]
        return write_mvau(p, w, thr, Path(out_dir), name, absolute_rom_paths)

    def generate_hdl(self, model: Any, fpgapart: str, clk: float) -> None:
        """FINN's RTL code generation: the unit's SystemVerilog and ROM files into
        ``code_gen_dir_ipgen`` (ROM files named by absolute path)."""
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")  # type: ignore[attr-defined]
        top = self.get_verilog_top_module_name()  # type: ignore[attr-defined]
        self.write_rtl(model, code_gen_dir, top, absolute_rom_paths=True)
        self.set_nodeattr("gen_top_module", top)  # type: ignore[attr-defined]
        self.set_nodeattr("ipgen_path", code_gen_dir)  # type: ignore[attr-defined]
        self.set_nodeattr("ip_path", code_gen_dir)  # type: ignore[attr-defined]

    def code_generation_ipgen(self, model: Any, fpgapart: str, clk: float) -> None:
        self.generate_hdl(model, fpgapart, clk)

    def generate_params(self, model: Any, path: str) -> None:
        """The ROM files are written with the HDL (`generate_hdl`)."""
        self.write_rtl(model, path, absolute_rom_paths=True)

    def make_weight_file(self, weights: Any, weight_file_mode: str,
                         weight_file_name: str) -> None:
        raise HybridLayerError(f"{self._where()}: FINN weight file mode "  # type: ignore[attr-defined]
                               f"{weight_file_mode!r}: the RTL unit's weights are code "
                               "words in its ROM file (written by generate_hdl)")

    def get_rtl_file_list(self, abspath: bool = False) -> list[Any]:
        """The unit's SystemVerilog files in compilation order (core, then top)."""
        from nashc.targets.rtl.generate import CORE_FILES

        top = (self.get_nodeattr("gen_top_module")  # type: ignore[attr-defined]
               or self.get_verilog_top_module_name())  # type: ignore[attr-defined]
        names = [*CORE_FILES, f"{top}.sv"]
        if not abspath:
            return names
        d = Path(self.get_nodeattr("code_gen_dir_ipgen"))  # type: ignore[attr-defined]
        return [d / n for n in names]

    def get_verilog_paths(self) -> list[str]:
        return [str(self.get_nodeattr("code_gen_dir_ipgen"))]  # type: ignore[attr-defined]

    def instantiate_ip(self, cmd: list[str]) -> None:
        """Vivado IP-integrator commands: add the sources, create the module cell."""
        for f in self.get_rtl_file_list(abspath=True):
            cmd.append(f"add_files -norecurse {f}")
        cmd.append("create_bd_cell -type module -reference "
                   f"{self.get_nodeattr('gen_top_module')} "  # type: ignore[attr-defined]
                   f"{self.onnx_node.name}")  # type: ignore[attr-defined]

    def code_generation_ipi(self) -> list[str]:
        """The weights are inside the unit (a ROM), so no weight streamer: the unit's
        own cell, for every supported mem_mode."""
        cmd: list[str] = []
        self.instantiate_ip(cmd)
        return cmd

    # -- simulation ----------------------------------------------------------------------

    def prepare_rtlsim(self, behav: bool = False) -> None:
        """Builds the Verilator simulation of the generated unit (cached by content) and
        stores the executable in ``rtlsim_so``."""
        from nashc.targets.rtl.sim import build

        files = [Path(f) for f in self.get_rtl_file_list(abspath=True)]
        if not all(f.exists() for f in files):
            raise HybridLayerError(f"{self._where()}: no generated RTL in "  # type: ignore[attr-defined]
                                   f"{self.get_nodeattr('code_gen_dir_ipgen')!r}; run "  # type: ignore[attr-defined]
                                   "FINN's PrepareIP first")
        exe = build(files, self.get_nodeattr("gen_top_module"))  # type: ignore[attr-defined]
        self.set_nodeattr("rtlsim_so", str(exe))  # type: ignore[attr-defined]

    def get_rtlsim(self) -> Any:
        exe = Path(self.get_nodeattr("rtlsim_so"))  # type: ignore[attr-defined]
        if not exe.is_file():
            self.prepare_rtlsim()
            exe = Path(self.get_nodeattr("rtlsim_so"))  # type: ignore[attr-defined]
        return exe

    def close_rtlsim(self, sim: Any) -> None:
        return None

    def execute_node(self, context: dict[str, np.ndarray], graph: Any) -> None:
        """exec_mode "rtlsim": the generated RTL in Verilator (inputs as FINN's MVAU
        streams them); any other mode: the python execution."""
        if self.get_nodeattr("exec_mode") != "rtlsim":  # type: ignore[attr-defined]
            _HybridMVAU._python_execute(self, context, graph)  # type: ignore[arg-type]
            return
        from nashc.targets.rtl.generate import pack_beats, unpack_beats
        from nashc.targets.rtl.sim import run_stream

        node = self.onnx_node  # type: ignore[attr-defined]
        mw = int(self.get_nodeattr("MW"))  # type: ignore[attr-defined]
        mh = int(self.get_nodeattr("MH"))  # type: ignore[attr-defined]
        simd = int(self.get_nodeattr("SIMD"))  # type: ignore[attr-defined]
        pe = int(self.get_nodeattr("PE"))  # type: ignore[attr-defined]
        idt = self.get_input_datatype(0)  # type: ignore[attr-defined]
        odt = self.get_output_datatype()  # type: ignore[attr-defined]
        x = np.asarray(context[node.input[0]], dtype=np.float64).reshape(-1, mw)
        if np.any(x != np.round(x)) or x.min() < idt.min() or x.max() > idt.max():
            raise HybridLayerError(f"{self._where()}: rtlsim input is not in "  # type: ignore[attr-defined]
                                   f"{idt.name}")
        n = x.shape[0]
        beats = pack_beats(x.astype(np.int64).reshape(n * (mw // simd), simd),
                           idt.bitwidth(), idt.signed())
        exe = self.get_rtlsim()
        rundir = Path(self.get_nodeattr("code_gen_dir_ipgen"))  # type: ignore[attr-defined]
        words, cycles = run_stream(exe, rundir, beats, n * (mh // pe))
        y = unpack_beats(words, pe, odt.bitwidth(), odt.signed()).reshape(n, mh)
        self.set_nodeattr("cycles_rtlsim", int(cycles))  # type: ignore[attr-defined]
        oshape = context[node.output[0]].shape
        context[node.output[0]] = y.astype(np.float32).reshape(oshape)


class ShiftMVAU_rtl(_RtlMVAU, _ShiftArith, MVAU, RTLBackend):  # noqa: N801 (FINN's naming)
    """RTL-specialised `ShiftMVAU`: generated SystemVerilog, Verilator rtlsim."""

    kind = "shift"


class AdderMVAU_rtl(_RtlMVAU, _AdderArith, MVAU, RTLBackend):  # noqa: N801 (FINN's naming)
    """RTL-specialised `AdderMVAU`: generated SystemVerilog, Verilator rtlsim."""

    kind = "adder"


def register_hw_layers() -> None:
    """Registers the six classes in qonnx's registry and FINN's domain tables, so that
    FINN's transformations and analyses (and qonnx's `getCustomOp`) find them. Idempotent;
    called by nashc's functions that hand graphs to FINN (`lower_to_hw`, `estimate`,
    `verify_dataflow`, the folding passes, `InferHybridMVAU`); call it before using FINN
    on a saved graph with these layers in a flow of your own."""
    import finn.custom_op.fpgadataflow as fdf
    import finn.custom_op.fpgadataflow.hls as fhls
    import finn.custom_op.fpgadataflow.rtl as frtl

    for cls in (ShiftMVAU, AdderMVAU):
        add_op_to_domain(HW_DOMAIN, cls)
        fdf.custom_op[cls.__name__] = cls
    for hcls in (ShiftMVAU_hls, AdderMVAU_hls):
        add_op_to_domain(HLS_DOMAIN, hcls)
        fhls.custom_op[hcls.__name__] = hcls
    for rcls in (ShiftMVAU_rtl, AdderMVAU_rtl):
        add_op_to_domain(RTL_DOMAIN, rcls)
        frtl.custom_op[rcls.__name__] = rcls
