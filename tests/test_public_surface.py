"""The public surface: `nashc.passes` and `nashc.targets` re-export their passes, and
importing them (or running `nashc check`) loads neither FINN's layers and
transformations nor PyTorch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from qonnx.transformation.base import Transformation

import nashc.passes
import nashc.targets

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import sys
{code}
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("torch", "brevitas")
               or m.startswith(("finn.custom_op", "finn.transformation", "finn.analysis")))
print("HEAVY", heavy)
"""


def _heavy_after(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=code)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("package", [nashc.passes, nashc.targets])
def test_every_public_name_resolves(package):
    for name in package.__all__:
        value = getattr(package, name)
        assert value is getattr(package, name)
        if isinstance(value, type) and name[0].isupper() and name != "PassError" \
                and issubclass(value, Transformation):
            assert value.__module__.startswith(package.__name__ + ".")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        package.Nope  # noqa: B018


def test_passes_are_transformations():
    from nashc.passes import ConvertConvToShift, SetChannelWidth, SetWeightBits
    from nashc.targets import MoveScalarMulPastAdderMatMul, SearchFolding

    for cls in (ConvertConvToShift, SetChannelWidth, SetWeightBits,
                MoveScalarMulPastAdderMatMul, SearchFolding):
        assert issubclass(cls, Transformation)


@pytest.mark.parametrize("code", [
    "import nashc.passes, nashc.targets",
    "from nashc.passes import ConvertConvToShift, SetChannelWidth",
    "import nashc.targets.boards; nashc.targets.boards.board_names()",
    "from nashc.cli import main\nsys.argv = ['nashc', 'check', 'examples/tfc_digits.nash']\n"
    "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0",
])
def test_cheap_imports(code):
    assert _heavy_after(code) == "HEAVY []"


def test_the_probe_sees_heavy_imports():
    assert "torch" in _heavy_after("import nashc.targets.hw_layers")


def test_every_command_option_is_in_the_readme():
    """README's command list names every option of every command (and --version)."""
    import click

    from nashc.cli import cli

    text = (ROOT / "README.md").read_text()
    section = text[text.index("\nCommands ("):text.index("\nWhat `compile` writes")]
    items = {item.split()[0]: item for item in section.split("\n- `nashc ")[1:]}

    def named(opts: list[str], item: str) -> bool:  # `-o`, `--output` (not `--outputs`)
        return any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", item) for o in opts)

    missing = [f"{name} {param.opts}" for name, cmd in cli.commands.items()  # type: ignore[attr-defined]
               for param in cmd.params if isinstance(param, click.Option)
               if "--help" not in param.opts and not named(param.opts, items.get(name, ""))]
    assert "`nashc --version`" in section
    assert missing == []
