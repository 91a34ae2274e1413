"""qonnx `Transformation`s on QONNX graphs: hybrid swaps, weight folding, bit widths,
channel widths, choices of a search space; zero-shot scores, NAS strategies and the cost
model live in their modules (`zeroshot`, `nas`, `costmodel`).

    from nashc.passes import ConvertConvToShift, SetChannelWidth
    model = model.transform(ConvertConvToShift("b*.conv*", bits=4))

The names below are imported from their module on first use (a module ``__getattr__``,
PEP 562), so ``import nashc.passes`` loads neither FINN nor PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nashc.passes.choices import ApplyChoices
    from nashc.passes.fold_weights import FoldBatchNormIntoConv, FoldWeightQuantToFloat
    from nashc.passes.graph import PassError
    from nashc.passes.hybrid import (
        ConvertConvToAdder,
        ConvertConvToShift,
        ConvertGemmToAdder,
        ConvertGemmToShift,
    )
    from nashc.passes.quant import SetActivationBits, SetWeightBits
    from nashc.passes.width import SetChannelWidth, SliceChannels

#: public name -> the module of this package that defines it
_EXPORTS = {
    "ApplyChoices": "choices",
    "ConvertConvToAdder": "hybrid",
    "ConvertConvToShift": "hybrid",
    "ConvertGemmToAdder": "hybrid",
    "ConvertGemmToShift": "hybrid",
    "FoldBatchNormIntoConv": "fold_weights",
    "FoldWeightQuantToFloat": "fold_weights",
    "PassError": "graph",
    "SetActivationBits": "quant",
    "SetChannelWidth": "width",
    "SetWeightBits": "quant",
    "SliceChannels": "width",
}

__all__ = [
    "ApplyChoices",
    "ConvertConvToAdder",
    "ConvertConvToShift",
    "ConvertGemmToAdder",
    "ConvertGemmToShift",
    "FoldBatchNormIntoConv",
    "FoldWeightQuantToFloat",
    "PassError",
    "SetActivationBits",
    "SetChannelWidth",
    "SetWeightBits",
    "SliceChannels",
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
