"""The human summary of a validated `.nash` file, printed by `nashc check`."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from nashc.dsl.ast import SPACE_DIMS, Program, ResolvedLayer

__all__ = ["print_summary", "format_space_size", "format_shape"]

_EXACT_LIMIT = 10**12
_RICH_ROWS = 200  # longer layer lists are printed as plain aligned columns


def _plain_table(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, a header and a rule."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def format_space_size(size: int) -> str:
    """The exact size up to 10^12, else `~10^N`."""
    if size <= _EXACT_LIMIT:
        return str(size)
    return f"~10^{round(math.log10(size))}"


def format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"


def _dtype(layer: ResolvedLayer, which: str) -> str:
    value = getattr(layer, which)
    return str(value) if value is not None else "-"


def _num(x: float) -> str:
    return f"{x:g}"


def print_summary(program: Program, console: Console | None = None) -> None:
    """Prints the network, search space, hardware, search and train settings."""
    con = console or Console()
    nf = program.file
    net = program.network
    head = f"[bold]network[/bold] {net.name}"
    if net.source is not None:
        head += f"  (from {net.source})"
    if net.input_shape is not None:
        dt = f" {net.input_dtype}" if net.input_dtype is not None else ""
        head += f"  input {format_shape(net.input_shape)}{dt}"
    con.print(f"{nf.path}: ok")
    con.print(head)

    cols = ("layer", "kind", "output", "weights", "activations")
    layer_rows = [(layer.name, layer.kind, format_shape(layer.out_shape),
                   _dtype(layer, "weights"), _dtype(layer, "activations"))
                  for layer in net.layers]
    if len(layer_rows) <= _RICH_ROWS:
        layers = Table(title=f"layers ({len(net.layers)})", title_justify="left")
        for col in cols:
            layers.add_column(col)
        for row in layer_rows:
            layers.add_row(*row)
        con.print(layers)
    else:  # rich lays out a table in time growing fast with its rows: plain columns
        con.print(f"layers ({len(net.layers)})")
        con.out(_plain_table(cols, layer_rows), highlight=False)

    if program.choices:
        by_dim: dict[tuple[str, tuple[str | int | float, ...]], list[str]] = defaultdict(list)
        for (layer_name, dim), options in program.choices.items():
            by_dim[(dim, options)].append(layer_name)
        space = Table(title="search space", title_justify="left")
        for col in ("dim", "layers", "options", "choices"):
            space.add_column(col)
        for (dim, options), names in sorted(by_dim.items(),
                                            key=lambda kv: SPACE_DIMS.index(kv[0][0])):
            space.add_row(dim, ", ".join(names), "{" + ", ".join(str(o) for o in options) + "}",
                          f"{len(options)}^{len(names)}")
        con.print(space)
        size = program.space_size
        con.print(f"[bold]search space size[/bold]: {format_space_size(size)}"
                  + (f" ({size})" if size > _EXACT_LIMIT else ""))
    else:
        con.print("[bold]search space[/bold]: none (the network as written)")
    if nf.space is not None and nf.space.fixed:
        con.print(f"fixed: {', '.join(nf.space.fixed)}")

    hw = nf.hardware
    if hw is not None:
        rows: list[tuple[str, str]] = []
        rows.append(("target", hw.target or "- (give --target)"))
        if hw.clock_mhz is not None:
            clock = f"{_num(hw.clock_mhz)} MHz"
            if hw.clock_text and hw.clock_text.startswith("period"):
                clock += f" ({hw.clock_text})"
            rows.append(("clock", clock))
        if hw.budget:
            rows.append(("budget", ", ".join(
                f"{b.resource} {_num(b.value)}{'%' if b.percent else ''}" for b in hw.budget)))
        if hw.fps_min is not None:
            rows.append(("fps", f">= {_num(hw.fps_min)}"))
        if hw.latency_max_ms is not None:
            rows.append(("latency", f"<= {hw.latency_text or _num(hw.latency_max_ms) + ' ms'}"))
        _kv(con, "hardware", rows)
    else:
        con.print("[bold]hardware[/bold]: none (give --target)")

    s = nf.search
    if s is not None:
        if s.strategy == "evolution":
            strategy = f"evolution population {s.population} generations {s.generations}"
        elif s.strategy == "random":
            strategy = f"random samples {s.samples}"
        else:
            strategy = "exhaustive"
        metric = "fidelity" if net.source is not None and "metric" not in s.value_pos \
            else s.metric
        _kv(con, "search", [
            ("metric", f"{metric} batch {s.metric_batch}"),
            ("strategy", strategy),
            ("accelerator", s.accelerator),
            ("keep", f"pareto {s.keep_pareto}"),
            ("seed", str(s.seed)),
        ])
    t = nf.train
    if t is not None:
        dataset = t.dataset + (f' "{t.dataset_path_text}"' if t.dataset_path_text else "")
        if net.source is not None:  # a loaded model is measured, not trained
            _kv(con, "train", [("dataset", dataset),
                               ("use", "validation accuracy of the rewritten graphs, "
                                       "no training")])
        else:
            _kv(con, "train", [("dataset", dataset), ("epochs", str(t.epochs)),
                               ("batch", str(t.batch)), ("lr", _num(t.lr))])
    else:
        score = "fidelity" if net.source is not None else "the zero-shot score"
        con.print(f"[bold]train[/bold]: none (ranking by {score} alone)")


def _kv(con: Console, title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    con.print(table)
