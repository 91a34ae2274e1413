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

__all__ = ["COMPUTE_OP_TYPES", "LAYER_TAG", "LOAD_NOTES_KEY", "MIN_OPSET", "SUPPORTED_OPS",
           "UnsupportedOpsError", "layer_nodes", "load_notes", "load_onnx_network",
           "node_attrs", "normalise_model", "rename_tagged"]

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


#: The lowest default-domain ONNX opset nashc executes and lowers: the standard-ONNX forms
#: of QONNX's quantizers use ``Round`` (opset 11) and ``Unsqueeze``/``ReduceSum`` with
#: axes as inputs (opset 13). Older models are converted with onnx's version converter.
MIN_OPSET = 13
#: metadata_props key of the JSON list of what `normalise_model` changed
LOAD_NOTES_KEY = "nashc.load_notes"


def _dim_is_fixed(dim: Any) -> bool:
    return dim.HasField("dim_value") and dim.dim_value > 0


def _fix_batch(model: ModelWrapper, where: str) -> list[str]:
    """Sets a dynamic (symbolic or 0) first axis of the graph's inputs and outputs to 1;
    raises for any other dynamic axis. Returns the names of the tensors changed."""
    inits = {i.name for i in model.graph.initializer}
    changed = []
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if _dim_is_fixed(dim):
                continue
            if axis != 0:
                what = f"'{dim.dim_param}'" if dim.dim_param else "unknown"
                raise NashcError(f"{where}: tensor {vi.name!r} has a dynamic axis {axis} "
                                 f"({what}); FINN needs fixed shapes except the batch axis "
                                 "(export with a fixed input size)")
            dim.Clear()
            dim.dim_value = 1
            changed.append(vi.name)
    if changed:
        # shapes inferred with the symbolic batch are stale; re-infer them with batch 1
        del model.graph.value_info[:]
    return changed


def _default_opset(model: ModelWrapper) -> int | None:
    return next((o.version for o in model.model.opset_import if o.domain in _STD), None)


def normalise_model(model: ModelWrapper, where: str = "model",
                    raise_opset: bool = True) -> tuple[ModelWrapper, list[str]]:
    """What FINN and nashc's executors need of a loaded model, made so and said:

    - a dynamic batch axis (``dim_param`` or 0, as ``torch.onnx.export(dynamic_axes=...)``
      writes it) becomes 1: FINN's hardware layers process one frame at a time (FINN's
      ``ChangeBatchSize`` does the same);
    - a default-domain opset below `MIN_OPSET` is converted up with onnx's version
      converter (custom QONNX domains are left as they are).

    Returns the model (shapes re-inferred when anything changed) and one note per change,
    also stored as a JSON list under the `LOAD_NOTES_KEY` metadata property. Raises
    `NashcError` (naming `where`) for a dynamic axis other than the batch axis, or an
    opset below 11 (``Round``) the converter cannot raise; at opset 11/12 a model it
    cannot convert (it knows no custom-domain ops it has no adapter for) is kept as is.
    `raise_opset=False` only fixes the batch (in-memory graphs, e.g. qonnx's opset-11
    test graphs, run as they are).
    """
    import json

    from qonnx.transformation.infer_shapes import InferShapes

    notes = []
    batch = _fix_batch(model, where)
    if batch:
        notes.append(f"{where}: dynamic batch axis ({', '.join(repr(b) for b in batch)}) "
                     "fixed to 1 (FINN's dataflow processes one frame at a time)")
    opset = _default_opset(model)
    if raise_opset and opset is not None and opset < MIN_OPSET:
        from onnx import version_converter

        proto = None
        try:
            proto = version_converter.convert_version(model.model, MIN_OPSET)
        except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError et al.
            if opset < 11:
                raise NashcError(f"{where}: ONNX opset {opset} cannot be converted to "
                                 f"{MIN_OPSET}: {str(exc).splitlines()[0]} (export at "
                                 f"opset >= {MIN_OPSET})") from None
        if proto is not None:
            model = model.__class__(proto)
            notes.append(f"{where}: ONNX opset {opset} converted to {MIN_OPSET} (onnx's "
                         "version converter; nashc's standard-ONNX lowering needs opset "
                         ">= 13)")
    if notes:
        try:
            model = model.transform(InferShapes())
        except Exception as exc:  # noqa: BLE001
            raise NashcError(f"{where}: shape inference failed after "
                             f"{' and '.join(n.split(': ', 1)[1] for n in notes)}: "
                             f"{str(exc).splitlines()[0]}") from None
        old = load_notes(model)
        model.set_metadata_prop(LOAD_NOTES_KEY, json.dumps(old + notes))
    return model, notes


def load_notes(model: ModelWrapper) -> list[str]:
    """The notes `normalise_model` recorded in the model (empty when none)."""
    import json

    raw = model.get_metadata_prop(LOAD_NOTES_KEY)
    return list(json.loads(raw)) if raw else []


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


_SOURCE_TAG = "nashc.source="  # temporary doc_string of untagged nodes during loading


def load_onnx_network(path: str | Path) -> ModelWrapper:
    """Loads a QONNX or plain ONNX model, makes its batch 1 and its opset at least
    `MIN_OPSET` (`normalise_model`), cleans it up (qonnx's ``cleanup_model``: constant
    subgraphs such as Brevitas' TensorNorm ``Pow`` are folded), checks the ops that are
    left and names its Conv/Gemm/MatMul nodes as the language does (original names kept;
    an unnamed node is ``OpType_INDEX``, INDEX its position in the file's node list).
    `UnsupportedOpsError` names unsupported nodes as the file names them."""
    path = Path(path)
    if not path.is_file():
        raise NashcError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise NashcError(f"{path}: cannot read ONNX model: {exc}") from exc
    from nashc.dsl.check import onnx_layer_names

    for node, name in onnx_layer_names(proto.graph.node):  # the language's layer names
        node.doc_string = LAYER_TAG + name
    for idx, node in enumerate(proto.graph.node):
        if not node.doc_string:  # the file's name, for errors after the cleanup renamed it
            node.doc_string = _SOURCE_TAG + (node.name or f"<unnamed node #{idx}>")
    model, _notes = normalise_model(ModelWrapper(proto), str(path))
    try:
        model = cleanup_model(model)
    except Exception as exc:  # noqa: BLE001
        raise NashcError(f"{path}: cannot clean up the model: {exc}") from exc
    bad = []
    for node in model.graph.node:
        if not _supported(node.domain, node.op_type):
            name = node.doc_string
            for tag in (_SOURCE_TAG, LAYER_TAG):
                name = name[len(tag):] if name.startswith(tag) else name
            bad.append((name or node.name,
                        f"{node.domain}::{node.op_type}" if node.domain else node.op_type))
    if bad:
        raise UnsupportedOpsError(str(path), bad)
    for node in model.graph.node:
        if node.doc_string.startswith(_SOURCE_TAG):
            node.doc_string = ""
    rename_tagged(model)
    for node in model.graph.node:
        if node.op_type in COMPUTE_OP_TYPES and not node.doc_string:
            node.doc_string = LAYER_TAG + node.name
    return model


def node_attrs(node: NodeProto) -> dict[str, Any]:
    """A node's attributes as ``{name: value}`` (`onnx.helper.get_attribute_value`)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
