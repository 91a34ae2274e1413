"""The `nashc` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from nashc import __version__
from nashc.dsl.errors import NashcError

#: Width of tables written to a pipe or file (rich's default there is 80 columns, which
#: cut columns of the estimate and verify tables); COLUMNS, when set, wins.
PIPE_WIDTH = 200


def _console(stderr: bool = False, **kwargs: Any) -> Any:
    """A rich Console: the terminal's width on a terminal, else `PIPE_WIDTH` columns
    (or COLUMNS) so that tables in logs and pipes are not cut."""
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = PIPE_WIDTH
    return Console(stderr=stderr, width=width, **kwargs)


__all__ = ["main", "cli"]

F = TypeVar("F", bound=Callable[..., Any])


#: Exit codes: 0 ok; 1 a check the command ran failed (golden mismatch); 2 an error
#: (bad input, unwritable output, an internal error); 130 Ctrl-C; 143 SIGTERM.
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
#: Set to show Python tracebacks of internal errors instead of one line.
DEBUG_ENV = "NASHC_DEBUG"


def user_errors(fn: F) -> F:
    """Runs a command so that nothing reaches the user as a traceback:

    - `NashcError` (bad input): its message (file:line:col where known), exit 2;
    - a full or read-only file system, no permission: one line naming the path, exit 2;
    - out of memory: one line, exit 2;
    - Ctrl-C: "interrupted", exit 130; SIGTERM (`nashc.targets.outdir.Terminated`):
      "terminated", exit 143; temporary directories are removed on the way out;
    - any other exception is a bug in nashc: one line with its type and message, exit 2
      (``NASHC_DEBUG=1`` shows the traceback instead).
    """
    name = fn.__name__

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os

        from nashc.targets.outdir import Terminated

        try:
            return fn(*args, **kwargs)
        except NashcError as err:
            click.echo(err.format(), err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo(f"nashc {name}: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Terminated:
            click.echo(f"nashc {name}: terminated", err=True)
            raise
        except (SystemExit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except MemoryError:
            click.echo(f"error: nashc {name} ran out of memory (the network, batch or data "
                       "set is too large for this machine)", err=True)
            sys.exit(EXIT_ERROR)
        except OSError as err:
            if os.environ.get(DEBUG_ENV):
                raise
            where = f"{os.fsdecode(err.filename)}: " if err.filename else ""
            click.echo(f"error: {where}{err.strerror or err}", err=True)
            sys.exit(EXIT_ERROR)
        except Exception as err:
            if os.environ.get(DEBUG_ENV):
                raise
            text = str(err).strip().splitlines()
            click.echo(f"error: internal error in nashc {name}: {type(err).__name__}"
                       f"{': ' + text[0] if text else ''}\n(this is a bug in nashc, not in "
                       f"your input; {DEBUG_ENV}=1 shows the traceback)", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def not_implemented(what: str, issue: str) -> None:
    click.echo(f"nashc {what}: not implemented yet ({issue}).", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nashc")
def cli() -> None:
    """nashc: neural architecture and accelerator search for quantized and hybrid
    (shift/adder) networks on FPGAs, built on QONNX and FINN."""


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@user_errors
def check(file: Path) -> None:
    """Parse and validate a .nash FILE and print a summary."""
    from nashc.dsl import load
    from nashc.summary import print_summary

    finn_boards = True
    try:
        from nashc.targets.boards import board_names, budget_to_absolute, get_board

        known = [name.lower() for name in board_names()]
    except ImportError:
        finn_boards = False
        known = ["u250", "u200", "u280", "u50", "u55c", "pynq-z1", "pynq-z2", "ultra96",
                 "zcu102", "zcu104", "kv260_som"]
    program = load(file, targets=known)
    hw = program.file.hardware
    if finn_boards and hw is not None and hw.budget:
        # a percentage needs the device's size from FINN's resource table, as in compile
        # (an error at the budget item's file:line:col)
        budget_to_absolute(get_board(hw.target or "u250"), hw.budget)
    loaded_space = program.network.source is not None and bool(program.choices)
    if program.network.source is not None:
        from nashc.imported import load_source

        _quiet_libraries()  # the loaded model runs through qonnx and onnxruntime
        # read whole, run once, every space option applied to the graph once
        load_source(program)
    print_summary(program, _console())
    if loaded_space:
        click.echo("every option of the space applies to the loaded graph")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--target", "-t", help="Board (see `nashc targets`); overrides the file's target.")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Output directory (default: <file stem>_nashc in the current directory).")
@click.option("--seed", type=int, help="Search seed; overrides the file's seed.")
@click.option("--jobs", "-j", type=click.IntRange(min=1),
              help="Workers for candidate evaluation (default: cores, at most 2; with "
              "--executor ray and no --address: the local Ray's CPUs, default all).")
@click.option("--search-seconds", type=click.FloatRange(min=0),
              help="Stop the architecture search after this many seconds (best so far kept).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="Where candidates are evaluated: local worker processes or Ray "
              "(docs/cluster.md).")
@click.option("--address", help="Ray cluster address for --executor ray (e.g. auto, "
              "HOST:6379, ray://HOST:10001); default: start a local Ray.")
@click.option("--force", is_flag=True,
              help="Replace an existing output directory nashc did not write.")
@click.option("--keep-failed", is_flag=True,
              help="Write the design even if its golden check fails (the exit code is "
              "still 1).")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress display (the summary and errors are still printed).")
@user_errors
def compile(file: Path, target: str | None, output: Path | None, seed: int | None,
            jobs: int | None, search_seconds: float | None, executor: str,
            address: str | None, force: bool, keep_failed: bool,
            quiet: bool) -> None:
    """Search, lower through FINN, verify and report the designs for a .nash FILE."""

    from nashc.pipeline import CompileOptions, compile_file
    from nashc.progress import CompileProgress, PlainProgress, RichProgress

    _quiet_libraries()
    console = _console(stderr=True, log_path=False)
    if address is not None and executor != "ray":
        raise click.UsageError("--address needs --executor ray")
    hooks: CompileProgress
    if quiet:
        hooks = CompileProgress()
    elif console.is_terminal:
        hooks = RichProgress(console)
    else:
        hooks = PlainProgress(sys.stderr)
    opts = CompileOptions(target=target, output=output, seed=seed, jobs=jobs,
                          search_seconds=search_seconds, executor=executor, address=address,
                          force=force, keep_failed=keep_failed)
    try:
        out, report = compile_file(file, opts, progress=hooks)
    finally:
        hooks.close()
    _print_compile_summary(out, report)
    if not (report.get("golden") or {}).get("ok", True):
        click.echo(f"error: the golden check failed; {out}/ written because of --keep-failed",
                   err=True)
        sys.exit(1)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Path(path_type=Path),
              help="report.json of an earlier `nashc compile`: train its chosen point.")
@click.option("--index", type=int, help="With --arch: train pareto point N instead.")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Output directory (default: <file stem>_train).")
@click.option("--seed", type=int, help="Seed of weights, split and shuffling (default: the "
              "file's search seed, else 0).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the train section's epochs.")
@click.option("--limit", type=click.IntRange(min=1),
              help="Use at most N training and N validation images (quick runs).")
@click.option("--force", is_flag=True,
              help="Replace an existing output directory nashc did not write.")
@user_errors
def train(file: Path, arch: Path | None, index: int | None, output: Path | None,
          seed: int | None, epochs: int | None, limit: int | None, force: bool) -> None:
    """Train one architecture of a .nash FILE (quantization-aware) without searching.

    Without --arch the network as declared is trained. Writes DIR/model_qonnx.onnx
    (trained weights) and DIR/train.json (losses and validation accuracy per epoch)."""
    from rich.table import Table

    from nashc.training import train_file

    _quiet_libraries()
    out, summary = train_file(file, arch=arch, index=index, output=output, seed=seed,
                              epochs=epochs, limit=limit, progress=True, force=force)
    console = _console()
    data = summary["dataset"]
    table = Table(title=f"{summary['network']} on {data['dataset']} ({data['train_samples']} "
                  f"training / {data['val_samples']} validation images, seed {summary['seed']})")
    for col in ("epoch", "train loss", "val accuracy"):
        table.add_column(col, justify="right")
    for i, (loss, acc) in enumerate(zip(summary["losses"], summary["val_accuracy"])):
        table.add_row(str(i + 1), f"{loss:.4f}", f"{100 * acc:.2f}%")
    console.print(table)
    arch_txt = ", ".join(f"{k}={v}" for k, v in summary["arch"].items()) or "as declared"
    console.print(f"architecture: {arch_txt}")
    golden = summary["golden"]
    console.print("golden check of the export: " + ", ".join(
        f"{lv['name']} {'ok' if lv['ok'] else 'FAILED'} (max diff {lv['max_abs_diff']:.3g})"
        for lv in golden["levels"]))
    console.print(f"final validation accuracy {100 * summary['accuracy']:.2f}% "
                  f"in {summary['seconds']:.1f} s; wrote {out}/ (model_qonnx.onnx, train.json)")
    if not golden["ok"]:
        sys.exit(1)


def _print_search(console: Any, search: dict[str, Any]) -> None:
    """nashc's folding search beside FINN tuned, whole-design figures (`estimate --budget`)."""
    from rich.table import Table

    keys = ("LUT", "BRAM_18K", "URAM", "DSP")
    table = Table(title="whole design (layers + DWCs + FIFOs), same budget")
    for col in ("folding", "fps", "LUT", "BRAM18", "URAM", "DSP", "fits"):
        table.add_column(col, justify="right" if col not in ("folding", "fits") else "left")
    budget = search["budget"]
    table.add_row("budget", "", *(f"{budget[k]:,.0f}" if budget[k] != float("inf") else "-"
                                  for k in keys), "")
    for label, key in (("nashc", "nashc"), ("FINN tuned", "finn_tuned")):
        r = search[key]
        fps = r.get("fps", 0.0) if r["feasible"] else 0.0
        table.add_row(label, f"{fps:,.0f}", *(f"{r['resources'][k]:,.0f}" for k in keys),
                      "yes" if r["feasible"] else "no")
    console.print(table)
    check = search["design_check"]
    console.print(f"FINN's InsertDWC/InsertFIFO on nashc's design: {check['dwcs']} DWCs, "
                  f"{check['fifos']} FIFOs ({len(check['deep_fifos'])} deep), "
                  + ("fits the budget" if check["fits"] else
                     "PROBLEMS: " + "; ".join(check["problems"])))
    if search.get("io_max_bits"):
        console.print(f"graph-end streams limited to {search['io_max_bits']} bits "
                      "(the board's IODMA width in FINN's flow)")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", default="u250", show_default=True, help="Board.")
@click.option("--fps", type=float, help="Target frames per second for folding.")
@click.option("--budget", help="Resource budget in the language's syntax, e.g. "
              "\"lut 30%, dsp 0\": fold with nashc's search inside it.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output directory.")
@click.option("--synth", is_flag=True, help="Continue with FINN's builder (needs Vivado).")
@click.option("--force", is_flag=True,
              help="Replace an existing output directory nashc did not write.")
@user_errors
def estimate(model: Path, target: str, fps: float | None, budget: str | None,
             output: Path | None, synth: bool, force: bool) -> None:
    """Lower MODEL.onnx through FINN to hardware layers and estimate cycles and resources.

    Folding uses FINN's SetFolding for --fps (default 1000 frames/s) at the board's
    default clock, or with --budget nashc's folding search inside that budget counting
    the whole design FINN builds (DWCs, FIFOs, I/O width), FINN tuned beside it.
    Writes DIR (default <model stem>_estimate/) atomically.
    """
    import os

    from rich.table import Table

    from nashc.targets.boards import RESOURCE_KEYS
    from nashc.targets.estimate import NoFitError, device_utilisation, estimate_model_file
    from nashc.targets.handoff import missing_synthesis_tools, run_finn_build

    _quiet_libraries()
    try:
        run = estimate_model_file(model, target=target, fps=fps, output=output,
                                  budget=budget, force=force)
    except NoFitError as err:  # show the figures behind the refusal; nothing was written
        _print_search(_console(), err.search)
        raise
    est, board = run.estimate, run.board
    console = _console()
    for note in run.notes:
        console.print(f"note: {note}")
    how = (f"SetFolding for {run.target_fps:g} fps" if run.search is None else
           "nashc's folding search in the budget")
    table = Table(title=f"{model.name} on {board.name} ({board.part}) at "
                  f"{run.clock_mhz:g} MHz, {how}")
    name_w = max([len(x.name) for x in est.layers] + [5])
    op_w = max([len(x.op_type) for x in est.layers] + [2])
    table.add_column("layer", no_wrap=True, min_width=name_w)
    table.add_column("op", no_wrap=True, min_width=op_w)
    for col in ("PE", "SIMD", "cycles", "LUT", "BRAM18", "URAM", "DSP"):
        table.add_column(col, justify="right", no_wrap=True)

    def num(v: float | int | None) -> str:
        if v is None:
            return "-"
        return str(int(v)) if float(v).is_integer() else f"{v:.1f}"

    for layer in est.layers:
        table.add_row(layer.name, layer.op_type, num(layer.pe), num(layer.simd),
                      str(layer.cycles), num(layer.lut), num(layer.bram18), num(layer.uram),
                      num(layer.dsp))
    util = device_utilisation(est, board)
    avail = board.resources
    table.add_section()
    table.add_row("total", "", "", "", f"max {est.max_cycles}",
                  *(num(est.totals[k]) for k in RESOURCE_KEYS))
    table.add_row(f"{board.name}", "", "", "", "",
                  *(num(v) for v in (avail.lut, avail.bram18, avail.uram, avail.dsp)))
    table.add_row("used", "", "", "", "",
                  *("?" if util[k] is None else f"{util[k]:.2f}%"
                    for k in RESOURCE_KEYS))
    console.print(table)
    console.print(f"estimated throughput {est.estimated_throughput_fps:,.1f} fps, "
                  f"latency {est.estimated_latency_ns / 1e3:,.1f} us "
                  f"(slowest layer {est.network_performance['max_cycles_node_name']})")
    if run.search is not None:
        _print_search(console, run.search)
    if run.host_nodes:
        console.print("left on the host: " + ", ".join(f"{n} ({o})" for n, o in run.host_nodes))
    over = [(k, v) for k, v in util.items() if v is not None and v > 100.0]
    if over:
        names = {"LUT": "LUT", "BRAM_18K": "BRAM18", "URAM": "URAM", "DSP": "DSP"}
        click.echo(f"warning: the design does not fit the {board.name}: " + ", ".join(
            f"{names[k]} {v:.0f}% of the device" for k, v in over)
            + " (fold for fewer fps with --fps, or choose a larger board)", err=True)
    if avail.lut is None:
        console.print(f"FINN has no resource table for {board.name}: device size unknown")
    console.print(f"wrote {run.output_dir}/: {', '.join(run.files)}")
    if synth:
        missing = missing_synthesis_tools(board)
        if not os.environ.get("XILINX_VIVADO"):
            click.echo("nashc estimate --synth: cannot run FINN's builder here; missing:",
                       err=True)
            for item in missing:
                click.echo(f"  - {item}", err=True)
            click.echo(f"the estimates and {run.output_dir / 'build_config.json'} are written; "
                       "run again with --synth where Vivado is installed", err=True)
            sys.exit(2)
        for item in missing:
            click.echo(f"warning: {item}", err=True)
        code = run_finn_build(run.output_dir / "build_config.json")
        if code != 0:
            click.echo(f"FINN's builder failed (exit code {code})", err=True)
            sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write results as JSON.")
@click.option("--target", "-t", default="u250", show_default=True,
              help="Board whose FINN lowering level 3 checks.")
@click.option("--no-finn", is_flag=True, help="Skip level 3 (FINN hardware layers).")
@click.option("--rtl", is_flag=True,
              help="Also run level 4: the generated RTL of each hybrid layer in Verilator.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--force", is_flag=True, help="Replace an existing --json file.")
@user_errors
def verify(model: Path, json_out: Path | None, target: str, no_finn: bool, rtl: bool,
           seed: int, force: bool) -> None:
    """Check MODEL.onnx against onnxruntime (golden model) at every verification level.

    Level 2: QONNX execution (nashc's hybrid ops included) vs onnxruntime on the
    standard-ONNX lowering, bit-exact. Level 3: the FINN hardware-layer graph executed
    layer by layer in python vs level 2, on the integer outputs. Level 4 (--rtl): the
    generated RTL of every shift/adder layer, simulated with Verilator, vs its level-3
    python execution, bit-exact (one Verilator build per layer, 5-15 s of CPU each).
    Level 1 (PyTorch module vs QONNX) runs inside `nashc compile` and `nashc train`,
    where the module exists."""
    import json

    from rich.table import Table

    from nashc.runtime.golden import LevelResult, compare_levels, load_model

    if json_out is not None:
        _check_new_file(json_out, force, model)
    from nashc.runtime.load import load_notes

    if rtl and no_finn:
        raise click.UsageError("--rtl needs level 3 (the FINN lowering): drop --no-finn")
    _quiet_libraries()
    _usable_model(model)
    qmodel = load_model(model)
    for note in load_notes(qmodel):
        click.echo(f"note: {note}", err=True)
    result = compare_levels(qmodel, seed=seed)
    rtl_checks: list[Any] = []
    if not no_finn:
        from nashc.targets.boards import get_board
        from nashc.targets.hybrid_lowering import hybrid_extra_steps
        from nashc.targets.lower import lower_to_hw
        from nashc.targets.verify import verify_level3

        board = get_board(target)
        lowered = lower_to_hw(load_model(model), board, board.default_clock_mhz,
                              hybrid_extra_steps())
        result.levels.append(verify_level3(qmodel, lowered, seed))
        if rtl:
            import tempfile

            from nashc.targets.rtl.level4 import verify_rtl

            with tempfile.TemporaryDirectory(prefix="nashc-rtl-") as tmp:
                rtl_checks = verify_rtl(qmodel, lowered, Path(tmp), seed)
            if rtl_checks:
                result.levels.append(LevelResult(
                    "rtl-vs-finn-python", max(c.max_abs_diff for c in rtl_checks),
                    all(c.ok for c in rtl_checks)))
    from nashc.report import golden_rows

    console = _console()
    table = Table(title=f"nashc verify {model.name} (golden model: onnxruntime, seed {seed})")
    rows = golden_rows(result.to_json())
    for col in ("level", "compared", "max |diff|", "tolerance", "result"):
        # level names stay whole (narrow terminals wrap the tensor names instead)
        width = max((len(r[0]) for r in rows), default=5) if col == "level" else None
        table.add_column(col, justify="right" if col == "max |diff|" else "left",
                         min_width=width, no_wrap=col == "level")
    for name, compared, max_diff, tol, res in rows:
        table.add_row(name, compared, max_diff, tol,
                      "[green]ok[/]" if res == "ok" else f"[red]{res}[/]")
        if "-" in (compared, tol):
            table.caption = "-: not recorded by this level"
    console.print(table)
    if rtl_checks:
        table = Table(title="level 4: generated RTL (Verilator) vs python execution")
        for col in ("layer", "op", "PE", "SIMD", "vectors", "cycles", "mismatches", "s"):
            table.add_column(col, justify="left" if col in ("layer", "op") else "right")
        for c in rtl_checks:
            table.add_row(c.name, c.op_type, str(c.pe), str(c.simd), str(c.vectors),
                          f"{c.cycles:,}", str(c.mismatches), f"{c.seconds:.1f}")
        console.print(table)
    elif rtl and not no_finn:
        console.print("level 4: no shift/adder layer in this model, nothing to simulate")
    if json_out is not None:
        data = result.to_json()
        if rtl_checks:
            data["rtl_layers"] = [c.to_json() for c in rtl_checks]
        _write_file(json_out, (json.dumps(data, indent=2) + "\n").encode(), force)
    console.print("verify: " + ("[green]all levels match[/]" if result.ok else "[red]FAILED[/]"))
    sys.exit(0 if result.ok else 1)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Output model (default: <model stem>_rewritten.onnx beside MODEL).")
@click.option("--width", "widths", multiple=True, metavar="SEL=M",
              help="Keep round(M x C) output channels of the layers SEL names (0 < M <= 1).")
@click.option("--wbits", multiple=True, metavar="SEL=B", help="Weight bits of layers SEL.")
@click.option("--abits", multiple=True, metavar="SEL=B",
              help="Bits of the activation after layers SEL.")
@click.option("--op", "ops", multiple=True, metavar="SEL=KIND",
              help="Operator of layers SEL: shift or adder (conv: leave as is).")
@click.option("--rank", type=click.Choice(["l1", "first"]), default="l1", show_default=True,
              help="Which channels --width keeps: largest weight L1 norm, or the first ones.")
@click.option("--calibration", type=click.Path(path_type=Path), metavar="FILE.npy",
              help="Input samples (N x C x H x W, in the input's range): compensate removed "
              "channels in the next layers so their outputs keep their statistics.")
@click.option("--compensate", type=click.Choice(["affine", "mean"]), default="affine",
              show_default=True, help="With --calibration: restore mean and std, or the mean.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the golden check's random inputs.")
@click.option("--force", is_flag=True,
              help="Replace an existing output file (never MODEL itself).")
@user_errors
def rewrite(model: Path, output: Path | None, widths: tuple[str, ...], wbits: tuple[str, ...],
            abits: tuple[str, ...], ops: tuple[str, ...], rank: str, calibration: Path | None,
            compensate: str, seed: int, force: bool) -> None:
    """Apply nashc's graph passes to MODEL.onnx (QONNX or ONNX) and check the result.

    SEL is a comma-separated list of globs over layer (node) names, as in a `space`
    section. Order: widths, weight bits, activation bits, operators. The rewritten graph
    must pass the level-2 golden check (QONNX vs onnxruntime) before it is written."""

    import onnx
    from rich.table import Table

    from nashc.passes.choices import ApplyChoices, layer_summary, parse_rule
    from nashc.passes.quant import activation_bits
    from nashc.runtime.golden import compare_levels
    from nashc.runtime.load import load_onnx_network

    rules = [parse_rule(dim, text) for dim, texts in
             (("width", widths), ("wbits", wbits), ("abits", abits), ("op", ops))
             for text in texts]
    if not rules:
        raise NashcError("nashc rewrite: nothing to do; give --width, --wbits, --abits or --op")
    out = output or model.with_name(f"{model.stem}_rewritten.onnx")
    _check_new_file(out, force, model)
    _quiet_libraries()
    _usable_model(model)
    before_model = load_onnx_network(model)
    before = layer_summary(before_model)
    abits_before = activation_bits(before_model)
    acts = None
    if calibration is not None:
        from nashc.passes.width import layer_inputs

        acts = layer_inputs(before_model, _calibration_batch(calibration, before_model))
    after_model = before_model.transform(ApplyChoices(rules, rank=rank, activations=acts,
                                                      compensate=compensate))
    after = layer_summary(after_model)
    abits_after = activation_bits(after_model)
    onnx.checker.check_model(after_model.model)
    result = compare_levels(after_model, seed=seed)
    console = _console()
    table = Table(title=f"{model.name}: layers rewritten")
    for col in ("layer", "op", "out channels", "weight bits", "activation bits"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right")

    def change(a: object, b: object) -> str:
        return str(a) if a == b else f"{a} -> {b}"

    for name, (op0, c0, b0) in before.items():
        op1, c1, b1 = after.get(name, (op0, c0, b0))
        a0, a1 = abits_before.get(name), abits_after.get(name, abits_before.get(name))
        table.add_row(name, change(op0, op1), change(c0, c1), change(b0, b1),
                      change("-" if a0 is None else a0, "-" if a1 is None else a1))
    console.print(table)
    if acts is not None:
        import json

        recs = json.loads(after_model.get_metadata_prop("nashc.SetChannelWidth") or "[]")
        readers = sorted({c["reader"] for r in recs for c in r.get("compensated", [])})
        console.print(f"compensated ({compensate}, {len(next(iter(acts.values())))} "
                      f"calibration samples): {', '.join(readers) or 'nothing'}")
    for lv in result.levels:
        console.print(f"golden check {lv.name}: {'ok' if lv.ok else 'MISMATCH'} "
                      f"(max diff {lv.max_abs_diff:.3g})")
    if not result.ok:
        click.echo("nashc rewrite: the rewritten graph fails the golden check; nothing written",
                   err=True)
        sys.exit(1)
    _write_file(out, after_model.model.SerializeToString(), force)
    console.print(f"wrote {out}")


def _usable_model(path: Path) -> None:
    """Raises `NashcError` unless `path` is an ONNX model nashc can read and onnxruntime
    can run (after lowering QONNX quantizers and hybrid ops to standard ONNX) on a seeded
    random input: a missing, truncated or inconsistent file is the user's input, not a
    crash somewhere later."""
    if not path.exists():
        raise NashcError(f"model file not found: {path}")
    if not path.is_file():
        raise NashcError(f"{path}: not a file")
    from nashc.runtime.golden import load_model, random_inputs, run_onnxruntime

    try:
        model = load_model(path)
        run_onnxruntime(model, random_inputs(model, seed=0))
    except NashcError:
        raise
    except Exception as err:  # onnx, qonnx and onnxruntime raise many types on bad models
        text = str(err).strip().splitlines()
        raise NashcError(f"{path}: cannot use this model: {type(err).__name__}"
                         f"{': ' + text[0] if text else ''}") from None


def _check_new_file(out: Path, force: bool, source: Path | None = None) -> None:
    """Raises `NashcError` unless nashc may write the file `out`: not a directory, not
    the command's input `source` (never, even with --force), and not an existing file
    unless `force`. Called before any work, so a refused output costs nothing."""
    if out.is_dir():
        raise NashcError(f"{out} is a directory; give a file name")
    if not out.exists():
        return
    if source is not None and source.exists() and out.resolve() == source.resolve():
        raise NashcError(f"{out} is the input model; nashc never writes over its input "
                         "(give another -o)")
    if not force:
        raise NashcError(f"{out} exists; nashc does not replace a file it did not write "
                         "(give another name, or --force to replace it)")


def _write_file(out: Path, data: bytes, force: bool = False) -> None:
    """Writes `data` to the file `out` atomically (a temporary name beside it, renamed;
    the file mode follows the umask). A directory at `out`, an existing file without
    `force` (`_check_new_file`), or an unwritable place, is a `NashcError`; nothing is
    left behind on failure."""
    import os

    from nashc.targets.outdir import terminate_as_exit, write_error

    _check_new_file(out, force)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # same directory: atomic rename
    try:
        with terminate_as_exit():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, out)
    except OSError as err:
        raise (write_error(out, err) or
               NashcError(f"cannot write {out}: {err.strerror or err}")) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # e.g. a read-only file system: nothing was written either


def _calibration_batch(path: Path, model: Any) -> Any:
    """Samples from a .npy file, checked against the model's input shape."""
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NashcError(f"{path}: cannot read a NumPy array: {exc}") from None
    shape = list(model.get_tensor_shape(model.graph.input[0].name) or [])
    if arr.ndim == len(shape) - 1:
        arr = arr[None]
    if arr.ndim != len(shape) or list(arr.shape[1:]) != shape[1:] or len(arr) == 0:
        raise NashcError(f"{path}: calibration samples must be N x {' x '.join(map(str, shape[1:]))} "
                         f"(the model's input), got {' x '.join(map(str, arr.shape))}")
    return arr.astype(np.float32)


@cli.command()
@user_errors
def targets() -> None:
    """List the boards FINN knows (u250 first)."""
    from rich.table import Table

    from nashc.targets.boards import all_boards

    table = Table(title="Boards (parts and resources from FINN; BRAM in 18 Kb blocks)")
    for col in ("name", "part", "kind", "LUT", "BRAM18", "URAM", "DSP"):
        table.add_column(col, justify="left" if col in ("name", "part", "kind") else "right")
    for b in all_boards():
        r = b.resources
        table.add_row(b.name, b.part, b.kind,
                      *("?" if v is None else str(v) for v in (r.lut, r.bram18, r.uram, r.dsp)))
    _console().print(table)
    _console().print("?: FINN has no resource table for this device")


def _quiet_libraries() -> None:
    """FINN's SetFolding logs a warning per layer and probe, torch and Brevitas warn on
    export; none of it is actionable for a nashc user, so it is silenced."""
    import logging
    import warnings

    import torch  # noqa: F401  (configures its loggers on import: import it first)

    for name in ("finn", "finn_logger", "qonnx", "brevitas", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _print_compile_summary(out: Path, report: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    from nashc.report import RESOURCES, baselines, budget_percent

    table = Table(title=f"Pareto front ({report['target']}, {report['clock_mhz']:g} MHz)")
    for col in ("#", "score", "accuracy", "fps", "latency ms", "LUT", "BRAM18", "URAM", "DSP",
                "budget", "conv/shift/adder"):
        table.add_column(col, justify="right")

    def most_used(res: dict[str, Any]) -> str:
        """The scarcest resource's share of the budget, e.g. `24% LUT`."""
        pct = {k: v for k, v in budget_percent(res, report["budget"]).items() if v is not None}
        if not pct:
            return "-"
        key = max(pct, key=lambda k: pct[k])
        return f"{pct[key]:.0f}% {dict(RESOURCES)[key]}"

    def res_cells(res: dict[str, Any]) -> list[str]:
        return [f"{res.get(k, 0):,.0f}" for k, _ in RESOURCES]

    for i, p in enumerate(report["pareto"]):
        r, o = p["resources"], p["ops"]
        acc = "-" if p["accuracy"] is None else f"{100 * p['accuracy']:.2f}%"
        table.add_row(f"{i}{' *' if i == report['chosen'] else ''}", f"{p['score']:.3f}", acc,
                      f"{p['fps']:,.0f}", f"{p['latency_ms']:.4f}", *res_cells(r),
                      most_used(r), f"{o['conv']}/{o['shift']}/{o['adder']}")
    bases = baselines(report) if report.get("chosen") is not None else []
    if bases:
        table.add_section()
        for b in bases:
            lat = b.get("latency_ms")
            table.add_row(str(b["label"]).split()[-1], "", "", f"{b['fps']:,.0f}",
                          "-" if lat is None else f"{lat:.4f}",
                          *res_cells(b.get("resources") or {}),
                          most_used(b.get("resources") or {}), "")
        table.caption = (", ".join(f"{str(b['label']).split()[-1]}: {b['label']}"
                                   for b in bases)
                         + f", folding the architecture of {report['chosen']} * in the same "
                         "budget")
    console.print(table)
    s = report["search"]
    console.print(f"search: {s['strategy']}, {s['candidates_evaluated']} candidates scored, "
                  f"{s['finn_evaluated']} lowered through FINN, {s['seconds']:.1f} s"
                  + (f" (stopped early: {s.get('stop_reason')})" if s.get("interrupted") else ""))
    base = report.get("baseline")
    chosen = report["pareto"][report["chosen"]] if report.get("chosen") is not None else None
    if base and chosen and base.get("fps"):
        from nashc.report import ACCELERATOR_LABELS

        ours = ACCELERATOR_LABELS.get(s.get("accelerator", ""), "the chosen folding")
        theirs = base.get("label") or ACCELERATOR_LABELS.get(base.get("accelerator", ""),
                                                             base.get("accelerator"))
        console.print(f"chosen design (*): {chosen['fps']:,.0f} fps with {ours}; {theirs} in "
                      f"the same budget: {base['fps']:,.0f} fps "
                      f"({chosen['fps'] / base['fps']:.2f}x)")
    golden = report.get("golden") or {}
    if golden:
        levels = ", ".join(f"{lv['name']} {'ok' if lv['ok'] else 'FAILED'} "
                           f"({lv['comparison'] + ', ' if lv.get('comparison') else ''}"
                           f"max diff {lv['max_abs_diff']:.3g})" for lv in golden["levels"])
        console.print(f"golden check: {levels}")
    for note in report.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"wrote {_shown(out)}/ (report.md, report.json, pareto.png, design/)")
    console.print("no Vivado here: synthesis is FINN's builder with design/build_config.json")


def main() -> None:
    from nashc.targets.outdir import terminate_as_exit

    with terminate_as_exit():  # SIGTERM unwinds (temporary directories removed), exit 143
        cli()


if __name__ == "__main__":
    main()
