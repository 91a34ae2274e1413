"""FPGA boards, resource budgets, lowering through FINN, FINN hardware layers for the
hybrid ops, verification level 3, the folding search and estimate reports.

    from nashc.targets import SearchFolding, lower_to_hw, get_board
    lowered = lower_to_hw(model, get_board("u250"), 250.0)
    folded = lowered.dataflow.transform(SearchFolding(budget, get_board("u250").part))

The names below are imported from their module on first use (a module ``__getattr__``,
PEP 562), so ``import nashc.targets`` (e.g. for the boards, as ``nashc check`` does)
loads neither FINN nor PyTorch. nashc's hardware layers are registered in FINN's domains
by the functions that hand graphs to FINN (`nashc.targets.hw_layers.register_hw_layers`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nashc.targets.boards import RESOURCE_KEYS, Board, Resources, get_board
    from nashc.targets.folding import SearchFolding, SetFoldingWithinBudget
    from nashc.targets.hw_layers import register_hw_layers
    from nashc.targets.hybrid_lowering import (
        InferHybridMVAU,
        LowerHybridConvsToMatMul,
        MoveScalarMulPastAdderMatMul,
        MoveScalarMulPastShiftMatMul,
        hybrid_extra_steps,
    )
    from nashc.targets.lower import ConvertSpatialReduceMeanToGlobalAveragePool, lower_to_hw
    from nashc.targets.verify import verify_dataflow

#: public name -> the module of this package that defines it
_EXPORTS = {
    "Board": "boards",
    "ConvertSpatialReduceMeanToGlobalAveragePool": "lower",
    "InferHybridMVAU": "hybrid_lowering",
    "LowerHybridConvsToMatMul": "hybrid_lowering",
    "MoveScalarMulPastAdderMatMul": "hybrid_lowering",
    "MoveScalarMulPastShiftMatMul": "hybrid_lowering",
    "RESOURCE_KEYS": "boards",
    "Resources": "boards",
    "SearchFolding": "folding",
    "SetFoldingWithinBudget": "folding",
    "get_board": "boards",
    "hybrid_extra_steps": "hybrid_lowering",
    "lower_to_hw": "lower",
    "register_hw_layers": "hw_layers",
    "verify_dataflow": "verify",
}

__all__ = [
    "Board",
    "ConvertSpatialReduceMeanToGlobalAveragePool",
    "InferHybridMVAU",
    "LowerHybridConvsToMatMul",
    "MoveScalarMulPastAdderMatMul",
    "MoveScalarMulPastShiftMatMul",
    "RESOURCE_KEYS",
    "Resources",
    "SearchFolding",
    "SetFoldingWithinBudget",
    "get_board",
    "hybrid_extra_steps",
    "lower_to_hw",
    "register_hw_layers",
    "verify_dataflow",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
