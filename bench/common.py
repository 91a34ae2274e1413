"""Shared helpers of the benchmarks: models, machine description, RESULTS.md sections."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def digits_convnet(name: str) -> str:
    """The small quantized CNN on digits that the hybrid and zero-shot benchmarks search
    over, as a `.nash` network section named `name`."""
    return f"network {name} {{\n" + _DIGITS_CONVNET_BODY


_DIGITS_CONVNET_BODY = """\
  input 1x8x8 uint8
  weights int4
  activations uint4

  conv stem out 16 kernel 3
  conv c1   out 32 kernel 3
  conv c2   out 32 kernel 3 stride 2
  pool gap  global avg
  fc   head out 10 weights int8
}
"""


def digits_resnet(name: str) -> str:
    """The digits CNN with two residual blocks (the shape of the resnet8 example, scaled
    to 8x8 digits) that the zero-shot and width benchmarks use, as a `.nash` network
    section named `name`."""
    return f"network {name} {{\n" + _DIGITS_RESNET_BODY


_DIGITS_RESNET_BODY = """\
  input 1x8x8 uint8
  weights int4
  activations uint4

  conv  stem out 16 kernel 3
  block b1   residual out 16
  block b2   residual out 32 stride 2
  pool  gap  global avg
  fc    head out 10 weights int8
}
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}"


def write_section(name: str, body: str, command: str) -> None:
    """Replaces (or appends) the section `name` of bench/RESULTS.md."""
    today = _dt.date.today().isoformat()
    head = f"<!-- bench:{name} -->"
    tail = f"<!-- /bench:{name} -->"
    section = (f"{head}\n{body.rstrip()}\n\n_{today}, {machine()}; command: `{command}`_\n"
               f"{tail}")
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(re.escape(head) + ".*?" + re.escape(tail), re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + section + "\n")
    RESULTS.write_text(text)


def brevitas_example(name: str, seed: int = 0):
    """FINN's TFC or CNV from brevitas_examples (random weights), exported to QONNX."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    cfg, shape = {"tfc": ("tfc_2w2a", (1, 1, 28, 28)), "cnv": ("cnv_2w2a", (1, 3, 32, 32))}[name]
    torch.manual_seed(seed)
    model, _ = model_with_cfg(cfg, pretrained=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        export_qonnx(model.eval(), torch.randn(shape), str(path))
        return cleanup_model(ModelWrapper(str(path)))


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
