"""FINN hardware layers for the hybrid matrix-vector units: shift and adder MVAUs.

`ShiftMVAU` / `AdderMVAU` (domain ``finn.custom_op.fpgadataflow``) and their HLS
specialisations `ShiftMVAU_hls` / `AdderMVAU_hls` (domain
``finn.custom_op.fpgadataflow.hls``) subclass FINN's `MVAU` / `MVAU_hls`, so folding
(PE/SIMD/MW/MH), `get_exp_cycles`, the weight-memory estimates (`bram_estimation`,
`uram_estimation`, FINN's rules for the same memory width and depth) and FINN's analyses
(`res_estimation`, `exp_cycles_per_layer`, `dataflow_performance`) work on them unchanged.
Importing this module registers the four classes with qonnx's registry
(`add_op_to_domain`) and with FINN's own per-domain tables (which `SpecializeLayers`
consults to find an ``_hls`` variant).

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

There is no HLS/RTL implementation of these layers yet: every code-generation entry
point raises `NashcError`, so a synthesis attempt fails loudly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls
from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU
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
    "HYBRID_HW_OP_TYPES",
    "is_hybrid_hw_node",
    "shift_word_bits",
    "register_hw_layers",
]

HW_DOMAIN = "finn.custom_op.fpgadataflow"
HLS_DOMAIN = "finn.custom_op.fpgadataflow.hls"
HYBRID_HW_OP_TYPES = ("ShiftMVAU", "AdderMVAU", "ShiftMVAU_hls", "AdderMVAU_hls")

#: Rows of the input processed per numpy step of the adder execution (bounds memory).
_ADDER_CHUNK = 256


class HybridLayerError(NashcError):
    """A hybrid hardware layer is misconfigured or asked for code it cannot generate."""


def is_hybrid_hw_node(node: Any) -> bool:
    """True for nashc's hybrid MVAU nodes (abstract or HLS)."""
    return node.domain in (HW_DOMAIN, HLS_DOMAIN) and node.op_type in HYBRID_HW_OP_TYPES


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
        node = self.onnx_node  # type: ignore[attr-defined]
        x = np.asarray(context[node.input[0]], dtype=np.float64)
        x = x.reshape(self.get_normal_input_shape())  # type: ignore[attr-defined]
        w = np.asarray(context[node.input[1]], dtype=np.float64)
        acc = self._accumulate(x, w)
        result = acc
        if self.get_nodeattr("noActivation") == 0:  # type: ignore[attr-defined]
            thr = np.asarray(context[node.input[2]])
            odt_is_bipolar = self.get_nodeattr("outputDataType") == "BIPOLAR"  # type: ignore
            out_scale = 2 if odt_is_bipolar else 1
            out_bias = -1 if odt_is_bipolar else self.get_nodeattr("ActVal")  # type: ignore
            # channels last (MH is the last axis) for any rank; FINN's MVAU transposes
            # 4D NHWC to NCHW and back, which is the same
            result = multithreshold(result, thr, out_scale, out_bias, channels_last=True)
        oshape = context[node.output[0]].shape
        context[node.output[0]] = np.asarray(result, dtype=np.float32).reshape(oshape)

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
          its share of the adder tree and FINN's routing factor c1 = 1.1: for shift a
          barrel shifter (``ceil(ceil(log2(E+1))/2)`` LUT levels of 4:1 muxes over
          ``A + E`` bits, ``E = 2^(W-1)-1``), a conditional negation (``A + E``) and
          ``2 (A + E)`` of adder tree; for adder a ``max(A, W)+1``-bit subtractor, an
          absolute value (conditional negation) of the same width and ``2 (max(A,W)+1)``
          of adder tree. No multiplier, no DSP.
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
        raise HybridLayerError(
            f"{self._where()}: {what}: nashc's {self.kind} matrix-vector unit has no HLS/RTL "
            "implementation yet (estimates and python execution only); it cannot be "
            "simulated or synthesised")

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


def register_hw_layers() -> None:
    """Registers the four classes in qonnx's registry and FINN's domain tables, so that
    FINN's transformations and analyses (and qonnx's `getCustomOp`) find them. Idempotent;
    called by nashc's functions that hand graphs to FINN (`lower_to_hw`, `estimate`,
    `verify_dataflow`, the folding passes, `InferHybridMVAU`); call it before using FINN
    on a saved graph with these layers in a flow of your own."""
    import finn.custom_op.fpgadataflow as fdf
    import finn.custom_op.fpgadataflow.hls as fhls

    for cls in (ShiftMVAU, AdderMVAU):
        add_op_to_domain(HW_DOMAIN, cls)
        fdf.custom_op[cls.__name__] = cls
    for hcls in (ShiftMVAU_hls, AdderMVAU_hls):
        add_op_to_domain(HLS_DOMAIN, hcls)
        fhls.custom_op[hcls.__name__] = hcls
