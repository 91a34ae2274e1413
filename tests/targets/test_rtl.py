"""Generated RTL of the hybrid units (verification level 4): Verilator simulation ==
the layers' python execution (level 3) bit for bit; FINN's RTL flow on them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.hybrid_units import hybrid_unit
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from nashc.dsl.errors import NashcError
from nashc.targets.rtl.generate import (
    _code_words,
    hw_thresholds,
    mvau_params,
    pack_beats,
    unpack_beats,
)

PART = "xcu250-figd2104-2L-e"


def python_execution(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    node = model.graph.node[0]
    ctx = {"x": x.astype(np.float32), "w": model.get_initializer("w"),
           "y": np.zeros(model.get_tensor_shape("y"), np.float32)}
    if len(node.input) > 2:
        ctx["t"] = model.get_initializer("t")
    getCustomOp(node).execute_node(ctx, model.graph)
    return ctx["y"]


def _params(model: ModelWrapper, kind: str):  # type: ignore[no-untyped-def]
    inst = getCustomOp(model.graph.node[0])
    names = ("MW", "MH", "PE", "SIMD", "inputDataType", "weightDataType", "outputDataType",
             "noActivation", "ActVal")
    attrs = {n: inst.get_nodeattr(n) for n in names}
    t = model.get_initializer("t") if len(model.graph.node[0].input) > 2 else None
    return mvau_params(kind, attrs, model.get_initializer("w"), t, "test node"), t


def _random_x(model: ModelWrapper, seed: int) -> np.ndarray:
    idt = model.get_tensor_datatype("x")
    rng = np.random.default_rng(seed)
    shape = model.get_tensor_shape("x")
    x = rng.integers(int(idt.min()), int(idt.max()) + 1, size=shape)
    x.reshape(-1)[:2] = [idt.min(), idt.max()]  # the extremes once each
    return x.astype(np.float32)


# --- no simulator needed ---------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_shift_code_words_decode_to_the_weights(bits):
    model, w, _ = hybrid_unit("shift", bits, 2, 3)
    p, _ = _params(model, "shift")
    words = _code_words(p, w)
    assert words.max() < 2 ** p.wbits
    sign = np.where(words >> (p.wbits - 1), -1.0, 1.0)
    code = words & ((1 << (p.wbits - 1)) - 1)
    decoded = np.where(code > p.kmax, 0.0, sign * np.exp2(code))
    np.testing.assert_array_equal(decoded, w)
    assert p.kmax == int(np.log2(np.abs(w[w != 0]).max()))
    # the zero code exists and is used
    assert np.any(code > p.kmax)


def test_pack_unpack_roundtrip():
    rng = np.random.default_rng(0)
    v = rng.integers(-8, 8, size=(5, 7))
    np.testing.assert_array_equal(unpack_beats(pack_beats(v, 4, True), 7, 4, True), v)
    u = rng.integers(0, 16, size=(5, 7))
    np.testing.assert_array_equal(unpack_beats(pack_beats(u, 4, False), 7, 4, False), u)


def test_generator_errors_name_the_node():
    model, w, _ = hybrid_unit("shift", 4, 1, 1)
    inst = getCustomOp(model.graph.node[0])
    attrs = {n: inst.get_nodeattr(n) for n in ("MW", "MH", "PE", "SIMD", "inputDataType",
                                               "weightDataType", "outputDataType",
                                               "noActivation", "ActVal")}
    with pytest.raises(NashcError, match="layer7: shift weights must be 0 or"):
        mvau_params("shift", attrs, w * 3, None, "layer7")
    with pytest.raises(NashcError, match="layer7: MW=12 must be a multiple of SIMD=5"):
        mvau_params("shift", {**attrs, "SIMD": 5}, w, None, "layer7")
    with pytest.raises(NashcError, match="cannot hold a sign and"):
        mvau_params("shift", {**attrs, "weightDataType": "INT2"}, w, None, "layer7")
    with pytest.raises(NashcError, match="does not fit outputDataType"):
        mvau_params("shift", {**attrs, "outputDataType": "INT4"}, w, None, "layer7")
    rmodel, _, _ = hybrid_unit("adder", 4, 1, 1, backend="rtl")
    rinst = getCustomOp(rmodel.graph.node[0])
    rinst.set_nodeattr("mem_mode", "external")
    with pytest.raises(NashcError, match="mem_mode='external'"):
        rinst.write_rtl(rmodel, "unused")


def test_hw_thresholds_are_exact_for_integer_accumulators():
    model, w, t = hybrid_unit("adder", 4, 2, 3, thresholds="int3")
    p, _ = _params(model, "adder")
    thr = hw_thresholds(p, t, w, DataType["UINT4"])
    lo, hi = getCustomOp(model.graph.node[0]).acc_range(w)
    acc = np.arange(int(lo), int(hi) + 1)  # every accumulator value the layer can reach
    assert np.any(t != np.round(t)) and np.any(t < lo) or np.any(t > hi)
    for c in range(8):
        np.testing.assert_array_equal((acc[:, None] >= thr[c]).sum(1),
                                      (acc[:, None] >= t[c]).sum(1))


# --- Verilator: level 4 ----------------------------------------------------------------

#: (kind, bits, PE, SIMD, MW, MH, thresholds, signed inputs); each is one Verilator build
LEVEL4_CASES = [
    ("shift", 4, 2, 3, 12, 8, False, False),
    ("shift", 8, 4, 4, 8, 8, True, True),
    ("shift", 2, 8, 12, 12, 8, True, False),
    ("adder", 4, 2, 3, 12, 8, True, False),
    ("adder", 8, 8, 12, 12, 8, False, False),
    ("adder", 3, 1, 1, 6, 4, False, True),
]


@pytest.mark.parametrize("kind,bits,pe,simd,mw,mh,thr,signed_x", LEVEL4_CASES)
def test_rtl_equals_python_execution(tmp_path, kind, bits, pe, simd, mw, mh, thr, signed_x):
    from nashc.targets.rtl.sim import simulate_mvau

    model, w, t = hybrid_unit(kind, bits, pe, simd, mw=mw, mh=mh,
                              thresholds="int3" if thr else None, signed_x=signed_x)
    x = _random_x(model, seed=1)
    ref = python_execution(model, x).reshape(-1, mh)
    assert len(np.unique(ref)) > 1
    p, t = _params(model, kind)
    thr_int = None if t is None else hw_thresholds(p, t, w, model.get_tensor_datatype("x"))
    nvec = x.shape[1]
    # back-pressure on both streams, then none (cycle count = FINN's expectation)
    y, _ = simulate_mvau(p, w, thr_int, x.reshape(-1, mw), tmp_path / "stall", seed=3,
                         stall_percent=30)
    np.testing.assert_array_equal(y, ref)
    y, cycles = simulate_mvau(p, w, thr_int, x.reshape(-1, mw), tmp_path / "free")
    np.testing.assert_array_equal(y, ref)
    exp = getCustomOp(model.graph.node[0]).get_exp_cycles()
    assert exp == nvec * (mw // simd) * (mh // pe)
    assert exp <= cycles <= exp + 3


def test_finn_specialize_prepareip_rtlsim(tmp_path):
    """FINN's SpecializeLayers picks the _rtl unit, PrepareIP writes its RTL, FINN's
    PrepareRTLSim builds it (Verilator) and execute_onnx in rtlsim mode equals python."""
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP
    from finn.transformation.fpgadataflow.prepare_rtlsim import PrepareRTLSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.fpgadataflow import is_rtl_node
    from qonnx.core.onnx_exec import execute_onnx

    from nashc.targets.finn_env import finn_workspace

    for kind in ("shift", "adder"):
        model, _, _ = hybrid_unit(kind, 4, 2, 3, thresholds="int3", backend="")
        x = _random_x(model, seed=2)
        with finn_workspace(tmp_path / kind):
            model = model.transform(SpecializeLayers(PART))
            node = model.graph.node[0]
            assert node.op_type == f"{kind.capitalize()}MVAU_rtl" and is_rtl_node(node)
            ref = execute_onnx(model, {"x": x})["y"]
            model = model.transform(PrepareIP(PART, 4.0))
            inst = getCustomOp(model.graph.node[0])
            files = inst.get_rtl_file_list(abspath=True)
            assert all(f.exists() for f in files)
            ipi = inst.code_generation_ipi()
            assert ipi[-1] == f"create_bd_cell -type module -reference {node.name} {node.name}"
            assert sum(c.startswith("add_files") for c in ipi) == len(files)
            model = model.transform(PrepareRTLSim())
            model = model.transform(SetExecMode("rtlsim"))
            y = execute_onnx(model, {"x": x})["y"]
            np.testing.assert_array_equal(y, ref)
            inst = getCustomOp(model.graph.node[0])
            assert inst.get_nodeattr("cycles_rtlsim") >= inst.get_exp_cycles()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["shift", "adder"])
@pytest.mark.parametrize("bits", [2, 3, 5, 6, 7, 8])
@pytest.mark.parametrize("pe,simd", [(1, 2), (4, 6), (8, 1)])
@pytest.mark.parametrize("thr", [False, True])
def test_rtl_equals_python_execution_sweep(tmp_path, kind, bits, pe, simd, thr):
    test_rtl_equals_python_execution(tmp_path, kind, bits, pe, simd, 12, 8, thr, bits % 2 == 0)


def test_design_rtl_folder_simulates_as_written(tmp_path):
    """`compile` writes design/rtl with `write_design_rtl`: each layer's folder holds
    everything its simulation needs (ROM files relative to it) and equals level 3."""
    import json

    from nashc.targets.rtl.level4 import write_design_rtl
    from nashc.targets.rtl.sim import build, run_stream

    model, w, _ = hybrid_unit("adder", 4, 2, 3, thresholds="int3", backend="rtl")
    (d,) = write_design_rtl(model, tmp_path / "rtl")
    index = json.loads((tmp_path / "rtl" / "layers.json").read_text())
    assert index[0]["layer"] == "AdderMVAU_rtl_0" and index[0]["params"]["pe"] == 2
    assert not any(str(tmp_path) in f.read_text() for f in d.glob("*.sv"))
    files = [tmp_path / "rtl" / f for f in index[0]["files"]]
    exe = build(files, index[0]["top"])
    x = _random_x(model, seed=5)
    words, _ = run_stream(exe, d, pack_beats(x.reshape(-1, 3), 4, False), 3 * 4)
    y = unpack_beats(words, 2, 3, True).reshape(x.shape[0], 3, 8)
    np.testing.assert_array_equal(y, python_execution(model, x))
    empty = ModelWrapper(qonnx_make_model(helper.make_graph([], "g", [], [])))
    assert write_design_rtl(empty, tmp_path / "none") == []
    assert not (tmp_path / "none").exists()
