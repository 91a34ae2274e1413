"""Hand-off to FINN's builder: a `build_config.json` that finn-plus's
`finn.builder.build_dataflow_config.DataflowBuildConfig` loads, and running the
builder where Vivado is installed.

The config starts FINN's builder where nashc's lowering stops: its input model is
`dataflow.onnx` (FINN's dataflow partition, specialised and folded; the same model
FINN's own builder carries on with after `step_create_dataflow_partition`), and its
`steps` are FINN's default steps from `step_apply_folding_config` on (applying
`folding_config.json`), through stitched IP, synthesis and the bitfile.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nashc.dsl.errors import NashcError
from nashc.targets.boards import Board

__all__ = [
    "HANDOFF_STEPS",
    "DEFAULT_OUTPUTS",
    "build_config_dict",
    "write_build_config",
    "load_build_config",
    "missing_synthesis_tools",
    "run_finn_build",
]

#: FINN's `default_build_dataflow_steps` after the dataflow partition and
#: specialisation (which nashc has done).
HANDOFF_STEPS = (
    "step_apply_folding_config",
    "step_minimize_bit_width",
    "step_transpose_decomposition",
    "step_generate_estimate_reports",
    "step_assign_ddr_weight_offsets",
    "step_generate_hardware",
    "step_create_stitched_ip",
    "step_measure_rtlsim_performance",
    "step_out_of_context_synthesis",
    "step_prepare_synthesis",
    "step_synthesize_bitfile",
    "step_make_driver",
    "step_deployment_package",
)

#: `DataflowOutputType` values requested from FINN's builder.
DEFAULT_OUTPUTS = ("estimate_reports", "stitched_ip", "bitfile", "pynq_driver",
                   "deployment_package")


def build_config_dict(board: Board, clock_mhz: float, *,
                      folding_config_file: str = "folding_config.json",
                      model_file: str = "dataflow.onnx",
                      output_dir: str = "finn_build_output",
                      generate_outputs: Sequence[str] = DEFAULT_OUTPUTS) -> dict[str, Any]:
    """The build configuration as a dict of `DataflowBuildConfig` fields.

    Paths are relative to the config file's directory (FINN's `construct_from` resolves
    `folding_config_file` that way; `run_finn_build` resolves the other two).
    """
    cfg: dict[str, Any] = {
        "model_path": model_file,
        "output_dir": output_dir,
        "synth_clk_period_ns": 1000.0 / clock_mhz,
        "board": board.finn_name,
        "fpga_part": board.part,
        "shell_flow_type": "vitis_alveo" if board.kind == "Alveo" else "vivado_zynq",
        "folding_config_file": folding_config_file,
        "generate_outputs": list(generate_outputs),
        "steps": list(HANDOFF_STEPS),
    }
    if board.kind == "Alveo" and board.platform is not None:
        cfg["vitis_platform"] = board.platform
    return cfg


def write_build_config(directory: str | Path, board: Board, clock_mhz: float,
                       **kwargs: Any) -> Path:
    """Writes `build_config.json` into `directory` and returns its path."""
    path = Path(directory) / "build_config.json"
    path.write_text(json.dumps(build_config_dict(board, clock_mhz, **kwargs), indent=2) + "\n")
    return path


def load_build_config(path: str | Path) -> Any:
    """Loads `path` with FINN's own `DataflowBuildConfig.construct_from` (which checks
    that the folding config file exists)."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    return DataflowBuildConfig.construct_from(Path(path).absolute())


def missing_synthesis_tools(board: Board) -> list[str]:
    """What FINN's builder needs for a bitfile and this environment lacks (empty: ready)."""
    missing = []
    if not os.environ.get("XILINX_VIVADO"):
        missing.append("XILINX_VIVADO is not set (source Vivado's settings64.sh): FINN's "
                       "builder needs Vivado for IP generation, stitching and synthesis")
    if not os.environ.get("XILINX_HLS"):
        missing.append("XILINX_HLS is not set: FINN's HLS layers need Vitis HLS")
    if board.kind == "Alveo":
        if not os.environ.get("XILINX_VITIS"):
            missing.append(f"XILINX_VITIS is not set: the {board.name} (vitis_alveo shell "
                           "flow) needs Vitis")
        repo = os.environ.get("PLATFORM_REPO_PATHS", "/opt/xilinx/platforms")
        if not Path(repo).exists():
            missing.append(f"PLATFORM_REPO_PATHS is not set and {repo} does not exist: "
                           f"the Vitis platform {board.platform} must be installed")
    if shutil.which("vivado") is None and os.environ.get("XILINX_VIVADO"):
        vivado = Path(os.environ["XILINX_VIVADO"]) / "bin" / "vivado"
        if not vivado.exists():
            missing.append(f"vivado executable not found at {vivado}")
    return missing


def run_finn_build(config_path: str | Path) -> int:
    """Runs FINN's builder on the hand-off in `config_path`'s directory; returns its exit
    code. Needs Vivado (FINN's builder cannot be imported without it)."""
    config_path = Path(config_path).absolute()
    cfg = load_build_config(config_path)
    base = config_path.parent
    model = Path(cfg.model_path) if cfg.model_path is not None else Path("dataflow.onnx")
    if not model.is_absolute():
        model = base / model
    if not Path(cfg.output_dir).is_absolute():
        cfg.output_dir = str(base / cfg.output_dir)
    try:
        from finn.builder.build_dataflow import build_dataflow_cfg
    except Exception as err:  # finn.xsi needs Vivado
        raise NashcError(f"FINN's builder cannot be imported here: {err}") from err
    from nashc.targets.finn_env import finn_workspace

    with finn_workspace(base / "finn_work"):
        return int(build_dataflow_cfg(str(model), cfg))
