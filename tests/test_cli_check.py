"""`nashc check` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nashc.cli import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


@pytest.mark.parametrize("name", ["resnet8_cifar.nash", "tfc_digits.nash", "cnv_cifar.nash"])
def test_check_examples_exit_0(name):
    result = runner().invoke(cli, ["check", str(EXAMPLES / name)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "network" in out and "layers" in out and "u250" in out
    assert "search space size" in out


def test_check_summary_contents():
    result = runner().invoke(cli, ["check", str(EXAMPLES / "resnet8_cifar.nash")])
    out = result.stdout
    for text in ("resnet8", "b2.down", "32x16x16", "int8", "uint4", "~10^12", "2115832430592",
                 "lut 70%, bram 70%, uram 50%, dsp 60%", ">= 2000", "<= 2 ms", "250 MHz",
                 "evolution population 64 generations 20", "coarse_to_fine", "digits"):
        assert text in out, text


def test_check_small_space_is_exact():
    result = runner().invoke(cli, ["check", str(EXAMPLES / "cnv_cifar.nash")])
    assert f"search space size: {3**5 * 2**4 * 2**7}" in result.stdout
    assert "period 4 ns" in result.stdout


@pytest.mark.parametrize("text,where", [
    ("network n {\n  conv c out 16 kernal 3\n}\n", ":2:17: error: unexpected 'kernal'"),
    ("network n {\n  input 3x32x32 uint8\n  fc a out 2\n}\nhardware { target nope }\n",
     ":5:19: error: unknown target 'nope'"),
])
def test_check_errors_exit_2_gcc_style(tmp_path, text, where):
    path = tmp_path / "bad.nash"
    path.write_text(text)
    result = runner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}{where}")
    assert "^" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_check_missing_file_is_a_user_error(tmp_path):
    result = runner().invoke(cli, ["check", str(tmp_path / "none.nash")])
    assert result.exit_code == 2
    assert "error:" in result.stderr and "no such file" in result.stderr
    assert "Traceback" not in result.stderr
