"""Typed AST of a `.nash` file.

Every node keeps the source position (`Pos`) of the statement it came from, so every
semantic error can point into the user's file. The parser (`nashc.dsl.parser`) builds
these from the Lark tree; `nashc.dsl.check` validates them and resolves the network
into a flat list of `ResolvedLayer`s with inferred shapes.

This module imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Pos",
    "DType",
    "InputSpec",
    "ConvStmt",
    "BlockStmt",
    "PoolStmt",
    "FcStmt",
    "RepeatStmt",
    "LayerStmt",
    "Network",
    "SpaceRule",
    "Space",
    "BudgetItem",
    "Hardware",
    "Search",
    "Train",
    "NashFile",
    "ResolvedLayer",
    "ResolvedNetwork",
    "Program",
    "SPACE_DIMS",
]


@dataclass(frozen=True)
class Pos:
    """A position in a source file (1-based line and column)."""

    file: str
    line: int
    col: int


@dataclass(frozen=True)
class DType:
    """A quantized datatype: `int2..int8`, `uint1..uint8` or `bipolar`.

    `name` is the spelling used in `.nash` files; `qonnx_name` the QONNX `DataType` name.
    """

    name: str

    @property
    def bipolar(self) -> bool:
        return self.name == "bipolar"

    @property
    def signed(self) -> bool:
        return self.bipolar or self.name.startswith("int")

    @property
    def bits(self) -> int:
        return 1 if self.bipolar else int(self.name.lstrip("uint"))

    @property
    def qonnx_name(self) -> str:
        return self.name.upper()

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class InputSpec:
    channels: int
    height: int
    width: int
    dtype: DType
    pos: Pos
    # Positions of single values (key: the keyword, e.g. "stride"), for exact errors.
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


# --- network statements (as written; `repeat` not yet expanded) -------------------


@dataclass(frozen=True)
class ConvStmt:
    name: str
    out: int
    kernel: int
    stride: int = 1
    pad: int | None = None  # None means "same": kernel // 2
    weights: DType | None = None
    activations: DType | None = None
    pos: Pos | None = None
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class BlockStmt:
    """A basic residual block: conv1 (3x3, stride) -> conv2 (3x3) plus shortcut.

    The shortcut is `NAME.down` (1x1 conv, stride) when the block changes stride or
    channel count, else the identity.
    """

    name: str
    out: int
    stride: int = 1
    kind: Literal["residual"] = "residual"
    pos: Pos | None = None
    weights: DType | None = None  # override for the block's convs
    activations: DType | None = None
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PoolStmt:
    name: str
    mode: Literal["max", "avg"]
    kernel: int | None = None  # None for a global pool
    stride: int | None = None  # None means stride = kernel
    global_: bool = False
    pos: Pos | None = None
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class FcStmt:
    name: str
    out: int
    weights: DType | None = None
    activations: DType | None = None
    pos: Pos | None = None
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class RepeatStmt:
    count: int
    body: tuple[LayerStmt, ...]
    pos: Pos | None = None
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


LayerStmt = ConvStmt | BlockStmt | PoolStmt | FcStmt | RepeatStmt


@dataclass(frozen=True)
class Network:
    name: str
    pos: Pos
    input: InputSpec | None = None
    weights: DType | None = None
    activations: DType | None = None
    layers: tuple[LayerStmt, ...] = ()
    source: Path | None = None  # `network NAME from "path"`, resolved against the file
    source_pos: Pos | None = None
    source_text: str | None = None  # the path as written
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


# --- space ---------------------------------------------------------------------------

SPACE_DIMS = ("op", "kernel", "width", "wbits", "abits")


@dataclass(frozen=True)
class SpaceRule:
    """`DIM SELECTOR in {OPTIONS}`; options are str for `op`, int for kernel/bits,
    float for `width`."""

    dim: Literal["op", "kernel", "width", "wbits", "abits"]
    selector: tuple[str, ...]
    options: tuple[str | int | float, ...]
    pos: Pos
    selector_pos: tuple[Pos, ...] = ()  # one per selector pattern
    option_pos: tuple[Pos, ...] = ()  # one per option


@dataclass(frozen=True)
class Space:
    rules: tuple[SpaceRule, ...] = ()
    fixed: tuple[str, ...] = ()
    fixed_pos: Pos | None = None
    pos: Pos | None = None
    fixed_item_pos: tuple[Pos, ...] = ()  # one per `fix` pattern


# --- hardware ------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetItem:
    """A resource budget: `lut 70%` (percent=True, value=70.0) or `lut 800000`."""

    resource: Literal["lut", "ff", "bram", "uram", "dsp"]
    value: float
    percent: bool
    pos: Pos


@dataclass(frozen=True)
class Hardware:
    pos: Pos
    target: str | None = None
    target_pos: Pos | None = None
    clock_mhz: float | None = None
    budget: tuple[BudgetItem, ...] = ()
    fps_min: float | None = None
    latency_max_ms: float | None = None
    clock_text: str | None = None  # as written, e.g. "period 4 ns"
    latency_text: str | None = None  # as written, e.g. "2 ms"
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


# --- search / train ------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    pos: Pos
    metric: str = "zero_shot"
    metric_batch: int = 32
    strategy: Literal["evolution", "random", "exhaustive"] = "evolution"
    population: int = 64
    generations: int = 20
    samples: int = 500
    accelerator: Literal["coarse_to_fine", "finn_setfolding"] = "coarse_to_fine"
    keep_pareto: int = 8
    seed: int = 0
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Train:
    pos: Pos
    dataset: Literal["digits", "cifar10", "imagefolder"] = "digits"
    dataset_path: Path | None = None
    epochs: int = 20
    batch: int = 64
    lr: float = 0.01
    dataset_path_text: str | None = None  # as written
    value_pos: dict[str, Pos] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class NashFile:
    """A parsed (not yet validated) `.nash` file."""

    path: Path
    network: Network
    space: Space | None = None
    hardware: Hardware | None = None
    search: Search | None = None
    train: Train | None = None


# --- after semantic checks -------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedLayer:
    """One layer of the network after `repeat` expansion and shape inference.

    kind: "conv" | "fc" | "pool" | "gap" (global avg pool) | "add" (residual join) |
    "block" (a residual block as a whole; its convs follow it as separate layers).
    Shapes are (C, H, W) for feature maps and (N,) after an fc layer.
    `parent` names the enclosing block for `NAME.conv1`, `NAME.conv2`, `NAME.down`.
    """

    name: str
    kind: Literal["conv", "fc", "pool", "gap", "add", "block"]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    pos: Pos
    weights: DType | None = None
    activations: DType | None = None
    kernel: int | None = None
    stride: int | None = None
    pad: int | None = None
    mode: str | None = None  # pool mode
    parent: str | None = None


@dataclass(frozen=True)
class ResolvedNetwork:
    name: str
    input_shape: tuple[int, int, int] | None
    input_dtype: DType | None
    layers: tuple[ResolvedLayer, ...]
    source: Path | None = None  # set for `network NAME from "path"`; layers then come from the graph

    def layer(self, name: str) -> ResolvedLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


@dataclass(frozen=True)
class Program:
    """A validated `.nash` file: the resolved network plus the other sections.

    `choices` maps (layer name, dim) -> options for every layer a `space` rule applies to
    (the last matching rule wins; `fix`ed layers are left out). Its product is the size of
    the search space.
    """

    file: NashFile
    network: ResolvedNetwork
    choices: dict[tuple[str, str], tuple[str | int | float, ...]] = field(default_factory=dict)

    @property
    def space_size(self) -> int:
        size = 1
        for options in self.choices.values():
            size *= len(options)
        return size
