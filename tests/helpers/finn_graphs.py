"""Small FINN dataflow graphs built inline, for the accelerator-search tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

__all__ = ["U250", "mvau_chain"]

U250 = "xcu250-figd2104-2L-e"


def mvau_chain(shapes: list[tuple[int, int]], wbits: int = 4, abits: int = 4,
               vectors: int = 1, seed: int = 0) -> ModelWrapper:
    """A chain of FINN MVAU_hls layers; shapes are (MW, MH) per layer."""
    rng = np.random.default_rng(seed)
    nodes, inits, vis = [], [], []
    wdt = DataType[f"INT{wbits}"]
    adt = DataType[f"UINT{abits}"]
    prev = "inp"
    for i, (mw, mh) in enumerate(shapes):
        out = f"act{i}" if i < len(shapes) - 1 else "out"
        w = f"w{i}"
        nodes.append(helper.make_node(
            "MVAU_hls", [prev, w], [out], name=f"MVAU_hls_{i}",
            domain="finn.custom_op.fpgadataflow.hls", backend="fpgadataflow",
            MW=mw, MH=mh, SIMD=1, PE=1, inputDataType=adt.name, weightDataType=wdt.name,
            outputDataType=adt.name if i < len(shapes) - 1 else "INT32",
            accDataType="INT32", noActivation=1, ActVal=0, binaryXnorMode=0,
            numInputVectors=[vectors], mem_mode="internal_decoupled"))
        inits.append((w, rng.integers(wdt.min(), wdt.max() + 1, size=(mw, mh)).astype(np.float32)))
        if i < len(shapes) - 1:
            vis.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, vectors, mh]))
        prev = out
    graph = helper.make_graph(
        nodes, "mvau_chain",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, vectors, shapes[0][0]])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, vectors, shapes[-1][1]])],
        value_info=vis)
    model = ModelWrapper(qonnx_make_model(graph))
    for name, value in inits:
        model.set_initializer(name, value)
        model.set_tensor_datatype(name, wdt)
    model.set_tensor_datatype("inp", adt)
    return model
