"""Issue 12, kind 6 in the language: the language declares C x H x W inputs and square
K x K kernels and pools. A two-dim input (a 1-D signal, C x L) and a window that cannot
fit a map one pixel high are refused at their file:line:col saying that 1-D layers are
not expressible and that a 1-D model loads with `network NAME from`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nashc.cli import cli

NET = "network radio {{\n  input {shape} uint8\n{body}\n  fc head out 6\n}}\n"


@pytest.mark.parametrize("shape", ["2x128", "1x1024", "2x1x128x1"])
def test_an_input_without_three_dims_is_refused_at_its_position(write, shape):
    path = write(NET.format(shape=shape, body="  conv c0 out 8 kernel 3"))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    ndims = shape.count("x") + 1
    assert f"{path}:2:9: error: unexpected input shape {shape} ({ndims} dims): the " \
        "language declares C x H x W inputs (e.g. 3x32x32)" in res.output
    one_d = "1-D signals (C x L) and 1-D convolutions are not supported"
    if ndims == 2:
        assert one_d in res.output
        assert 'load a 1-D model with `network NAME from "model.onnx"`' in res.output
        c, length = shape.split("x")
        assert f"`input {c}x1x{length}` would give K x K convs" in res.output
    else:
        assert one_d not in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("body,line,col", [
    ("  conv c0 out 8 kernel 3 pad 1\n  pool p0 max kernel 2", 4, 22),
    ("  conv c0 out 8 kernel 3 pad 0", 3, 24),
])
def test_a_window_on_a_one_pixel_high_map_says_1d_is_not_expressible(write, body, line,
                                                                     col):
    path = write(NET.format(shape="2x1x128", body=body))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    assert f"{path}:{line}:{col}: error:" in res.output
    assert "is bigger than its" in res.output
    assert "kernels and pools are square (K x K) in the language, so 1-D convolutions " \
        "and pools (k x 1) are not expressible" in res.output


def test_a_window_on_a_1x1_map_has_no_1d_hint(write):
    path = write(NET.format(shape="3x8x8",
                            body="  pool g global avg\n  pool p max kernel 2"))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    assert "bigger than its input 1x1" in res.output
    assert "1-D" not in res.output


def test_three_dims_still_parse(write):
    path = write(NET.format(shape="2x1x128", body="  conv c0 out 8 kernel 3"))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 0, res.output
