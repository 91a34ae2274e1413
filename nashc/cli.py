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

__all__ = ["main", "cli"]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turns a `NashcError` into its message on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NashcError as err:
            click.echo(err.format(), err=True)
            sys.exit(2)

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
    not_implemented("check", "the .nash front end")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--target", "-t", help="Board (see `nashc targets`); overrides the file's target.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output directory.")
@click.option("--seed", type=int, help="Search seed; overrides the file's seed.")
@user_errors
def compile(file: Path, target: str | None, output: Path | None, seed: int | None) -> None:
    """Search, lower through FINN, verify and report the designs for a .nash FILE."""
    not_implemented("compile", "the search issue")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", default="u250", show_default=True, help="Board.")
@click.option("--fps", type=float, help="Target frames per second for folding.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output directory.")
@click.option("--synth", is_flag=True, help="Continue with FINN's builder (needs Vivado).")
@user_errors
def estimate(model: Path, target: str, fps: float | None, output: Path | None,
             synth: bool) -> None:
    """Lower MODEL.onnx through FINN to hardware layers and estimate cycles and resources."""
    not_implemented("estimate", "the FINN target issue")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write results as JSON.")
@user_errors
def verify(model: Path, json_out: Path | None) -> None:
    """Check MODEL.onnx against onnxruntime (golden model) at every verification level."""
    not_implemented("verify", "the hybrid-ops issue")


@cli.command()
@user_errors
def targets() -> None:
    """List the boards FINN knows (u250 first)."""
    not_implemented("targets", "the foundation issue")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
