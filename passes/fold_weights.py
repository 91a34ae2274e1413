"""Folding passes: BatchNorm into the preceding layer's weights, weight quantizers into
initializers.

What exists elsewhere and is reused or left alone:
- qonnx ``BatchNormToAffine`` turns BN into Mul/Add (FINN's streamlining then moves
  those into thresholds); it does not fold into weights, hence `FoldBatchNormIntoConv`.
- qonnx ``FoldConstantsFiltered`` executes constant nodes; `FoldWeightQuantToFloat` uses it for
  weight Quant/BipolarQuant nodes and adds the QONNX datatype annotation it drops.
- FINN's ``finn.transformation.qonnx.fold_quant_weights.FoldQuantWeights`` (part of
  ``ConvertQONNXtoFINN``) instead stores integer weights and moves the scale behind the
  layer as a Mul; use it in the FINN flow (targets/). Ours keeps values unchanged.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.fold_constants import FoldConstantsFiltered

from nashc.passes.graph import QUANT_DOMAINS, PassError, record_metadata
from nashc.runtime.load import node_attrs

__all__ = ["FoldBatchNormIntoConv", "FoldWeightQuantToFloat"]


class FoldBatchNormIntoConv(Transformation):
    """Replaces Conv/Gemm followed by BatchNormalization with a Conv/Gemm of scaled weights
    and bias. Layers whose weights come from a Quant node are left alone (folding would
    move the weights off their quantization grid): run `FoldWeightQuantToFloat` first to fold
    them anyway."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        records = []
        for node in list(model.graph.node):
            if node.op_type not in ("Conv", "Gemm") or node.domain not in ("", "ai.onnx"):
                continue
            cons = model.find_consumers(node.output[0])
            if not cons or len(cons) != 1 or cons[0].op_type != "BatchNormalization":
                continue
            bn = cons[0]
            w = model.get_initializer(node.input[1])
            params = [model.get_initializer(i) for i in bn.input[1:5]]
            if w is None or any(p is None for p in params):
                continue
            gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
            eps = float(node_attrs(bn).get("epsilon", 1e-5))
            f = gamma / np.sqrt(var + eps)
            has_b = len(node.input) > 2 and node.input[2] != ""
            b0 = model.get_initializer(node.input[2]) if has_b else None
            if has_b and b0 is None:
                continue
            # have: Y = BN(layer(X, W, b)); want: Y = layer(X, W * f, (b - mean) * f + beta)
            if node.op_type == "Conv":
                w_new = w.astype(np.float64) * f.reshape(-1, 1, 1, 1)
                b = np.zeros_like(f) if b0 is None else np.asarray(b0, np.float64)
            else:
                a = node_attrs(node)
                if int(a.get("transA", 0)):
                    continue
                alpha, gbeta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
                wd = w.astype(np.float64) * alpha
                w_new = wd * f.reshape(-1, 1) if int(a.get("transB", 0)) else wd * f.reshape(1, -1)
                if b0 is not None and np.asarray(b0).size not in (1, f.size):
                    continue
                b = np.zeros_like(f) if b0 is None else np.broadcast_to(
                    np.asarray(b0, np.float64).reshape(-1) * gbeta, f.shape)
                for at in list(node.attribute):
                    if at.name in ("alpha", "beta"):
                        node.attribute.remove(at)
            b_new = (b - mean) * f + beta
            wname = model.make_new_valueinfo_name()
            bname = model.make_new_valueinfo_name()
            model.set_initializer(wname, w_new.astype(np.float32))
            model.set_initializer(bname, b_new.astype(np.float32))
            old = list(node.input[1:])
            del node.input[1:]
            node.input.extend([wname, bname])
            node.output[0] = bn.output[0]
            model.graph.node.remove(bn)
            for t in old + list(bn.input[1:]):
                if t and not model.find_consumers(t) and model.get_initializer(t) is not None:
                    model.del_initializer(t)
            records.append({"node": node.name, "batchnorm": bn.name})
        if records:
            record_metadata(model, "FoldBatchNormIntoConv", records)
        return model, False


def _is_weight_quant(model: ModelWrapper, node: NodeProto) -> bool:
    return node.op_type in ("Quant", "BipolarQuant") and node.domain in QUANT_DOMAINS and \
        all(model.get_initializer(i) is not None for i in node.input)


class FoldWeightQuantToFloat(Transformation):
    """Replaces weight Quant/BipolarQuant nodes over initializers with their quantized
    values as initializers, annotated with the QONNX datatype (INTb / BIPOLAR for unit
    scale, else SCALEDINT<b> / FLOAT32)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        dts: dict[str, DataType] = {}
        records = []
        for n in model.graph.node:
            if not _is_weight_quant(model, n):
                continue
            if n.op_type == "Quant":
                try:
                    dts[n.output[0]] = getCustomOp(n).get_output_dtype(model)
                except AssertionError as err:
                    raise PassError(f"node {n.name!r} (Quant): {err}") from None
            else:
                s = model.get_initializer(n.input[1])
                dts[n.output[0]] = DataType["BIPOLAR"] if np.all(s == 1.0) else \
                    DataType["FLOAT32"]
            records.append({"node": n.name, "datatype": dts[n.output[0]].get_canonical_name()})
        if not records:
            return model, False
        model = model.transform(FoldConstantsFiltered(lambda m, n: _is_weight_quant(m, n)))
        for t, dt in dts.items():
            model.set_tensor_datatype(t, dt)
        record_metadata(model, "FoldWeightQuantToFloat", records)
        return model, False
