"""Parser of `.nash` files: Lark grammar (`grammar.lark`) -> typed AST (`nashc.dsl.ast`).

Only the syntax and the form of values are checked here (a whole number where one is
needed, a known datatype name, each setting at most once); ranges, shapes, selectors and
targets are checked in `nashc.dsl.check`. Nothing in a `.nash` file is ever executed.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.lexer import PatternStr

from nashc.dsl.ast import (
    SPACE_DIMS,
    BlockStmt,
    BudgetItem,
    ConvStmt,
    DType,
    FcStmt,
    Hardware,
    InputSpec,
    LayerStmt,
    NashFile,
    Network,
    PoolStmt,
    Pos,
    RepeatStmt,
    Search,
    Space,
    SpaceRule,
    Train,
)
from nashc.dsl.errors import NashSourceError

__all__ = ["parse", "parse_budget", "DTYPE_NAMES", "MAX_NESTING", "MAX_LAYERS"]

DTYPE_NAMES: tuple[str, ...] = (
    tuple(f"int{b}" for b in range(2, 9)) + tuple(f"uint{b}" for b in range(1, 9)) + ("bipolar",)
)
MAX_NESTING = 16  # nested `repeat` blocks
MAX_LAYERS = 10_000  # layers of a network after `repeat` expansion
_MAX_DIGITS = 15  # longer numbers are certainly a mistake (and would overflow floats)

# Named terminals of the grammar, in words a user understands.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a quoted path or name ("...")',
    "SHAPE": "a shape CxHxW such as 3x32x32",
    "DTYPE": "a datatype (int2..int8, uint1..uint8, bipolar)",
    "PATTERN": 'a layer name or glob pattern (quoted: "/fc/MatMul")',
    "BOARD": "a board name such as u250",
    "DIM": "'op', 'kernel', 'width', 'wbits' or 'abits'",
    "POOL_MODE": "'max' or 'avg'",
    "FREQ_UNIT": "a frequency unit (MHz, GHz, kHz)",
    "TIME_UNIT": "a time unit (ns, us, ms, s)",
    "EVO_KEY": "'population' or 'generations'",
    "ACCEL": "'coarse_to_fine' or 'finn_setfolding'",
    "DATASET_WITH_PATH": "'cifar10' or 'imagefolder'",
    "PERCENT": "'%'",
    "_SEP": "the end of the statement (newline or ';')",
    "$END": "the end of the file",
}
_MAX_EXPECTED = 8


class _LayerCount:
    """Counts layer statements while the lexer reads them, so a huge file is rejected at
    its (MAX_LAYERS + 1)-th layer statement instead of after parsing all of it. Each
    statement is at least one layer after expansion (a `repeat` count is at least 1), so
    the count is a lower bound; `nashc.dsl.check` checks the expanded count."""

    filename = "<string>"
    text = ""
    count = 0

    @classmethod
    def reset(cls, filename: str, text: str) -> None:
        cls.filename, cls.text, cls.count = filename, text, 0

    @classmethod
    def token(cls, tok: Token) -> Token:
        cls.count += 1
        if cls.count > MAX_LAYERS:
            raise NashSourceError(
                f"more than {MAX_LAYERS} layers: this is layer statement {cls.count}",
                Pos(cls.filename, tok.line or 1, tok.column or 1),
                f"at most {MAX_LAYERS} layers (use `repeat N {{ ... }}` for regular "
                "structure)", cls.text)
        return tok


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=False,
                lexer_callbacks={k: _LayerCount.token for k in ("CONV", "FC", "BLOCK", "POOL")})


# --- error translation ---------------------------------------------------------------


def _terminal_words(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        term = _lark().get_terminal(name)
    except KeyError:
        return name.lower()
    if isinstance(term.pattern, PatternStr):
        return f"'{term.pattern.value}'"
    return name.lower()


def _expected_text(names: set[str] | frozenset[str]) -> str:
    words = {_terminal_words(n) for n in names}

    def rank(w: str) -> tuple[int, str]:
        if w.startswith("'") and not w[1:2].isalpha():
            return (0, w)  # punctuation such as '}' first: usually the missing piece
        if w.startswith("'"):
            return (1, w)  # keywords
        return (3, w) if w.startswith("the end") else (2, w)

    ordered = sorted(words, key=rank)
    if len(ordered) > _MAX_EXPECTED:
        ends = [w for w in ordered if w.startswith("the end")]
        ordered = [w for w in ordered if not w.startswith("the end")][:_MAX_EXPECTED - 1]
        ordered += ["..."] + ends
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _keywords(names: set[str] | frozenset[str]) -> list[str]:
    out = []
    for n in names:
        try:
            term = _lark().get_terminal(n)
        except KeyError:
            continue
        if isinstance(term.pattern, PatternStr):
            out.append(term.pattern.value)
    return out


def _end_pos(text: str, filename: str) -> Pos:
    lines = text.rstrip().split("\n")
    return Pos(filename, len(lines), len(lines[-1]) + 1)


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "unexpected end of file"
    if tok.type == "_SEP":
        return "unexpected end of statement" if tok.value.startswith(";") else \
            "unexpected end of line"
    return f"unexpected {tok.value!r}"


def _syntax_error(err: UnexpectedInput, text: str, filename: str) -> NashSourceError:
    if isinstance(err, UnexpectedToken):
        tok = err.token
        expected = set(err.expected)
        if tok.type == "$END":
            pos = _end_pos(text, filename)
        else:
            pos = Pos(filename, tok.line or 1, tok.column or 1)
        message = _describe_token(tok)
        if tok.type not in ("$END", "_SEP"):
            close = difflib.get_close_matches(str(tok.value), _keywords(expected), n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        return NashSourceError(message, pos, _expected_text(expected), text)
    if isinstance(err, UnexpectedCharacters):
        pos = Pos(filename, err.line, err.column)
        at = err.pos_in_stream if err.pos_in_stream is not None else -1
        ch = text[at] if 0 <= at < len(text) else "?"
        allowed = set(err.allowed or ())
        return NashSourceError(f"unexpected character {ch!r}", pos,
                               _expected_text(allowed) if allowed else None, text)
    if isinstance(err, UnexpectedEOF):
        return NashSourceError("unexpected end of file", _end_pos(text, filename),
                               _expected_text(set(err.expected)), text)
    return NashSourceError(f"syntax error: {err}", None, None, text)


# --- values with positions -----------------------------------------------------------


@dataclass(frozen=True)
class _Val:
    """A value from the source with the position of its token."""

    value: Any
    pos: Pos


class _Builder(Transformer[Token, Any]):
    """Builds AST nodes bottom-up; tokens keep their positions."""

    def __init__(self, filename: str, text: str) -> None:
        super().__init__()
        self.filename = filename
        self.text = text
        self.base = Path(filename).parent

    # helpers ------------------------------------------------------------------------

    def _pos(self, obj: Any) -> Pos:
        if isinstance(obj, Token):
            return Pos(self.filename, obj.line or 1, obj.column or 1)
        return Pos(self.filename, getattr(obj, "line", 1) or 1, getattr(obj, "column", 1) or 1)

    def _err(self, message: str, pos: Pos, expected: str | None = None) -> NashSourceError:
        return NashSourceError(message, pos, expected, self.text)

    def _number(self, tok: Token) -> float:
        digits = sum(c.isdigit() for c in tok.value.split("e")[0].split("E")[0])
        if digits > _MAX_DIGITS:
            raise self._err(f"number {tok.value} is too large", self._pos(tok))
        value = float(tok.value)
        if not math.isfinite(value):
            raise self._err(f"number {tok.value} is too large", self._pos(tok))
        return value

    def _int(self, tok: Token, what: str) -> int:
        value = self._number(tok)
        if not value.is_integer() or any(c in tok.value for c in ".eE"):
            raise self._err(f"{what} must be a whole number, got {tok.value}", self._pos(tok),
                            "a whole number")
        return int(value)

    def _dtype(self, tok: Token) -> DType:
        name = str(tok.value)
        if name not in DTYPE_NAMES:
            close = difflib.get_close_matches(name, DTYPE_NAMES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise self._err(f"unknown datatype '{name}'{hint}", self._pos(tok),
                            "one of " + ", ".join(DTYPE_NAMES))
        return DType(name)

    def _settings(self, items: list[tuple[str, Any, Pos]], where: str
                  ) -> tuple[dict[str, Any], dict[str, Pos]]:
        """Collects (key, value, pos) settings; each key at most once."""
        values: dict[str, Any] = {}
        where_pos: dict[str, Pos] = {}
        for key, value, pos in items:
            if key in values:
                first = where_pos[key]
                raise self._err(f"'{key}' given twice in {where} (first at line {first.line})",
                                pos)
            values[key] = value
            where_pos[key] = pos
        return values, where_pos

    # network ----------------------------------------------------------------------------

    @v_args(meta=True)
    def input_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        shape_tok, dtype_tok = children
        pos = self._pos(meta)
        dims = shape_tok.value.split("x")
        if any(len(d) > _MAX_DIGITS for d in dims):
            raise self._err(f"shape {shape_tok.value} is too large", self._pos(shape_tok))
        if len(dims) != 3:
            raise self._err(
                f"unexpected input shape {shape_tok.value} ({len(dims)} dims): the language "
                "declares C x H x W inputs (e.g. 3x32x32)"
                + (": 1-D signals (C x L) and 1-D convolutions are not supported (kernels "
                   "and pools are square K x K, so `input "
                   f"{dims[0]}x1x{dims[1]}` would give K x K convs over a 1-pixel-high "
                   "map, not 1-D convs); load a 1-D model with "
                   '`network NAME from "model.onnx"`' if len(dims) == 2 else ""),
                self._pos(shape_tok), "a shape CxHxW such as 3x32x32")
        c, h, w = (int(d) for d in dims)
        spec = InputSpec(c, h, w, self._dtype(dtype_tok), pos,
                         value_pos={"shape": self._pos(shape_tok),
                                    "dtype": self._pos(dtype_tok)})
        return ("input", spec, pos)

    @v_args(meta=True)
    def net_weights(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("weights", self._dtype(children[0]), self._pos(meta))

    @v_args(meta=True)
    def net_activations(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("activations", self._dtype(children[0]), self._pos(meta))

    def layer_opt(self, children: list[Token]) -> tuple[str, Any, Pos]:
        key_tok, val_tok = children
        key = str(key_tok.value)
        value: Any
        if key in ("weights", "activations"):
            value = self._dtype(val_tok)
        else:
            value = self._int(val_tok, key)
        return (key, value, self._pos(val_tok))

    def _layer_opts(self, kind: str, name: Token, opts: list[tuple[str, Any, Pos]],
                    allowed: tuple[str, ...], required: tuple[str, ...], pos: Pos
                    ) -> tuple[dict[str, Any], dict[str, Pos]]:
        for key, _, kpos in opts:
            if key not in allowed:
                raise self._err(f"'{key}' does not apply to a {kind} layer", kpos,
                                " or ".join(f"'{a}'" for a in allowed))
        values, vpos = self._settings(opts, f"{kind} '{name}'")
        for key in required:
            if key not in values:
                raise self._err(f"{kind} '{name}' needs '{key} N'", pos,
                                f"'{key}' followed by a number")
        return values, vpos

    @v_args(meta=True)
    def conv_stmt(self, meta: Any, children: list[Any]) -> ConvStmt:
        name, *opts = children
        pos = self._pos(meta)
        v, vp = self._layer_opts("conv", name, opts,
                                 ("out", "kernel", "stride", "pad", "weights", "activations"),
                                 ("out", "kernel"), pos)
        vp["name"] = self._pos(name)
        return ConvStmt(str(name), v["out"], v["kernel"], v.get("stride", 1), v.get("pad"),
                        v.get("weights"), v.get("activations"), pos, value_pos=vp)

    @v_args(meta=True)
    def fc_stmt(self, meta: Any, children: list[Any]) -> FcStmt:
        name, *opts = children
        pos = self._pos(meta)
        v, vp = self._layer_opts("fc", name, opts, ("out", "weights", "activations"),
                                 ("out",), pos)
        vp["name"] = self._pos(name)
        return FcStmt(str(name), v["out"], v.get("weights"), v.get("activations"), pos,
                      value_pos=vp)

    @v_args(meta=True)
    def block_stmt(self, meta: Any, children: list[Any]) -> BlockStmt:
        name, *opts = children
        pos = self._pos(meta)
        v, vp = self._layer_opts("block", name, opts,
                                 ("out", "stride", "weights", "activations"), ("out",), pos)
        vp["name"] = self._pos(name)
        return BlockStmt(str(name), v["out"], v.get("stride", 1), "residual", pos,
                         v.get("weights"), v.get("activations"), value_pos=vp)

    def pool_stride(self, children: list[Token]) -> tuple[int, Pos]:
        return (self._int(children[0], "stride"), self._pos(children[0]))

    @v_args(meta=True)
    def pool_window(self, meta: Any, children: list[Any]) -> PoolStmt:
        name, mode, kernel, *rest = children
        vp = {"name": self._pos(name), "kernel": self._pos(kernel)}
        stride: int | None = None
        if rest:
            stride, vp["stride"] = rest[0]
        return PoolStmt(str(name), str(mode), self._int(kernel, "kernel"),  # type: ignore[arg-type]
                        stride, False, self._pos(meta), value_pos=vp)

    @v_args(meta=True)
    def pool_global(self, meta: Any, children: list[Any]) -> PoolStmt:
        name, mode = children
        if mode.value != "avg":
            raise self._err("only a global 'avg' pool is supported", self._pos(mode), "'avg'")
        return PoolStmt(str(name), "avg", None, None, True, self._pos(meta),
                        value_pos={"name": self._pos(name)})

    def layer_body(self, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def repeat_stmt(self, meta: Any, children: list[Any]) -> RepeatStmt:
        count_tok, body = children
        return RepeatStmt(self._int(count_tok, "repeat count"), tuple(body), self._pos(meta),
                          value_pos={"count": self._pos(count_tok)})

    def net_body(self, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def network_body(self, meta: Any, children: list[Any]) -> Network:
        name, body = children
        settings = [s for s in body if isinstance(s, tuple)]
        layers: list[LayerStmt] = [s for s in body if not isinstance(s, tuple)]
        values, vpos = self._settings(settings, f"network '{name}'")
        vpos["name"] = self._pos(name)
        return Network(str(name), self._pos(meta), values.get("input"), values.get("weights"),
                       values.get("activations"), tuple(layers), value_pos=vpos)

    @v_args(meta=True)
    def network_from(self, meta: Any, children: list[Token]) -> Network:
        name, string = children
        written = string.value[1:-1]
        if not written:
            raise self._err("empty path", self._pos(string), "a path to an ONNX file")
        source = Path(written)
        if not source.is_absolute():
            source = self.base / source
        return Network(str(name), self._pos(meta), source=source,
                       source_pos=self._pos(string), source_text=written,
                       value_pos={"name": self._pos(name)})

    # space ------------------------------------------------------------------------------

    def selector(self, children: list[Token]) -> list[Token]:
        out = []
        for tok in children:
            if tok.type == "STRING":  # a quoted name: the text between the quotes
                text = tok.value[1:-1]
                if not text:
                    raise self._err("empty layer name", self._pos(tok),
                                    "a layer name or glob pattern")
                tok = tok.update("PATTERN", text)
            out.append(tok)
        return out

    def option(self, children: list[Token]) -> _Val:
        tok = children[0]
        value: Any
        if tok.type == "NUMBER":
            f = self._number(tok)
            value = int(f) if f.is_integer() and not any(c in tok.value for c in ".eE") else f
        else:
            value = str(tok.value)
        return _Val(value, self._pos(tok))

    @v_args(meta=True)
    def space_rule(self, meta: Any, children: list[Any]) -> SpaceRule:
        dim_tok, selector, *options = children
        assert str(dim_tok) in SPACE_DIMS
        return SpaceRule(str(dim_tok), tuple(str(t) for t in selector),  # type: ignore[arg-type]
                         tuple(o.value for o in options), self._pos(meta),
                         tuple(self._pos(t) for t in selector), tuple(o.pos for o in options))

    @v_args(meta=True)
    def fix_stmt(self, meta: Any, children: list[Any]) -> _Val:
        return _Val(children[0], self._pos(meta))

    @v_args(meta=True)
    def space_body(self, meta: Any, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def space(self, meta: Any, children: list[Any]) -> Space:
        body = children[0]
        rules = tuple(c for c in body if isinstance(c, SpaceRule))
        fixes = [c for c in body if isinstance(c, _Val)]
        fixed = tuple(str(t) for f in fixes for t in f.value)
        fixed_item_pos = tuple(self._pos(t) for f in fixes for t in f.value)
        return Space(rules, fixed, fixes[0].pos if fixes else None, self._pos(meta),
                     fixed_item_pos)

    # hardware ---------------------------------------------------------------------------

    @v_args(meta=True)
    def target_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("target", _Val(str(children[0]).lower(), self._pos(children[0])),
                self._pos(meta))

    @v_args(meta=True)
    def clock_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        num, unit = children
        scale = {"mhz": 1.0, "ghz": 1000.0, "khz": 0.001}[unit.value.lower()]
        value = self._number(num)
        return ("clock", _Val((value * scale, f"{num.value} {unit.value}"), self._pos(num)),
                self._pos(meta))

    @v_args(meta=True)
    def period_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        num, unit = children
        ns = self._number(num) * {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[unit.value]
        mhz = 1000.0 / ns if ns > 0 else -1.0 if ns < 0 else 0.0
        return ("clock", _Val((mhz, f"period {num.value} {unit.value}"), self._pos(num)),
                self._pos(meta))

    def budget_item(self, children: list[Token]) -> BudgetItem:
        name, num, *pct = children
        return BudgetItem(str(name).lower(), self._number(num), bool(pct),  # type: ignore[arg-type]
                          self._pos(name))

    @v_args(meta=True)
    def budget_stmt(self, meta: Any, children: list[BudgetItem]) -> tuple[str, Any, Pos]:
        return ("budget", _Val(tuple(children), self._pos(meta)), self._pos(meta))

    @v_args(meta=True)
    def fps_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("fps", _Val(self._number(children[0]), self._pos(children[0])),
                self._pos(meta))

    @v_args(meta=True)
    def latency_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        num, unit = children
        ms = self._number(num) * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit.value]
        return ("latency", _Val((ms, f"{num.value} {unit.value}"), self._pos(num)),
                self._pos(meta))

    def hw_body(self, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def hardware(self, meta: Any, children: list[Any]) -> Hardware:
        values, _ = self._settings(children[0], "hardware")
        vpos = {k: v.pos for k, v in values.items()}
        target = values.get("target")
        clock = values.get("clock")
        latency = values.get("latency")
        fps = values.get("fps")
        return Hardware(
            self._pos(meta),
            target=target.value if target else None,
            target_pos=target.pos if target else None,
            clock_mhz=clock.value[0] if clock else None,
            budget=values["budget"].value if "budget" in values else (),
            fps_min=fps.value if fps else None,
            latency_max_ms=latency.value[0] if latency else None,
            clock_text=clock.value[1] if clock else None,
            latency_text=latency.value[1] if latency else None,
            value_pos=vpos,
        )

    # search -----------------------------------------------------------------------------

    def _one(self, key: str, meta: Any, tok: Token, what: str | None = None
             ) -> tuple[str, Any, Pos]:
        return (key, _Val(self._int(tok, what or key), self._pos(tok)), self._pos(meta))

    def metric_batch(self, children: list[Token]) -> Token:
        return children[0]

    @v_args(meta=True)
    def metric_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        name, *batch = children
        out: dict[str, _Val] = {"metric": _Val(str(name), self._pos(name))}
        if batch:
            out["metric_batch"] = _Val(self._int(batch[0], "batch"), self._pos(batch[0]))
        return ("metric", out, self._pos(meta))

    def evo_opt(self, children: list[Token]) -> tuple[str, Any, Pos]:
        key, num = children
        return (str(key), _Val(self._int(num, str(key)), self._pos(num)), self._pos(key))

    @v_args(meta=True)
    def strategy_evolution(self, meta: Any, children: list[Any]) -> tuple[str, Any, Pos]:
        values, _ = self._settings(children, "strategy")
        out: dict[str, Any] = {"strategy": _Val("evolution", self._pos(meta))}
        out.update(values)
        return ("strategy", out, self._pos(meta))

    def random_opt(self, children: list[Token]) -> _Val:
        return _Val(self._int(children[0], "samples"), self._pos(children[0]))

    @v_args(meta=True)
    def strategy_random(self, meta: Any, children: list[Any]) -> tuple[str, Any, Pos]:
        out: dict[str, Any] = {"strategy": _Val("random", self._pos(meta))}
        if children:
            out["samples"] = children[0]
        return ("strategy", out, self._pos(meta))

    @v_args(meta=True)
    def strategy_exhaustive(self, meta: Any, children: list[Any]) -> tuple[str, Any, Pos]:
        return ("strategy", {"strategy": _Val("exhaustive", self._pos(meta))}, self._pos(meta))

    @v_args(meta=True)
    def accel_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("accelerator", {"accelerator": _Val(str(children[0]), self._pos(children[0]))},
                self._pos(meta))

    @v_args(meta=True)
    def keep_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        key, val, pos = self._one("keep_pareto", meta, children[0], "keep pareto")
        return ("keep", {key: val}, pos)

    @v_args(meta=True)
    def seed_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        key, val, pos = self._one("seed", meta, children[0])
        return ("seed", {key: val}, pos)

    def search_body(self, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def search(self, meta: Any, children: list[Any]) -> Search:
        values, _ = self._settings(children[0], "search")
        flat: dict[str, _Val] = {}
        for group in values.values():
            flat.update(group)
        kwargs = {k: v.value for k, v in flat.items()}
        return Search(self._pos(meta), **kwargs, value_pos={k: v.pos for k, v in flat.items()})

    # train ------------------------------------------------------------------------------

    @v_args(meta=True)
    def dataset_digits(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("dataset", ("digits", None, None), self._pos(meta))

    @v_args(meta=True)
    def dataset_path(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        kind, string = children
        written = string.value[1:-1]
        if not written:
            raise self._err("empty path", self._pos(string), "a path to the dataset")
        path = Path(written)
        if not path.is_absolute():
            path = self.base / path
        return ("dataset", (str(kind), path, written), self._pos(meta))

    @v_args(meta=True)
    def epochs_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("epochs", _Val(self._int(children[0], "epochs"), self._pos(children[0])),
                self._pos(meta))

    @v_args(meta=True)
    def batch_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("batch", _Val(self._int(children[0], "batch"), self._pos(children[0])),
                self._pos(meta))

    @v_args(meta=True)
    def lr_stmt(self, meta: Any, children: list[Token]) -> tuple[str, Any, Pos]:
        return ("lr", _Val(self._number(children[0]), self._pos(children[0])), self._pos(meta))

    def train_body(self, children: list[Any]) -> list[Any]:
        return children

    @v_args(meta=True)
    def train(self, meta: Any, children: list[Any]) -> Train:
        values, vpos = self._settings(children[0], "train")
        kwargs: dict[str, Any] = {}
        out_pos: dict[str, Pos] = {}
        if "dataset" in values:
            kind, path, written = values.pop("dataset")
            kwargs.update(dataset=kind, dataset_path=path, dataset_path_text=written)
            out_pos["dataset"] = vpos["dataset"]
        for key, val in values.items():
            kwargs[key] = val.value
            out_pos[key] = val.pos
        return Train(self._pos(meta), **kwargs, value_pos=out_pos)

    # file -------------------------------------------------------------------------------

    def start(self, children: list[Any]) -> list[Any]:
        return children


def _check_nesting(text: str, filename: str) -> None:
    """Rejects absurdly deep `{` nesting before it can exhaust Python's recursion limit.

    Strings and comments end at a newline, so lines without a brace are skipped whole
    (fast on large files)."""
    depth = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if "{" not in line and "}" not in line:
            continue
        in_string = False
        for col, ch in enumerate(line, start=1):
            if ch == '"':
                in_string = not in_string
            elif in_string:
                continue
            elif ch == "#":
                break
            elif ch == "{":
                depth += 1
                if depth > MAX_NESTING + 2:
                    raise NashSourceError(f"nesting deeper than {MAX_NESTING} levels",
                                          Pos(filename, lineno, col), None, text)
            elif ch == "}":
                depth = max(0, depth - 1)


def parse(text: str, filename: str = "<string>") -> NashFile:
    """Parses the text of a `.nash` file into a `NashFile` (no semantic checks).

    Raises `NashSourceError` (file, line, column, what was expected) on any error.
    """
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark (editors on Windows write one)
    _check_nesting(text, filename)
    _LayerCount.reset(filename, text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text, filename) from None
    except LarkError as err:  # pragma: no cover - any other Lark failure is still ours
        raise NashSourceError(f"syntax error: {err}", None, None, text) from None
    try:
        sections = _Builder(filename, text).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, NashSourceError):
            raise err.orig_exc from None
        raise  # a bug in the builder, not a user error
    return _assemble(sections, text, filename)


@lru_cache(maxsize=1)
def _budget_lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=False, start="budget_stmt")


def parse_budget(text: str, filename: str = "--budget") -> tuple[BudgetItem, ...]:
    """Parses a resource budget written as in a `.nash` hardware section, e.g.
    ``"lut 30%, dsp 0"`` (the `budget_stmt` rule; a leading ``budget`` is optional).
    The items are checked as in a hardware section (`check.check_budget`: each resource
    given once, values in range).
    Raises `NashSourceError` (positions in the text as shown, with ``budget `` in front)."""
    src = text.strip()
    if not src.startswith("budget"):
        src = "budget " + src
    try:
        tree = _budget_lark().parse(src)
    except UnexpectedInput as err:
        raise _syntax_error(err, src, filename) from None
    try:
        _, val, _ = _Builder(filename, src).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, NashSourceError):
            raise err.orig_exc from None
        raise
    from nashc.dsl.check import check_budget  # check imports this module

    try:  # (unknown names: `targets.boards.budget_to_absolute` says so, at the item)
        check_budget(val.value, names=False)
    except NashSourceError as err:
        err.source = src
        raise
    return tuple(val.value)


def _assemble(sections: list[Any], text: str, filename: str) -> NashFile:
    found: dict[str, Any] = {}
    kinds = {Network: "network", Space: "space", Hardware: "hardware", Search: "search",
             Train: "train"}
    for sec in sections:
        kind = kinds[type(sec)]
        if kind in found:
            first = found[kind].pos
            line = f" (first at line {first.line})" if first is not None else ""
            raise NashSourceError(f"a second '{kind}' section{line}", sec.pos, None, text)
        found[kind] = sec
    if "network" not in found:
        pos = next((s.pos for s in sections), Pos(filename, 1, 1))
        raise NashSourceError("a .nash file needs a 'network' section", pos,
                              "'network NAME { ... }' or 'network NAME from \"file.onnx\"'",
                              text)
    return NashFile(Path(filename), found["network"], found.get("space"),
                    found.get("hardware"), found.get("search"), found.get("train"))
