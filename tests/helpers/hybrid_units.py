"""One-node FINN graphs of nashc's hybrid hardware layers (ShiftMVAU / AdderMVAU), for
the tests of their python execution, estimates, RTL and FINN flows; and the numpy
reference they are checked against."""

from __future__ import annotations

from typing import Literal

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from nashc.targets.hw_layers import HLS_DOMAIN, HW_DOMAIN, register_hw_layers, shift_word_bits

register_hw_layers()  # as nashc's functions do before handing graphs to FINN

#: Threshold sets of a unit with an activation:
#: "uint2": 3 integer thresholds per channel inside the accumulator range, UINT2 output;
#: "int3": 7 thresholds per channel, some outside the range and some at half steps (which
#: round up), INT3 output (ActVal -4).
Thresholds = Literal["uint2", "int3"] | None


def hybrid_weights(kind: str, bits: int, mw: int, mh: int, rng: np.random.Generator,
                   max_exp: int = 9) -> np.ndarray:
    """Random (mw, mh) integer weights: adder weights of `bits` bits; shift weights
    sign * 2^e with e below min(2^(bits-1) - 1, max_exp) (trained layers use few)."""
    if kind == "adder":
        return rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(mw, mh)).astype(float)
    e = rng.integers(0, min(2 ** (bits - 1) - 1, max_exp), size=(mw, mh))
    sign = rng.choice([-1.0, 0.0, 1.0], size=(mw, mh))
    return sign * np.exp2(e)


def hybrid_unit(kind: str, bits: int, pe: int, simd: int, *, mw: int = 12, mh: int = 8,
                nv: int = 3, thresholds: Thresholds = None, signed_x: bool = False,
                seed: int = 0, backend: Literal["hls", "rtl", ""] = "hls",
                max_exp: int = 9) -> tuple[ModelWrapper, np.ndarray, np.ndarray | None]:
    """One hybrid unit x: (1, nv, mw) -> y: (1, nv, mh) with random integer weights (and
    thresholds), as ``ShiftMVAU``/``AdderMVAU`` + ``_hls``/``_rtl`` (or the generic op for
    ``backend=""``); returns (model, weights, thresholds or None)."""
    rng = np.random.default_rng(seed)
    idt = DataType[f"INT{bits}" if signed_x else f"UINT{bits}"]
    w = hybrid_weights(kind, bits, mw, mh, rng, max_exp)
    wdt = DataType[f"INT{shift_word_bits(w)}"] if kind == "shift" else DataType[f"INT{bits}"]
    op = ("ShiftMVAU" if kind == "shift" else "AdderMVAU") + (f"_{backend}" if backend else "")
    domain = {"": HW_DOMAIN, "hls": HLS_DOMAIN, "rtl": HW_DOMAIN + ".rtl"}[backend]
    ins = ["x", "w"] + (["t"] if thresholds else [])
    odt = {None: "INT32", "uint2": "UINT2", "int3": "INT3"}[thresholds]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, nv, mw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, nv, mh])
    node = helper.make_node(op, ins, ["y"], domain=domain, backend="fpgadataflow",
                            MW=mw, MH=mh, PE=pe, SIMD=simd, inputDataType=idt.name,
                            weightDataType=wdt.name, outputDataType=odt,
                            noActivation=0 if thresholds else 1, numInputVectors=[1, nv],
                            ActVal=-4 if thresholds == "int3" else 0, name=op + "_0")
    model = ModelWrapper(qonnx_make_model(helper.make_graph([node], "g", [x], [y])))
    model.set_initializer("w", w.astype(np.float32))
    model.set_tensor_datatype("x", idt)
    model.set_tensor_datatype("w", wdt)
    inst = getCustomOp(model.graph.node[0])
    lo, hi = inst.acc_range(w)
    t = None
    if thresholds == "int3":
        t = np.sort(rng.integers(int(lo) - 2, int(hi) + 3, size=(mh, 7)), axis=1)
        t = t + rng.choice([0.0, 0.5], size=t.shape)
    elif thresholds == "uint2":
        t = np.sort(rng.integers(int(lo), int(hi) + 1, size=(mh, 3)), axis=1).astype(float)
    if t is not None:
        model.set_initializer("t", t.astype(np.float32))
    inst.minimize_accumulator_width(model)
    return model, w, (model.get_initializer("t") if t is not None else None)


def hybrid_reference(kind: str, x: np.ndarray, w: np.ndarray,
                     t: np.ndarray | None) -> np.ndarray:
    """What the unit computes, in int64: ``x @ w`` (shift) or ``-sum |x - w|`` (adder),
    then, when `t`, the number of thresholds each accumulator reaches (``acc >= t``;
    ActVal not added)."""
    x = x.astype(np.int64)
    wi = w.astype(np.int64)
    if kind == "adder":
        acc = -np.abs(x[..., :, None] - wi[None, None]).sum(axis=-2)
    else:
        acc = x @ wi
    if t is None:
        return acc.astype(np.float64)
    return (acc[..., None] >= np.ceil(t).astype(np.int64)[None, None]).sum(axis=-1) \
        .astype(np.float64)
