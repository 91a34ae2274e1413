"""Issue 12: the CLI commands do not pass library warnings on to the user's terminal
(qonnx's "Assuming 4D input is NCHW", FINN's SetFolding log, torch and Brevitas export
warnings), and still print nashc's own notes. Each command runs in a subprocess with
Python's default warning filters, as a user's shell runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.brevitas_nets import conv_net, export
from helpers.nash import loaded_net

pytestmark = pytest.mark.finn

#: what qonnx, FINN, torch and Brevitas print when not silenced
LIBRARY_TEXT = ("Assuming 4D input is NCHW", "UserWarning", "DeprecationWarning",
                "warnings.warn", "Reverting SIMD", "did not reach the target throughput")

def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key in ("PYTHONWARNINGS", "NASHC_DEBUG"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "nashc.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-D input conv net exported with a dynamic batch axis (loading notes it)."""
    tmp = tmp_path_factory.mktemp("warn")
    path = export(conv_net(), (1, 3, 8, 8), tmp / "conv.onnx", dynamic_batch=True)
    (tmp / "net.nash").write_text(loaded_net(path.name))
    return path


@pytest.mark.parametrize("command", [
    "check", "estimate", "verify", "rewrite",
    pytest.param("compile", marks=pytest.mark.slow),
])
def test_no_library_warnings_but_nashc_notes(model: Path, command: str) -> None:
    cwd = model.parent
    args = {
        "check": ["check", "net.nash"],
        "estimate": ["estimate", model.name, "-o", "est", "--force", "--fps", "1e9"],
        "verify": ["verify", model.name],
        "rewrite": ["rewrite", model.name, "--wbits", "*=3", "-o", "rw.onnx"],
        "compile": ["compile", "net.nash", "-o", "out", "--force"],
    }[command]
    res = _run(args, cwd)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    for lib in LIBRARY_TEXT:
        assert lib not in text, f"{lib!r} printed by nashc {command}:\n{text}"
    if command in ("estimate", "verify", "compile"):
        assert "note: " in text and "dynamic batch axis" in text and "fixed to 1" in text
