"""Loading QONNX or plain ONNX models as nashc networks (no PyTorch needed).

`load_onnx_network(path)` loads QONNX or plain ONNX, rejects unsupported ops
(`UnsupportedOpsError` names each node and op type), cleans it up with qonnx and names
its Conv/Gemm/MatMul nodes as the language names the layers of ``network NAME from
"path"`` (`nashc.dsl.check.onnx_layer_names`). Layer nodes carry
``doc_string = "nashc.layer=NAME"`` (`layer_nodes` finds them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import NodeProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from nashc.dsl.errors import NashcError
from nashc.runtime.ops import DOMAIN

__all__ = ["COMPUTE_OP_TYPES", "LAYER_TAG", "SUPPORTED_OPS", "UnsupportedOpsError",
           "layer_nodes", "load_onnx_network", "node_attrs", "rename_tagged"]

#: op types that are choice points (named after layers)
COMPUTE_OP_TYPES = ("Conv", "Gemm", "MatMul", "ShiftConv", "AdderConv", "ShiftMatMul",
                    "AdderMatMul")
#: prefix of the doc_string of a compute node naming its layer
LAYER_TAG = "nashc.layer="

_STD = ("", "ai.onnx")
_QONNX = ("qonnx.custom_op.general", "finn.custom_op.general")
#: (domains, op types) accepted by `load_onnx_network`: what FINN/qonnx handle in
#: CNNs and MLPs (shape-computation ops are folded by the cleanup), plus our hybrid ops.
SUPPORTED_OPS: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = (
    (_STD, frozenset({
        "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "MaxPool",
        "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose",
        "BatchNormalization", "Identity", "Constant", "Shape", "Gather", "Unsqueeze",
        "Squeeze", "Concat", "Pad", "Cast", "Dropout",
    })),
    (_QONNX, frozenset({"Quant", "BipolarQuant", "Trunc", "MultiThreshold"})),
    ((DOMAIN,), frozenset({"ShiftConv", "AdderConv", "ShiftMatMul", "AdderMatMul"})),
)


class UnsupportedOpsError(NashcError):
    """A loaded model contains ops nashc does not support; `nodes` lists (name, op_type)."""

    def __init__(self, path: str, nodes: list[tuple[str, str]]) -> None:
        self.path = path
        self.nodes = nodes
        listed = "\n".join(f"  {name} ({op})" for name, op in nodes)
        super().__init__(f"{path}: unsupported ops:\n{listed}")


def layer_nodes(model: ModelWrapper) -> dict[str, Any]:
    """Layer name -> node, for nodes tagged by `export_qonnx_model`."""
    out = {}
    for node in model.graph.node:
        if node.doc_string.startswith(LAYER_TAG):
            out[node.doc_string[len(LAYER_TAG):]] = node
    return out


def rename_tagged(model: ModelWrapper) -> None:
    """Names every tagged node after its layer (other nodes with a clashing name get
    their op type appended)."""
    tagged = layer_nodes(model)
    taken = {n.name for n in model.graph.node if not n.doc_string.startswith(LAYER_TAG)}
    clash = sorted(set(tagged) & taken)
    for node in model.graph.node:  # free layer names used by other nodes
        if node.name in clash and not node.doc_string.startswith(LAYER_TAG):
            node.name = f"{node.name}_{node.op_type}"
    for lname, node in tagged.items():
        node.name = lname


def _supported(domain: str, op_type: str) -> bool:
    return any(domain in doms and op_type in ops for doms, ops in SUPPORTED_OPS)


def load_onnx_network(path: str | Path) -> ModelWrapper:
    """Loads a QONNX or plain ONNX model, checks its ops, cleans it up and names its
    Conv/Gemm/MatMul nodes as the language does (original names kept; an unnamed node is
    ``OpType_INDEX``, INDEX its position in the file's node list)."""
    path = Path(path)
    if not path.is_file():
        raise NashcError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise NashcError(f"{path}: cannot read ONNX model: {exc}") from exc
    bad = []
    for idx, node in enumerate(proto.graph.node):
        if not _supported(node.domain, node.op_type):
            bad.append((node.name or f"<unnamed node #{idx}>",
                        f"{node.domain}::{node.op_type}" if node.domain else node.op_type))
    if bad:
        raise UnsupportedOpsError(str(path), bad)
    from nashc.dsl.check import onnx_layer_names

    for node, name in onnx_layer_names(proto.graph.node):  # the language's layer names
        node.doc_string = LAYER_TAG + name
    try:
        model = cleanup_model(ModelWrapper(proto))
    except Exception as exc:  # noqa: BLE001
        raise NashcError(f"{path}: cannot clean up the model: {exc}") from exc
    rename_tagged(model)
    for node in model.graph.node:
        if node.op_type in COMPUTE_OP_TYPES and not node.doc_string:
            node.doc_string = LAYER_TAG + node.name
    return model


def node_attrs(node: NodeProto) -> dict[str, Any]:
    """A node's attributes as ``{name: value}`` (`onnx.helper.get_attribute_value`)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
