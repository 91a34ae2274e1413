"""Lower a QONNX model through FINN to a dataflow graph of hardware layers.

The sequence follows FINN's own builder steps (`finn/builder/build_dataflow_steps.py`:
`step_qonnx_to_finn`, `step_tidy_up`, `step_streamline`, `step_convert_to_hw`,
`step_create_dataflow_partition`, `step_specialize_layers`) with FINN's default
`DataflowBuildConfig` values (`standalone_thresholds=False`,
`requant_bitwidth_threshold=9`, `max_multithreshold_bit_width=8`,
`infer_shuffle_skip_first=True`). The builder itself cannot be imported without
Vivado, so its steps are re-stated here, calling the same transformations.

Residual networks (a tensor with several consumers joined again by an `Add`) get the
extra streamlining of FINN's ResNet-50 recipe (`finn.builder.custom_step_library.resnet`,
`step_resnet50_streamline`): scalar linear ops are moved past element-wise adds and
forks, and transposes past joins and forks, so that the residual `Add` becomes an
`ElementwiseAdd` hardware layer and the fork a `DuplicateStreams` layer.

Extra steps (e.g. the conversion of nashc's hybrid ops to hardware layers) plug in
with `ExtraStep(name, fn, after=...)`; a bare `Transformation` runs after streamlining,
before FINN's own conversion to hardware layers.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from finn.util.fpgadataflow import is_fpgadataflow_node
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from nashc.dsl.errors import NashcError
from nashc.targets.boards import Board
from nashc.targets.finn_env import finn_workspace

__all__ = [
    "ExtraStep",
    "LoweredModel",
    "UnsupportedNodesError",
    "lower_to_hw",
    "LOWERING_STEPS",
    "HOST_OP_TYPES",
    "ConvertSpatialReduceMeanToGlobalAveragePool",
    "has_residual_forks",
    "absorb_layout_transposes",
    "MergeIdenticalTransposesBeforeFork",
    "BrokenGraphError",
    "dangling_inputs",
    "MoveLinearPastEltwiseAddKeepForks",
    "ShapeScalarBiasQuantParams",
    "RemoveWideningTruncShift",
    "MoveTransposeToGraphEnd",
    "AbsorbReshapeTransposeIntoFc",
    "UnsqueezeToReshape",
    "is_1d",
    "step_pre_streamline_1d",
]

Phase = Literal["qonnx_to_finn", "tidy_up", "streamline", "convert_to_hw"]
StepFn = Callable[[ModelWrapper], ModelWrapper]

#: The named lowering steps, in order. Extra steps run after the step they name.
LOWERING_STEPS: tuple[Phase, ...] = ("qonnx_to_finn", "tidy_up", "streamline", "convert_to_hw")

#: Op types FINN's flows leave on the host at the very start or end of a graph (input
#: scaling and layout, output scaling, top-k). Any other non-hardware node is an error.
HOST_OP_TYPES = frozenset({
    "Mul", "Add", "Sub", "Div", "Transpose", "Reshape", "Flatten", "Identity", "TopK",
    "ArgMax", "Cast", "Squeeze", "Unsqueeze",
})


@dataclass(frozen=True)
class ExtraStep:
    """A transformation plugged into the lowering, run after the step `after`."""

    name: str
    fn: Transformation | StepFn
    after: Phase = "streamline"

    def run(self, model: ModelWrapper) -> ModelWrapper:
        if isinstance(self.fn, Transformation):
            return model.transform(self.fn)
        return self.fn(model)


@dataclass
class LoweredModel:
    """The result of `lower_to_hw`.

    `dataflow` is the child model of FINN's `StreamingDataflowPartition`: hardware
    layers only (HLS/RTL specialised). `parent` is the whole graph with that partition
    as one node (its `model` attribute says `dataflow.onnx`, the name `write_reports`
    saves the child under); `host_nodes` are the (name, op type) of nodes left on the
    host before/after the partition.
    """

    dataflow: ModelWrapper
    parent: ModelWrapper
    board: Board
    clock_mhz: float
    host_nodes: list[tuple[str, str]] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fpga_part(self) -> str:
        return self.board.part


class UnsupportedNodesError(NashcError):
    """Nodes that could not be lowered to FINN hardware layers: `nodes` lists (name, op
    type), names as the user's model or `.nash` file has them; `reasons` maps a name to
    why FINN refused it (what FINN only logs, or what nashc found)."""

    def __init__(self, nodes: Sequence[tuple[str, str]], where: str,
                 reasons: dict[str, str] | None = None, notes: Sequence[str] = (),
                 hint: str = "") -> None:
        self.nodes = list(nodes)
        self.reasons = dict(reasons or {})
        listed = ", ".join(f"{name} ({op})" for name, op in self.nodes)
        text = (f"cannot lower to FINN hardware layers: {len(self.nodes)} node(s) {where}: "
                f"{listed}")
        why = [f"  {name}: {self.reasons[name]}" for name, _ in self.nodes
               if name in self.reasons]
        if why:
            text += "\n" + "\n".join(why)
        if notes:
            text += "\n" + "\n".join(f"  FINN: {n}" for n in notes)
        if hint:
            text += "\n" + hint
        super().__init__(text)


class BrokenGraphError(NashcError):
    """A lowering step left a node input without a producer (a FINN transformation
    removed a node another one still reads)."""

    def __init__(self, step: str, missing: Sequence[tuple[str, str, str]]) -> None:
        self.step = step
        self.missing = list(missing)
        listed = ", ".join(f"{node} ({op}) reads {tensor!r}" for node, op, tensor in missing)
        super().__init__(
            f"lowering step {step} disconnected the graph: {len(self.missing)} input(s) no "
            f"node produces: {listed}")


def dangling_inputs(model: ModelWrapper) -> list[tuple[str, str, str]]:
    """(node name in the input model, op type, tensor) for every node input and graph
    output that is neither produced by a node, nor a graph input, nor an initializer.
    A well-formed graph has none."""
    produced = {t for n in model.graph.node for t in n.output}
    produced |= {i.name for i in model.graph.input}
    produced |= {i.name for i in model.graph.initializer}
    bad = [(_source_name(n), n.op_type, t) for n in model.graph.node for t in n.input
           if t and t not in produced]
    bad += [("graph output", "-", o.name) for o in model.graph.output if o.name not in produced]
    return bad


def _apply(model: ModelWrapper, trn: Transformation, step: str) -> ModelWrapper:
    """`model.transform(trn)`, then raises `BrokenGraphError` naming `step` and the
    transformation if it left an input without a producer."""
    model = model.transform(trn)
    missing = dangling_inputs(model)
    if missing:
        raise BrokenGraphError(f"{step} ({type(trn).__name__})", missing)
    return model


class MoveLinearPastEltwiseAddKeepForks(Transformation):
    """FINN's `MoveLinearPastEltwiseAdd` ((x*C) + (y*C) -> (x + y) * C, same for Add),
    except where either `Mul`/`Add` also feeds other nodes.

    FINN's version removes the second producer even when its output forks (as in a
    Brevitas `QuantBasicBlock`, whose identity shortcut and first conv read the same
    scaled tensor): the other consumer is left without a producer. Here such a pattern
    is skipped; `MoveLinearPastFork`, which runs next in FINN's ResNet-50 loop, copies
    the forking node into each branch, and the next iteration moves it past the add.
    """

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        from finn.transformation.streamline.reorder import MoveLinearPastEltwiseAdd

        changed = False
        while True:
            target = self._first_safe_add(model)
            if target is None:
                return model, changed
            # have: x -> L(c) -> Add <- L(c) <- y ; want: (x + y) -> L(c), FINN's rewiring
            graph = model.graph
            node_ind = list(graph.node).index(target) + 1
            prod0 = model.find_producer(target.input[0])
            prod1 = model.find_producer(target.input[1])
            trn = MoveLinearPastEltwiseAdd()
            if prod0.op_type == "Add":
                model.set_initializer(prod0.input[1], model.get_initializer(prod0.input[1])
                                      + model.get_initializer(prod1.input[1]))
            trn.move_node(graph, target, prod0, prod1, node_ind)
            model.set_tensor_shape(target.output[0], None)
            model.set_tensor_shape(prod0.output[0], None)
            from qonnx.transformation.infer_shapes import InferShapes

            model = model.transform(InferShapes())
            changed = True

    @staticmethod
    def _first_safe_add(model: ModelWrapper):  # type: ignore[no-untyped-def]
        import numpy as np

        for n in model.graph.node:
            if n.op_type != "Add" or len(n.input) != 2:
                continue
            if any(model.get_initializer(t) is not None for t in n.input):
                continue
            prod0, prod1 = (model.find_producer(t) for t in n.input)
            if prod0 is None or prod1 is None or prod0 == prod1:
                continue
            if prod0.op_type != prod1.op_type or prod0.op_type not in ("Mul", "Add"):
                continue
            if len(prod0.input) < 2 or len(prod1.input) < 2:
                continue
            c0, c1 = (model.get_initializer(p.input[1]) for p in (prod0, prod1))
            if c0 is None or c1 is None:
                continue
            if model.is_fork_node(prod0) or model.is_fork_node(prod1):
                continue
            if prod0.op_type == "Mul" and not np.array_equal(c0, c1):
                continue
            return n
        return None


class ShapeScalarBiasQuantParams(Transformation):
    """Gives the 0-d scale/zero-point of a `Quant` that quantizes a Conv bias the shape
    (1,). Brevitas' `Int32Bias` exports them 0-d; qonnx's `ExtractBiasFromConv` (run by
    `ConvertQONNXtoFINN`) leaves only shape-(1,) parameters unbroadcast and tries to
    reshape a 0-d one to (1, C, 1, 1) ("cannot reshape array of size 1"). Values are
    unchanged."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for n in model.graph.node:
            if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) < 3 or not n.input[2]:
                continue
            q = model.find_producer(n.input[2])
            if q is None or q.op_type not in ("Quant", "IntQuant", "BipolarQuant"):
                continue
            for t in q.input[1:3]:
                v = model.get_initializer(t)
                if v is not None and v.ndim == 0:
                    model.set_initializer(t, v.reshape(1))
                    changed = True
        return model, changed


class MoveTransposeToGraphEnd(Transformation):
    """Moves a `Transpose` followed only by element-wise `Mul`/`Add` with constants up to
    a graph output behind them, the constants permuted: ``y = x^T * a <=> y = (x * a')^T``
    with ``a'`` = ``a`` transposed by the inverse permutation (as FINN's
    `MoveTransposePastEltwise` rewrites one such pair).

    A network whose output is a feature map (last layer a conv) ends in FINN's NHWC ->
    NCHW `Transpose` and the output scale; with the `Transpose` last it stays on the host
    (`step_convert_to_hw` does not make a graph-output `Transpose` a `Shuffle` layer).
    """

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import numpy as np
        from qonnx.util.basic import get_by_name

        outputs = {o.name for o in model.graph.output}
        for node in model.graph.node:
            if node.op_type != "Transpose" or model.is_fork_node(node):
                continue
            chain = []
            t = node.output[0]
            while t not in outputs:
                cons = model.find_consumers(t) or []
                if len(cons) != 1 or cons[0].op_type not in ("Mul", "Add") or \
                        len(cons[0].input) != 2:
                    break
                c = cons[0]
                other = c.input[1] if c.input[0] == t else c.input[0]
                if model.get_initializer(other) is None:
                    break
                chain.append(c)
                t = c.output[0]
            if t not in outputs or not chain:
                continue
            perm = list(get_by_name(node.attribute, "perm").ints)
            rank = len(perm)
            inverse = [perm.index(i) for i in range(rank)]
            consts = []
            for c in chain:
                other = c.input[1] if model.get_initializer(c.input[1]) is not None \
                    else c.input[0]
                a = np.asarray(model.get_initializer(other))
                if a.ndim > rank:
                    break
                consts.append((other, a.reshape((1,) * (rank - a.ndim) + a.shape)))
            else:
                # have: x -> Transpose -> L1(a1) -> ... -> Ln(an) -> y
                # want: x -> L1(a1') -> ... -> Ln(an') -> Transpose -> y
                x, y = node.input[0], chain[-1].output[0]
                for name, a in consts:
                    model.set_initializer(name, a.transpose(inverse))
                mid = node.output[0]
                chain[0].input[list(chain[0].input).index(mid)] = x
                chain[-1].output[0] = mid
                node.input[0] = mid
                node.output[0] = y
                model.graph.node.remove(node)
                pos = list(model.graph.node).index(chain[-1]) + 1
                model.graph.node.insert(pos, node)
                for c in chain:
                    for out in c.output:
                        model.set_tensor_shape(out, None)  # type: ignore[arg-type]
                from qonnx.transformation.infer_datatypes import InferDataTypes
                from qonnx.transformation.infer_shapes import InferShapes

                model = model.transform(InferShapes())
                return model.transform(InferDataTypes()), True
        return model, False


class UnsqueezeToReshape(Transformation):
    """An `Unsqueeze`/`Squeeze` of a statically shaped tensor is a `Reshape` to its output
    shape; as one, it goes through qonnx's `Change3DTo4DTensors` (1-D networks) and
    `AbsorbReshapeTransposeIntoFc` (an fc layer's ``(N, L)`` output unsqueezed to one
    channel for a 1-D conv)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import numpy as np
        from onnx import helper

        for i, node in enumerate(model.graph.node):
            if node.op_type not in ("Unsqueeze", "Squeeze") or node.domain not in ("", "ai.onnx"):
                continue
            oshape = model.get_tensor_shape(node.output[0])
            if oshape is None or any(not isinstance(d, int) or d <= 0 for d in oshape):
                continue
            shape_name = model.make_new_valueinfo_name()
            model.set_initializer(shape_name, np.asarray(oshape, dtype=np.int64))
            new = helper.make_node("Reshape", [node.input[0], shape_name], list(node.output),
                                   name=node.name)
            new.doc_string = node.doc_string  # the user's name (see _tag_source_names)
            model.graph.node.insert(i, new)
            model.graph.node.remove(node)
            return model, True
        return model, False


class AbsorbReshapeTransposeIntoFc(Transformation):
    """The mirror of FINN's `RemoveCNVtoFCFlatten` for an fc layer feeding a conv: an fc
    output ``(N, K)`` reshaped to a feature map (``(N, C, H, W)``; a 1-D conv's
    ``(N, C, L, 1)`` after `Change3DTo4DTensors`) and transposed (to NHWC for the lowered
    conv, or any permutation that keeps the batch axis) becomes the fc layer writing the
    transposed order itself: the `MatMul`'s weight columns, and the per-channel
    parameters of the `MultiThreshold`/`Mul`/`Add` between it and the `Reshape`, are
    permuted (for NHWC, ``k = c*H*W + h*W + w`` moves to ``(h*W + w)*C + c``), the
    `Reshape` gives the transposed shape and the `Transpose` is removed. On the stream
    the `Reshape` is then a pass-through (FINN's `Reshape` layer), where FINN's
    `InferShuffle` would have made the Reshape + Transpose a `Shuffle` that its
    `SpecializeLayers` does not specialise.
    """

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import numpy as np
        from qonnx.util.basic import get_by_name

        for tr in model.get_nodes_by_op_type("Transpose"):
            attr = get_by_name(tr.attribute, "perm")
            rs = model.find_producer(tr.input[0])
            if attr is None or rs is None or rs.op_type != "Reshape" or \
                    model.is_fork_node(rs):
                continue
            perm = [int(p) for p in attr.ints]
            ishape = model.get_tensor_shape(rs.input[0])
            oshape = model.get_tensor_shape(rs.output[0])
            if ishape is None or oshape is None or len(ishape) != 2 or \
                    len(oshape) != len(perm) or perm[0] != 0:
                continue
            k = int(ishape[1])
            if int(np.prod(oshape[1:])) != k or int(ishape[0]) != int(oshape[0]):
                continue
            # walk back to the MatMul through single-consumer per-channel ops
            chain = []
            node = model.find_producer(rs.input[0])
            while node is not None and not model.is_fork_node(node) and \
                    node.op_type in ("MultiThreshold", "Mul", "Add"):
                chain.append(node)
                node = model.find_producer(node.input[0])
            if node is None or node.op_type != "MatMul" or model.is_fork_node(node) or \
                    model.get_initializer(node.input[1]) is None:
                continue
            inner = [int(d) for d in oshape[1:]]
            order = np.arange(k).reshape(inner).transpose([p - 1 for p in perm[1:]])
            order = order.reshape(-1)
            params = []
            for op in chain:
                p = model.get_initializer(op.input[1])
                if p is None:
                    break
                p = np.asarray(p)
                if op.op_type == "MultiThreshold":
                    if p.shape[0] == k:
                        params.append((op.input[1], p[order]))
                    elif p.shape[0] != 1:
                        break
                elif p.size == k:
                    params.append((op.input[1], p.reshape(-1)[order].reshape(p.shape)))
                elif p.size != 1:
                    break
            else:
                wts = np.asarray(model.get_initializer(node.input[1]))
                model.set_initializer(node.input[1], wts[:, order])
                for name, p in params:
                    model.set_initializer(name, p)
                new_shape = [int(oshape[0])] + [inner[p - 1] for p in perm[1:]]
                model.set_initializer(rs.input[1], np.asarray(new_shape, dtype=np.int64))
                rs.output[0] = tr.output[0]
                model.graph.node.remove(tr)
                model.set_tensor_shape(rs.output[0], new_shape)
                return model, True
        return model, False


class RemoveWideningTruncShift(Transformation):
    """Rewrites a QONNX `Trunc` (v2) whose output grid is finer than its input's, an
    exact left shift by s bits (out_scale = scale / 2^s, out bits = in bits + s), as the
    same `Trunc` without a shift (out_scale = scale, out bits = in bits).

    Brevitas' `TruncAvgPool2d` with `TruncTo8bit` exports such a `Trunc` when the pooled
    sum has fewer than 8 bits (e.g. 2-bit activations, 2x2 pool: a 4-bit sum "truncated"
    to 8 bits). FINN's `AvgPoolAndTruncv2ToQuantAvgPool` makes it a `QuantAvgPool2d`,
    which only shifts right (its shift is clamped at 0), and keeps out_scale: the output
    came out 2^s times too small. Without clipping (the sum is below 2^(in bits), so the
    shifted value is below 2^(out bits)) both forms give sum x scale exactly.
    """

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import numpy as np

        changed = False
        for n in model.graph.node:
            if n.op_type != "Trunc" or len(n.input) != 6:
                continue
            consts = [model.get_initializer(t) for t in n.input[1:]]
            if any(c is None for c in consts):
                continue
            scale, zero, in_bits, out_scale, out_bits = (np.asarray(c, np.float64)
                                                         for c in consts)
            if scale.size != 1 or out_scale.size != 1 or np.any(zero != 0):
                continue
            shift = float(np.log2(float(scale.flatten()[0]) / float(out_scale.flatten()[0])))
            if shift < 0.5 or abs(shift - round(shift)) > 1e-6:
                continue
            if float(out_bits.flatten()[0]) != float(in_bits.flatten()[0]) + round(shift):
                continue
            # have: Trunc(x, s, 0, ib, s / 2^k, ib + k); want: Trunc(x, s, 0, ib, s, ib)
            model.set_initializer(n.input[4], np.asarray(consts[0], np.float32).copy())
            model.set_initializer(n.input[5], np.asarray(consts[2], np.float32).copy())
            changed = True
        return model, changed


def _shuffle_filter(model: ModelWrapper, node) -> bool:  # type: ignore[no-untyped-def]
    """InferShuffle's filter: not the first node (FINN's `infer_shuffle_skip_first`
    default) and not a graph output (the output layout change stays on the host)."""
    outputs = {o.name for o in model.graph.output}
    return node != model.graph.node[0] and node.output[0] not in outputs


def has_residual_forks(model: ModelWrapper) -> bool:
    """True if some non-constant tensor feeds several nodes (a fork, as in ResNets)."""
    for node in model.graph.node:
        for out in node.output:
            consumers = model.find_consumers(out)
            if consumers is not None and len(consumers) > 1:
                return True
    for inp in model.graph.input:
        consumers = model.find_consumers(inp.name)
        if consumers is not None and len(consumers) > 1:
            return True
    return False


# --- FINN's steps, restated ------------------------------------------------------------


def step_qonnx_to_finn(model: ModelWrapper) -> ModelWrapper:
    """FINN's `step_qonnx_to_finn`: QONNX cleanup, then `ConvertQONNXtoFINN`."""
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.qonnx.quant_act_to_multithreshold import (
        default_filter_function_generator,
    )
    from qonnx.util.cleanup import cleanup_model

    q_count = sum(len(model.get_nodes_by_op_type(op))
                  for op in ("BipolarQuant", "BinaryQuant", "Quant", "Trunc"))
    if q_count == 0:
        return model
    model = cleanup_model(model)
    model = model.transform(ShapeScalarBiasQuantParams())
    model = model.transform(RemoveWideningTruncShift())
    if is_1d(model):
        # PyTorch's 1-D tensors are (N, C, L); qonnx would guess NWC for the input, and
        # FINN's conversion gives the input thresholds the input's layout
        import qonnx.core.data_layout as data_layout

        for inp in model.graph.input:
            shape = model.get_tensor_shape(inp.name)
            if shape is not None and len(shape) == 3:
                model.set_tensor_layout(inp.name, data_layout.NCW)
    return model.transform(ConvertQONNXtoFINN(
        filter_function=default_filter_function_generator(max_multithreshold_bit_width=8)))


def step_tidy_up(model: ModelWrapper) -> ModelWrapper:
    """FINN's `step_tidy_up`, plus `ConvertSpatialReduceMeanToGlobalAveragePool`."""
    from finn.transformation.qonnx.give_unique_node_names_recursive import (
        GiveUniqueNodeNamesRecursive,
    )
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import GiveReadableTensorNames, RemoveStaticGraphInputs
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    model = model.transform(InferShapes())
    model = model.transform(FoldConstants())
    model = model.transform(ConvertSpatialReduceMeanToGlobalAveragePool())
    model = model.transform(GiveUniqueNodeNamesRecursive())
    model = model.transform(GiveReadableTensorNames())
    model = model.transform(InferDataTypes())
    model = model.transform(RemoveStaticGraphInputs())
    return model


class ConvertSpatialReduceMeanToGlobalAveragePool(Transformation):
    """Replaces ReduceMean over axes (2, 3) of a 4D NCHW tensor (keepdims=1) with
    GlobalAveragePool, the form FINN's streamlining and InferGlobalAccPoolLayer know
    (PyTorch's AdaptiveAvgPool2d(1) exports as ReduceMean)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        from onnx import helper
        from qonnx.util.basic import get_by_name

        changed = False
        for idx, node in enumerate(list(model.graph.node)):
            if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx"):
                continue
            shape = model.get_tensor_shape(node.input[0])
            keep = get_by_name(node.attribute, "keepdims")
            if shape is None or len(shape) != 4 or (keep is not None and keep.i != 1):
                continue
            axes_attr = get_by_name(node.attribute, "axes")
            if len(node.input) > 1:
                axes = model.get_initializer(node.input[1])
                axes = None if axes is None else [int(a) for a in axes.flatten()]
            else:
                axes = list(axes_attr.ints) if axes_attr is not None else None
            if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
                continue
            # have: ReduceMean(x, axes=[2, 3], keepdims=1); want: GlobalAveragePool(x)
            gap = helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]],
                                   name=node.name)
            model.graph.node.remove(node)
            model.graph.node.insert(idx, gap)
            changed = True
        return model, changed


def step_insert_topk(model: ModelWrapper) -> ModelWrapper:
    """Appends a TopK (k=1) to the output, as FINN's CNV/TFC examples do."""
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK

    model = model.transform(InsertTopK(k=1))
    model = model.transform(InferShapes())
    model = model.transform(GiveUniqueNodeNames())
    model = model.transform(GiveReadableTensorNames())
    return model.transform(InferDataTypes())


def _resnet_streamline(model: ModelWrapper) -> ModelWrapper:
    """The linear/non-linear loop of FINN's `step_resnet50_streamline` (before lowering),
    restated (`finn.builder.custom_step_library.resnet`: `step_resnet50_streamline_linear`
    and `_nonlinear`, four iterations) so that every transformation's result is checked
    for connectivity, with `MoveLinearPastEltwiseAddKeepForks` for FINN's
    `MoveLinearPastEltwiseAdd` (which disconnects forks)."""
    from finn.transformation.streamline.absorb import (
        Absorb1BitMulIntoConv,
        Absorb1BitMulIntoMatMul,
        AbsorbAddIntoMultiThreshold,
        AbsorbMulIntoMultiThreshold,
        AbsorbScalarMulAddIntoTopK,
        FactorOutMulSignMagnitude,
    )
    from finn.transformation.streamline.collapse_repeated import (
        CollapseRepeatedAdd,
        CollapseRepeatedMul,
    )
    from finn.transformation.streamline.reorder import (
        MoveAddPastConv,
        MoveAddPastMul,
        MoveLinearPastFork,
        MoveMaxPoolPastMultiThreshold,
        MoveScalarAddPastMatMul,
        MoveScalarLinearPastInvariants,
        MoveScalarMulPastConv,
        MoveScalarMulPastMatMul,
    )
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from finn.transformation.streamline.sign_to_thres import ConvertSignToThres
    from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine
    from qonnx.transformation.double_to_single_float import DoubleToSingleFloat
    from qonnx.transformation.general import (
        ConvertDivToMul,
        ConvertSubToAdd,
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveUnusedTensors,
        SortGraph,
    )
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.remove import RemoveIdentityOps

    linear = [
        AbsorbScalarMulAddIntoTopK, ConvertSubToAdd, ConvertDivToMul, RemoveIdentityOps,
        CollapseRepeatedMul, BatchNormToAffine, ConvertSignToThres, MoveAddPastMul,
        MoveScalarAddPastMatMul, MoveAddPastConv, MoveScalarMulPastMatMul,
        MoveScalarMulPastConv, MoveScalarLinearPastInvariants, MoveAddPastMul,
        CollapseRepeatedAdd, CollapseRepeatedMul, AbsorbAddIntoMultiThreshold,
        FactorOutMulSignMagnitude, MoveMaxPoolPastMultiThreshold, AbsorbMulIntoMultiThreshold,
        Absorb1BitMulIntoMatMul, Absorb1BitMulIntoConv, RoundAndClipThresholds,
    ]
    nonlinear = [MoveLinearPastEltwiseAddKeepForks, MoveLinearPastFork]
    for _ in range(4):
        for trn in linear + nonlinear:
            model = _apply(model, trn(), "streamline")
            model = model.transform(GiveUniqueNodeNames())
        model = model.transform(RemoveUnusedTensors())
        model = model.transform(GiveReadableTensorNames())
        model = model.transform(InferDataTypes())
        model = model.transform(SortGraph())
    return model.transform(DoubleToSingleFloat())


class MergeIdenticalTransposesBeforeFork(Transformation):
    """Replaces identical Transposes on every branch of a fork with one Transpose before
    the fork (the inverse of FINN's `MoveTransposePastFork`): conv lowering puts an
    NCHW -> NHWC Transpose on each branch that reads a shared tensor (Concat/Inception
    branches), and FINN's `AbsorbTransposeIntoMultiThreshold` absorbs only a Transpose
    that is its threshold's single consumer."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        from qonnx.util.basic import get_by_name

        graph = model.graph
        for tensor in {t for n in graph.node for t in n.input}:
            consumers = model.find_consumers(tensor) or []
            if len(consumers) < 2 or model.get_initializer(tensor) is not None:
                continue
            if any(c.op_type != "Transpose" for c in consumers):
                continue
            perms = {tuple(get_by_name(c.attribute, "perm").ints) for c in consumers}
            outputs = {o.name for o in graph.output}
            if len(perms) != 1 or any(c.output[0] in outputs for c in consumers):
                continue
            # have: x -> {Transpose(p) -> y_i}; want: x -> Transpose(p) -> y -> {y_i readers}
            keep, *rest = consumers
            for other in rest:
                for reader in model.find_consumers(other.output[0]) or []:
                    for i, name in enumerate(reader.input):
                        if name == other.output[0]:
                            reader.input[i] = keep.output[0]
                graph.node.remove(other)
            return model, True
        return model, False
def is_1d(model: ModelWrapper) -> bool:
    """True if a Conv or MaxPool works on a 3-D (N, C, L) tensor (1-D convolutions)."""
    for n in model.graph.node:
        if n.op_type in ("Conv", "MaxPool", "AveragePool"):
            shape = model.get_tensor_shape(n.input[0])
            if shape is not None and len(shape) == 3:
                return True
    return False


def step_pre_streamline_1d(model: ModelWrapper) -> ModelWrapper:
    """FINN's 1-D flow (`finn.builder.custom_step_library.conv1d.step_pre_streamline`):
    qonnx's `Change3DTo4DTensors` makes every (N, C, L) tensor (N, C, L, 1) and 1-D
    conv/pool attributes 2-D (kernel k x 1), then `AbsorbScalarMulAddIntoTopK`. qonnx
    refuses graphs with other op types; they are named here."""
    import finn.transformation.streamline.absorb as absorb
    from qonnx.transformation.change_3d_tensors_to_4d import (
        Change3DTo4DTensors,
        _find_invalid_nodes,
    )

    invalid = _find_invalid_nodes(model)
    if invalid:
        nodes = [(_source_name(n), n.op_type) for n in model.graph.node
                 if n.op_type in set(invalid)]
        raise UnsupportedNodesError(
            nodes, "in a 1-D network (FINN's Change3DTo4DTensors, which makes 1-D "
            "convolutions 2-D, does not handle these op types)")
    model = _apply(model, Change3DTo4DTensors(), "streamline")
    # qonnx leaves the 3-D layouts: (N, C, L) is now (N, C, L, 1), NCHW, for the tensor
    # annotations and the MultiThresholds' data_layout, so that FINN's conversion puts
    # the layout Transpose in front of the input thresholds (on the host), as in 2-D
    import qonnx.core.data_layout as data_layout
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    to_4d = {"NCW": "NCHW", "NWC": "NHWC"}
    for n in model.get_nodes_by_op_type("MultiThreshold"):
        inst = getCustomOp(n)
        layout = inst.get_nodeattr("data_layout")
        layout = layout.decode() if isinstance(layout, bytes) else str(layout)
        if layout in to_4d:
            inst.set_nodeattr("data_layout", to_4d[layout])
    for inp in model.graph.input:
        shape = model.get_tensor_shape(inp.name)
        if shape is not None and len(shape) == 4:
            model.set_tensor_layout(inp.name, data_layout.NCHW)
    model = model.transform(InferDataLayouts())
    return model.transform(absorb.AbsorbScalarMulAddIntoTopK())


def absorb_layout_transposes(model: ModelWrapper, residual: bool) -> ModelWrapper:
    """After convs were lowered to Im2Col + MatMul in NHWC: FINN's transpose absorption,
    plus (for residual graphs) moving transposes past joins and forks, as in FINN's
    ResNet-50 recipe, repeated until the graph no longer changes (each residual block
    needs its own rounds: FINN's recipe runs them once, which leaves `Shuffle` layers
    between consecutive identity blocks). Shared with the lowering of nashc's hybrid
    convs; every transformation's result is checked for connectivity."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline.reorder import (
        MakeMaxPoolNHWC,
        MoveMulPastJoinConcat,
        MoveTransposePastEltwise,
        MoveTransposePastFork,
        MoveTransposePastJoinAdd,
        MoveTransposePastJoinConcat,
    )
    from qonnx.transformation.general import GiveUniqueNodeNames

    step = "streamline"
    model = _apply(model, MakeMaxPoolNHWC(), step)
    model = _apply(model, absorb.AbsorbTransposeIntoMultiThreshold(), step)
    model = _apply(model, MakeMaxPoolNHWC(), step)
    model = _apply(model, absorb.AbsorbConsecutiveTransposes(), step)
    if residual:
        # a fixed point; the bound only guards against two rewrites undoing each other
        for _ in range(4 * len(model.graph.node) + 3):
            before = _layout_signature(model)
            # FINN's branch recipe also moves transposes past channel Concats (joins)
            for trn in (MoveTransposePastJoinAdd(), MoveTransposePastJoinConcat(),
                        MoveMulPastJoinConcat(), MoveTransposePastFork(),
                        MoveTransposePastEltwise(), absorb.AbsorbConsecutiveTransposes(),
                        absorb.AbsorbTransposeIntoMultiThreshold()):
                model = _apply(model, trn, step)
                model = model.transform(GiveUniqueNodeNames())
            if _layout_signature(model) == before:
                break
        # branches that read one tensor (Concat/Inception) each got a layout Transpose;
        # one Transpose before the fork is absorbed by the threshold that produces it
        model = model.transform(MergeIdenticalTransposesBeforeFork())
        model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
        model = model.transform(absorb.AbsorbConsecutiveTransposes())
    return model


def _layout_signature(model: ModelWrapper) -> list[tuple[str, tuple[str, ...]]]:
    """Op types and inputs of every node, in order: equal before and after a round of
    rewrites when the round changed nothing."""
    return [(n.op_type, tuple(n.input)) for n in model.graph.node]


def step_streamline(model: ModelWrapper, residual: bool) -> ModelWrapper:
    """FINN's `step_streamline`, plus ResNet-50's moves past forks/joins when `residual`."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    model = model.transform(UnsqueezeToReshape())
    if is_1d(model):
        model = step_pre_streamline_1d(model)
    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    if residual:
        model = _resnet_streamline(model)
    model = model.transform(Streamline())
    if len(model.get_nodes_by_op_type("Conv")) > 0:
        _check_no_padded_bipolar_conv(model)
        model = model.transform(LowerConvsToMatMul())
        model = absorb_layout_transposes(model, residual)
        model = _apply(model, AbsorbReshapeTransposeIntoFc(), "streamline")
    if _has_bipolar_matmul(model):
        # thresholds on integer (bipolar dot product) inputs rounded up to integers first:
        # the XNOR conversion adds -N (the dot product is 2 x popcount - N) in front of
        # them, and FINN's AbsorbAddIntoMultiThreshold adds N to float32 thresholds, which
        # moves a threshold just above an integer (2.0000002, from BatchNorm statistics)
        # onto it (290.0): an off-by-one code in the XNOR layers
        model = model.transform(InferDataTypes())
        model = model.transform(RoundAndClipThresholds())
    model = model.transform(ConvertBipolarMatMulToXnorPopcount())
    model = model.transform(Streamline())
    if model.get_nodes_by_op_type("GlobalAveragePool"):
        # FINN's step_convert_to_hw infers GlobalAccPool (an accumulating pool followed
        # by a Mul with 1/N) only after the thresholds became hardware layers, so the Mul
        # is stranded between them. Inferring it here lets streamlining absorb the Mul
        # into the next MultiThreshold.
        from finn.transformation.fpgadataflow.convert_to_hw.global_acc_pool import (
            InferGlobalAccPoolLayer,
        )

        model = model.transform(InferGlobalAccPoolLayer())
        model = model.transform(InferDataTypes())
        model = model.transform(Streamline())
    model = model.transform(absorb.AbsorbScalarMulAddIntoTopK())
    model = _apply(model, MoveTransposeToGraphEnd(), "streamline")
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(InferDataTypes())
    model = model.transform(InferDataLayouts())
    model = model.transform(RemoveUnusedTensors())
    return model


def _check_no_padded_bipolar_conv(model: ModelWrapper) -> None:
    """Raises `UnsupportedNodesError` for a padded Conv on a bipolar input: PyTorch pads
    with 0, which bipolar values (-1/+1) cannot hold; FINN's XNOR layers encode -1 as 0,
    so the padding would become -1 (BNN-PYNQ's CNV uses unpadded convs for this)."""
    from qonnx.core.datatype import DataType
    from qonnx.util.basic import get_by_name

    bad = []
    for n in model.get_nodes_by_op_type("Conv"):
        pads = get_by_name(n.attribute, "pads")
        if pads is None or not any(pads.ints):
            continue
        if model.get_tensor_datatype(n.input[0]) == DataType["BIPOLAR"]:
            bad.append((_source_name(n), n.op_type))
    if bad:
        raise UnsupportedNodesError(
            bad, "pad a bipolar input: zero padding has no bipolar (-1/+1) value and FINN's "
            "XNOR layers would pad with -1; use unpadded convolutions (pad 0) after "
            "bipolar activations, or a non-bipolar activation before a padded one")


def _has_bipolar_matmul(model: ModelWrapper) -> bool:
    """True if a MatMul multiplies a bipolar tensor by bipolar weights (an XNOR layer)."""
    from qonnx.core.datatype import DataType

    bip = DataType["BIPOLAR"]
    return any(n.op_type == "MatMul" and len(n.input) == 2 and
               model.get_tensor_datatype(n.input[0]) == bip and
               model.get_tensor_datatype(n.input[1]) == bip
               for n in model.graph.node)


def remove_cnv_to_fc_flatten(model: ModelWrapper) -> ModelWrapper:
    """FINN's `RemoveCNVtoFCFlatten`, also for nashc's shift/adder fc units: FINN folds the
    NHWC -> NCHW Transpose + Flatten in front of an fc layer into its weight rows only
    when the layer's op type starts with "MVAU", so nashc's units (ShiftMVAU, AdderMVAU)
    are shown to it as MVAUs and renamed back (the row permutation is valid for shift
    codes and adder weights alike)."""
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten

    from nashc.targets.folding import restore_op_types, show_as_finn_mvau

    show_as_finn_mvau(model)
    model = model.transform(RemoveCNVtoFCFlatten())
    restore_op_types(model)
    return model


def step_convert_to_hw(model: ModelWrapper) -> ModelWrapper:
    """FINN's `step_convert_to_hw` with the default config (thresholds fused into MVAUs)."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.absorb_into_requant import (
        AbsorbElementwiseOpsIntoRequant,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.concat import InferConcatLayer
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.crop import InferCrop
    from finn.transformation.fpgadataflow.convert_to_hw.duplicate_streams import (
        InferDuplicateStreamsLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import (
        InferElementwiseBinaryOperation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.fm_padding import InferFMPadding
    from finn.transformation.fpgadataflow.convert_to_hw.global_acc_pool import (
        InferGlobalAccPoolLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.hw_softmax import InferHWSoftmax
    from finn.transformation.fpgadataflow.convert_to_hw.label_select import (
        InferLabelSelectLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.layer_norm import InferLayerNorm
    from finn.transformation.fpgadataflow.convert_to_hw.lookup import InferLookupLayer
    from finn.transformation.fpgadataflow.convert_to_hw.pad1d import InferPad1DLayer
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.pool_from_reduce import (
        InferPoolFromReduce,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.pwpolyf import InferPWPolyFLayer
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (  # noqa: E501
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.relu_as_elementwise_max import (
        InferReLUAsElementwiseMax,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.requant import InferRequantLayer
    from finn.transformation.fpgadataflow.convert_to_hw.select_token import (
        InferSelectTokenLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.shuffle import InferShuffle
    from finn.transformation.fpgadataflow.convert_to_hw.split import InferSplitLayer
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample
    from finn.transformation.fpgadataflow.convert_to_hw.vector_vector_activation import (
        InferVectorVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.where import InferWhereLayer
    from finn.transformation.qonnx.give_unique_node_names_recursive import (
        GiveUniqueNodeNamesRecursive,
    )
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    def when(model: ModelWrapper, op_types: Sequence[str],
             trn: Transformation) -> ModelWrapper:
        if any(model.get_nodes_by_op_type(op) for op in op_types):
            model = model.transform(trn)
        return model

    model = when(model, ["XnorPopcountMatMul"], InferBinaryMatrixVectorActivation())
    model = when(model, ["MatMul"], InferQuantizedMatrixVectorActivation())
    model = when(model, ["MatMul"], InferVectorVectorActivation())
    model = when(model, ["TopK"], InferLabelSelectLayer())
    model = when(model, ["MultiThreshold", "Quant"],
                 InferRequantLayer(bitwidth_threshold=9))
    model = when(model, ["MultiThreshold"], InferThresholdingLayer())
    model = when(model, ["Pad"], InferFMPadding())
    model = when(model, ["MaxPool", "AveragePool", "MaxPoolNHWC", "QuantAvgPool2d"],
                 InferPool())
    model = when(model, ["ReduceMax", "ReduceSum", "ReduceMean"], InferPoolFromReduce())
    model = when(model, ["Im2Col"], InferConvInpGen())
    if model.get_nodes_by_op_type("ConvolutionInputGenerator"):
        model = remove_cnv_to_fc_flatten(model)
    model = when(model, ["Concat"], InferPad1DLayer())
    model = when(model, ["Concat"], InferConcatLayer())
    model = when(model, ["Split"], InferSplitLayer())
    model = when(model, ["Mul", "Div", "Sub", "Add", "And", "Or", "Xor", "Equal", "Less",
                         "LessOrEqual", "Greater", "GreaterOrEqual"],
                 InferElementwiseBinaryOperation())
    model = when(model, ["Where"], InferWhereLayer())
    model = when(model, ["Relu"], InferReLUAsElementwiseMax())
    model = when(model, ["Upsample"], InferUpsample())
    model = when(model, ["GlobalAveragePool"], InferGlobalAccPoolLayer())
    model = when(model, ["Gather"], InferSelectTokenLayer())
    model = when(model, ["Gather"], InferCrop())
    model = when(model, ["Gather"], InferLookupLayer())
    model = when(model, ["Softmax"], InferHWSoftmax())
    model = when(model, ["PWPolyF", "Gelu", "Sigmoid", "Tanh", "Erf"], InferPWPolyFLayer())
    model = when(model, ["LayerNormalization"], InferLayerNorm())
    model = when(model, ["Crop"], InferCrop())
    model = model.transform(InferDuplicateStreamsLayer())
    model = when(model, ["Requant"], AbsorbElementwiseOpsIntoRequant())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = remove_cnv_to_fc_flatten(model)
    model = model.transform(GiveUniqueNodeNamesRecursive())
    model = model.transform(InferDataLayouts())
    model = model.transform(InferDataTypes())
    model = model.transform(InferShapes())
    # FINN's step runs InferReshape on every Reshape; static Reshapes at the graph's ends
    # stay on the host here (as in FINN's TFC example), one between hardware layers (an
    # fc layer feeding a conv, see AbsorbReshapeTransposeIntoFc) becomes FINN's
    # pass-through `Reshape` layer
    model = infer_inner_reshapes(model)
    model = when(model, ["Transpose"], InferShuffle(_shuffle_filter))
    return model


def infer_inner_reshapes(model: ModelWrapper) -> ModelWrapper:
    """FINN's `InferReshape` for the static `Reshape`s between two hardware layers (its
    conversion, restricted to those): a pass-through `Reshape` layer with `inp_shape`,
    `out_shape` and `dtype`; Reshapes at the graph's ends stay on the host."""
    import finn.custom_op.fpgadataflow.reshape  # noqa: F401  registers FINN's Reshape layer
    import numpy as np
    from finn.util.basic import getHWCustomOp
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import remove_by_name

    changed = False
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.domain == "finn.custom_op.fpgadataflow":
            continue
        producer = model.find_producer(node.input[0])
        consumers = model.find_consumers(node.output[0]) or []
        if producer is None or not is_fpgadataflow_node(producer) or not consumers or \
                not all(is_fpgadataflow_node(c) for c in consumers):
            continue
        target = model.get_initializer(node.input[1])
        ishape = model.get_tensor_shape(node.input[0])
        oshape = model.get_tensor_shape(node.output[0])
        if target is None or ishape is None or oshape is None or \
                int(np.prod(ishape)) != int(np.prod(oshape)):
            continue
        node.domain = "finn.custom_op.fpgadataflow"
        inst = getHWCustomOp(node)
        inst.set_nodeattr("backend", "fpgadataflow")
        remove_by_name(node.attribute, "allowzero")
        inst.set_nodeattr("inp_shape", [int(d) for d in ishape])
        inst.set_nodeattr("out_shape", [int(d) for d in oshape])
        inst.set_nodeattr("dtype", model.get_tensor_datatype(node.input[0]).name)
        node.input.pop(1)
        changed = True
    if changed:
        model = model.transform(InferShapes())
        model = model.transform(InferDataTypes())
    return model


# --- partition and checks ---------------------------------------------------------------


_SOURCE_TAG = "nashc-source-name:"


def _tag_of(node) -> str | None:  # type: ignore[no-untyped-def]
    """The user's name a node carries (None: none). The tag ends the doc_string (other
    tags, e.g. `show_as_finn_mvau`'s, may come before it)."""
    i = node.doc_string.find(_SOURCE_TAG)
    return node.doc_string[i + len(_SOURCE_TAG):] if i >= 0 else None


def _tag_source_names(model: ModelWrapper) -> None:
    """Remembers each node's name in its doc_string: FINN's tidy-up renames nodes, and
    errors should name nodes as the user does: a layer's name from the `.nash` file or
    `network ... from` (``nashc.layer=NAME``), else the node's name in the model."""
    from nashc.runtime.load import LAYER_TAG

    for n in model.graph.node:
        if _tag_of(n) is not None:
            continue
        name = n.doc_string[len(LAYER_TAG):] if n.doc_string.startswith(LAYER_TAG) \
            else n.name
        if name:
            n.doc_string = _SOURCE_TAG + name


#: op types whose user name a replacement prefers (the layer, not its activation)
_LAYER_OPS = frozenset({"Conv", "MatMul", "Gemm", "ShiftConv", "AdderConv", "ShiftMatMul",
                        "AdderMatMul", "Im2Col", "MVAU", "VVAU", "MaxPool", "AveragePool",
                        "Concat", "Add"})


def _inherit_source_names(model: ModelWrapper,
                          before: list[tuple[str, str, set[str], set[str]]],
                          before_count: dict[str, int]) -> None:
    """Nodes a transformation created carry the user's name of the node they replaced.

    A replaced node is one whose tag occurs fewer times now than before. Each new node
    takes the replaced node that scores best: +2 when it produced one of the new node's
    outputs, +1 when it read one of its inputs, +2 when it is a layer rather than an
    activation (so MatMul + MultiThreshold -> MVAU keeps the layer's name; a node
    replaced one to one, as SpecializeLayers does, keeps its own). New nodes no replaced
    node touches (Im2Col between the Transposes of a lowered Conv) take the name of a new
    neighbour, through tensors the transformation created.
    """
    from collections import Counter

    new = [n for n in model.graph.node if _tag_of(n) is None]
    if not new:
        return
    now = Counter(t for n in model.graph.node if (t := _tag_of(n)) is not None)
    dropped = [(tag, op, ins, outs) for tag, op, ins, outs in before
               if now[tag] < before_count[tag]]
    if not dropped:
        return
    old_tensors = set().union(*(ins | outs for _, _, ins, outs in before))
    got: dict[int, str] = {}
    for i, n in enumerate(new):
        ins, outs = set(n.input), set(n.output)
        best, score = None, 0
        for tag, op, b_ins, b_outs in dropped:
            sc = 2 * bool(b_outs & outs) + bool(b_ins & ins)
            if sc == 0:
                continue
            sc += 2 * (op in _LAYER_OPS)
            if sc > score:
                best, score = tag, sc
        if best is not None:
            got[i] = best
    by_tensor: dict[str, list[int]] = {}
    for i, n in enumerate(new):
        for t in [*n.input, *n.output]:
            if t and t not in old_tensors:
                by_tensor.setdefault(t, []).append(i)
    changed = True
    while changed:  # spread names to new neighbours through the new tensors
        changed = False
        for members in by_tensor.values():
            named = [got[i] for i in members if i in got]
            if named:
                for i in members:
                    if i not in got:
                        got[i] = named[0]
                        changed = True
    for i, tag in got.items():
        n = new[i]
        n.doc_string = (n.doc_string + " " if n.doc_string else "") + _SOURCE_TAG + tag


class _NamedModel(ModelWrapper):
    """A ModelWrapper whose transformations hand the user's node names on to the nodes
    they create (`_inherit_source_names`); FINN's own transformations run unchanged
    (nested `transform` calls go through this method too)."""

    def transform(self, transformation: Transformation, *args: object,
                  **kwargs: object) -> ModelWrapper:
        before: list[tuple[str, str, set[str], set[str]]] = []
        count: dict[str, int] = {}
        for n in self.graph.node:
            tag = _tag_of(n)
            if tag is None:
                continue
            count[tag] = count.get(tag, 0) + 1
            before.append((tag, n.op_type, set(n.input) - {""}, set(n.output)))
        out = super().transform(transformation, *args, **kwargs)  # type: ignore[arg-type]
        if not isinstance(out, _NamedModel):
            out.__class__ = _NamedModel
        _inherit_source_names(out, before, count)
        return out


def _source_name(node) -> str:  # type: ignore[no-untyped-def]
    """The node's name in the input model, e.g. `Weird_0 (now Sin_0)`."""
    orig = _tag_of(node)
    if orig is not None:
        return orig if orig == node.name else f"{orig} (now {node.name})"
    return node.name


def _int_dtype(model: ModelWrapper, tensor: str) -> bool:
    dt = model.get_tensor_datatype(tensor)
    return dt is not None and (dt.is_integer() or dt.name == "BIPOLAR")


def _float_origin(model: ModelWrapper, tensor: str) -> str:
    """Why `tensor` is not integer: the node nearest upstream whose inputs are integers
    and whose output is float, described in the user's names."""
    seen = set()
    t = tensor
    while t not in seen:
        seen.add(t)
        p = model.find_producer(t)
        if p is None:
            return "the network input is not quantized (no input quantizer)"
        data = [i for i in p.input if i and model.get_initializer(i) is None]
        floats = [i for i in data if not _int_dtype(model, i)]
        if not floats:
            const = [model.get_initializer(i) for i in p.input[1:]
                     if i and model.get_initializer(i) is not None]
            if p.op_type.endswith("Mul") and const and const[0].size > 1:
                return (f"{_source_name(p)} multiplies by a per-channel float scale "
                        f"(shape {tuple(const[0].shape)}): per-channel activation scales "
                        "cannot be absorbed into FINN's thresholds; use one scale per "
                        "tensor")
            return (f"the float output of {_source_name(p)} ({p.op_type}) reaches it "
                    "with no quantizer in between (FINN's layers take integers: quantize "
                    "the tensor, e.g. a Brevitas QuantIdentity or TruncAvgPool2d)")
        t = floats[0]
    return "a float cycle"


def _why_unsupported(model: ModelWrapper, node, quantized: bool) -> str:  # type: ignore[no-untyped-def]
    """Why FINN did not make `node` a hardware layer (FINN only logs most of these)."""
    if not quantized:
        return ("the model is not quantized (no Quant/BipolarQuant node): FINN lowers "
                "quantized layers only (export it with Brevitas quantizers)")
    if node.op_type == "Quant" and len(node.input) > 3:
        bits = model.get_initializer(node.input[3])
        if bits is not None and float(bits) > 8:
            return (f"bit width {float(bits):g} > 8: FINN turns activation quantizers of "
                    "at most 8 bits into thresholds (max_multithreshold_bit_width=8)")
    data = [i for i in node.input if i and model.get_initializer(i) is None]
    for i in data:
        if not _int_dtype(model, i):
            dt = model.get_tensor_datatype(i)
            return (f"Input is not int ({dt.name if dt is not None else '?'}): "
                    + _float_origin(model, i))
    if len(node.input) > 1 and model.get_initializer(node.input[1]) is not None \
            and node.op_type in ("MatMul", "Gemm", "Conv") \
            and not _int_dtype(model, node.input[1]):
        return "its weights are not quantized (float): FINN's MVAU needs integer weights"
    if node.op_type == "Transpose":
        return "a layout Transpose FINN's streamlining could not absorb next to it"
    return f"FINN has no hardware layer for {node.op_type} here"


class _FinnLog:
    """Collects what FINN's loggers warn during lowering (its reasons for skipping a
    layer are only logged), without printing it."""

    NAMES = ("finn_logger", "finn")

    def __enter__(self) -> list[str]:
        import logging

        self.records: list[str] = []
        records = self.records

        class _H(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                msg = record.getMessage()
                if msg not in records:
                    records.append(msg)

        self.handler = _H(logging.WARNING)
        self.saved = []
        for name in self.NAMES:
            lg = logging.getLogger(name)
            self.saved.append((lg, lg.level, lg.propagate))
            lg.setLevel(logging.WARNING)
            lg.propagate = False
            lg.addHandler(self.handler)
        return self.records

    def __exit__(self, *exc: object) -> None:
        for lg, level, prop in self.saved:
            lg.removeHandler(self.handler)
            lg.setLevel(level)
            lg.propagate = prop


def _check_supported(model: ModelWrapper, quantized: bool = True,
                     finn_log: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Raises for non-hardware nodes between hardware layers or of an op type the host
    cannot keep (naming each as the user does, with FINN's reason); returns the (name, op
    type) of the host nodes at the graph's ends."""
    from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers

    nodes = [n for n in model.graph.node if not is_fpgadataflow_node(n)]
    non_hw = [(_source_name(n), n.op_type) for n in nodes]

    def reasons(sel: Sequence[tuple[str, str]]) -> dict[str, str]:
        names = {name for name, _ in sel}
        return {_source_name(n): _why_unsupported(model, n, quantized) for n in nodes
                if _source_name(n) in names}

    if not any(is_fpgadataflow_node(n) for n in model.graph.node):
        raise UnsupportedNodesError(non_hw, "and no hardware layer at all", reasons(non_hw),
                                    finn_log)
    ok, _first = model.analysis(unsupported_layers)
    if not ok:
        # layout/shape ops (Transpose, Flatten, ...) strand only because a layer next to
        # them did not become hardware: name those layers when there are any
        culprits = [(name, op) for name, op in non_hw if op not in HOST_OP_TYPES] or non_hw
        raise UnsupportedNodesError(culprits, "left between hardware layers (not hardware)",
                                    reasons(culprits), finn_log)
    bad = [(name, op) for name, op in non_hw if op not in HOST_OP_TYPES]
    if bad:
        raise UnsupportedNodesError(bad, "at the start/end of the graph not supported",
                                    reasons(bad), finn_log)
    return non_hw


def step_create_dataflow_partition(model: ModelWrapper,
                                   partition_dir: Path) -> tuple[ModelWrapper, ModelWrapper]:
    """FINN's `step_create_dataflow_partition`; returns (parent, dataflow child)."""
    from finn.transformation.fpgadataflow.create_dataflow_partition import (
        CreateDataflowPartition,
    )
    from qonnx.custom_op.registry import getCustomOp

    parent = model.transform(CreateDataflowPartition(partition_model_dir=str(partition_dir)))
    sdp_nodes = parent.get_nodes_by_op_type("StreamingDataflowPartition")
    if len(sdp_nodes) != 1:
        raise NashcError(f"FINN made {len(sdp_nodes)} dataflow partitions; expected one")
    sdp = getCustomOp(sdp_nodes[0])
    child = ModelWrapper(str(sdp.get_nodeattr("model")))
    sdp.set_nodeattr("model", "dataflow.onnx")
    return parent, child


#: FINN layers whose default RTL specialisation computes in DSP slices (FINN's
#: `_mvu_rtl_possible` / `_vvu_rtl_possible`); their HLS units also compute in LUTs
#: (``resType="lut"``)
DSP_RTL_OPS = ("MVAU", "VVAU")


def step_specialize_layers(model: ModelWrapper, fpga_part: str,
                           dsp_free: bool = False) -> ModelWrapper:
    """FINN's `step_specialize_layers` (no user config: FINN's default rules). With
    `dsp_free` (a budget of 0 DSP), MVAU/VVAU layers that do not say otherwise ask for
    their HLS unit (``preferred_impl_style="hls"``): FINN would otherwise give every
    eligible one (signed weights and inputs of 4+ bits, no thresholds inside) its
    DSP-based RTL unit, which no folding can fit into 0 DSP."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.qonnx.give_unique_node_names_recursive import (
        GiveUniqueNodeNamesRecursive,
    )
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    if dsp_free:
        for node in model.graph.node:
            if node.op_type in DSP_RTL_OPS:
                inst = getCustomOp(node)
                if inst.get_nodeattr("preferred_impl_style") == "":
                    inst.set_nodeattr("preferred_impl_style", "hls")
    model = model.transform(SpecializeLayers(fpga_part))
    model = model.transform(GiveUniqueNodeNamesRecursive())
    model = model.transform(InferShapes())
    return model.transform(InferDataTypes())


def _check_specialized(model: ModelWrapper) -> None:
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node

    bad = [n for n in model.graph.node if not (is_hls_node(n) or is_rtl_node(n))]
    if bad:
        raise UnsupportedNodesError(
            [(_source_name(n), n.op_type) for n in bad],
            "in the dataflow partition not specialised to HLS/RTL",
            {_source_name(n): "a Transpose (with the Reshapes around it) between hardware "
             "layers that reorders the stream (FINN's Shuffle layer)" if n.op_type == "Shuffle"
             else f"FINN's SpecializeLayers has no HLS/RTL variant of {n.op_type} for these "
             "attributes" for n in bad},
            hint=_SHUFFLE_HINT if any(n.op_type == "Shuffle" for n in bad) else "")


#: why a `Shuffle` (a Transpose, with the Reshapes around it, between hardware layers)
#: is refused
_SHUFFLE_HINT = (
    "nashc does not run FINN's transpose decomposition (InnerShuffle/OuterShuffle layers), "
    "so a reorder of the stream between layers is not lowered. Lowered are: the layout "
    "transposes FINN absorbs, transposes at the graph's start or end (left on the host), "
    "and an fc layer's output reshaped (and transposed) for a conv when only its "
    "activation lies between them (the fc then writes the conv's order)")


# --- driver ------------------------------------------------------------------------------


def lower_to_hw(model: ModelWrapper, board: Board, clock_mhz: float,
                extra_steps: Sequence[ExtraStep | Transformation] = (), *,
                insert_topk: bool = False, workdir: str | Path | None = None,
                save_steps: bool = False,
                on_step: Callable[[str], None] | None = None,
                dsp_free: bool = False) -> LoweredModel:
    """Lowers a QONNX/FINN-ONNX model to FINN hardware layers for `board`.

    Steps: QONNX->FINN, tidy-up, (TopK if `insert_topk`), streamline, extra steps,
    conversion to hardware layers, a check that every node between the hardware layers
    is one, the dataflow partition and specialisation to HLS/RTL for the board's part.
    Raises `UnsupportedNodesError` (a `NashcError`) naming each node (name, op type)
    that is not a hardware layer. FINN writes only inside `workdir` (a temporary
    directory when None); with `save_steps` the model after each step is saved there
    as `<i>_<step>.onnx`. `on_step(name)` is called as each step starts (progress).
    `dsp_free`: the design may use no DSP (`step_specialize_layers`).
    """
    from nashc.targets.hw_layers import register_hw_layers  # FINN's layer classes: heavy

    register_hw_layers()
    if clock_mhz <= 0:
        raise NashcError(f"clock must be positive, got {clock_mhz} MHz")
    extras = [e if isinstance(e, ExtraStep) else ExtraStep(type(e).__name__, e)
              for e in extra_steps]
    for e in extras:
        if e.after not in LOWERING_STEPS:
            raise NashcError(f"extra step {e.name!r}: unknown phase {e.after!r}")
    tmp: Path | None = None
    if workdir is None:
        from nashc.targets.outdir import owned_temp_dir, remove_stale

        base = Path(tempfile.gettempdir())
        remove_stale(base)  # left by nashc processes killed with SIGKILL
        tmp = owned_temp_dir(base, "nashc_finn_")
        workdir = tmp
    work = Path(workdir)
    try:
        with finn_workspace(work):
            return _lower(model, board, clock_mhz, extras, insert_topk, work, save_steps,
                          on_step, dsp_free)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _lower(model: ModelWrapper, board: Board, clock_mhz: float, extras: list[ExtraStep],
           insert_topk: bool, work: Path, save_steps: bool,
           on_step: Callable[[str], None] | None = None,
           dsp_free: bool = False) -> LoweredModel:
    timings: dict[str, float] = {}
    counter = [0]

    def run(name: str, fn: Callable[[ModelWrapper], ModelWrapper],
            m: ModelWrapper) -> ModelWrapper:
        if on_step is not None:
            on_step(name)
        t0 = time.perf_counter()
        try:
            m = fn(m)
        except NashcError:
            raise
        except Exception as err:  # FINN/QONNX failures: say which step, keep the cause
            raise NashcError(f"lowering step {name} failed: {type(err).__name__}: {err}") \
                from err
        timings[name] = time.perf_counter() - t0
        if not isinstance(m, _NamedModel):  # a step made a new wrapper: keep tracking
            m.__class__ = _NamedModel
        missing = dangling_inputs(m)
        if missing:
            raise BrokenGraphError(name, missing)
        if save_steps:
            counter[0] += 1
            m.save(str(work / f"{counter[0]:02d}_{name}.onnx"))
        return m

    from nashc.runtime.load import normalise_model

    model, _ = normalise_model(_NamedModel(_copy_proto(model)), raise_opset=False)
    if not isinstance(model, _NamedModel):
        model.__class__ = _NamedModel
    _tag_source_names(model)
    quantized = any(n.op_type in ("Quant", "BipolarQuant", "Trunc", "MultiThreshold")
                    for n in model.graph.node)
    residual = has_residual_forks(model)
    phases: dict[str, Callable[[ModelWrapper], ModelWrapper]] = {
        "qonnx_to_finn": step_qonnx_to_finn,
        "tidy_up": step_tidy_up,
        "streamline": lambda m: step_streamline(m, residual),
        "convert_to_hw": step_convert_to_hw,
    }
    with _FinnLog() as finn_log:
        for phase in LOWERING_STEPS:
            model = run(phase, phases[phase], model)
            if phase == "tidy_up" and insert_topk:
                model = run("insert_topk", step_insert_topk, model)
            for extra in extras:
                if extra.after == phase:
                    model = run(extra.name, extra.run, model)
        host_nodes = _check_supported(model, quantized, finn_log)
        if on_step is not None:
            on_step("create_dataflow_partition")
        parent, child = step_create_dataflow_partition(model, work / "partitions")
        child.__class__ = _NamedModel  # SpecializeLayers replaces every node: keep names
        child = run("specialize_layers",
                    lambda m: step_specialize_layers(m, board.part, dsp_free), child)
        _check_specialized(child)
    parent.__class__ = child.__class__ = ModelWrapper  # plain wrappers for the callers
    return LoweredModel(dataflow=child, parent=parent, board=board, clock_mhz=clock_mhz,
                        host_nodes=host_nodes, step_seconds=timings)


def _copy_proto(model: ModelWrapper):  # type: ignore[no-untyped-def]
    import copy

    return copy.deepcopy(model.model)
