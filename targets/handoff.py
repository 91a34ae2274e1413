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
    "missing_builder_modules",
    "BUILDER_MODULE",
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


#: FINN's builder module, whose imports `missing_builder_modules` follows
BUILDER_MODULE = "finn.builder.build_dataflow"


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of module `name` of the package whose directory is `root`, found
    without importing anything (None if it is not a module of that package)."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and cand.is_file():
            return cand
    return root / "__init__.py" if not parts else None


def missing_builder_modules(root: str = BUILDER_MODULE) -> list[tuple[str, str]]:
    """Python modules FINN's builder imports that are not installed, as (module, the FINN
    module importing it). Follows the `finn.*` imports from `root` statically (reading
    the sources, importing nothing: the builder cannot be imported without Vivado).
    finn-plus does not declare every dependency of its builder (e.g. ``psutil``)."""
    import ast
    import importlib.util
    import sys

    spec = importlib.util.find_spec("finn")
    if spec is None or spec.origin is None:
        return [("finn", "nashc")]
    finn_dir = Path(spec.origin).parent
    seen: set[str] = set()
    todo = [root]
    missing: dict[str, str] = {}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod, finn_dir)
        if path is None:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    names = [".".join(base + ([node.module] if node.module else []))]
                elif node.module:
                    names = [node.module]
                    names += [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top == "finn":
                    todo.append(name)
                elif top not in sys.stdlib_module_names and top not in missing:
                    try:
                        found = importlib.util.find_spec(top) is not None
                    except (ImportError, ValueError):
                        found = False
                    if not found:
                        missing[top] = mod
    return sorted(missing.items())


def _finn_hlslib_dir() -> Path:
    """Where FINN looks for finn-hlslib: `$FINN_DEPS/finn-hlslib`, by default under
    FINN's root (`finn.interface.settings`: ``finn_deps`` relative to ``FINN_ROOT``)."""
    deps = os.environ.get("FINN_DEPS")
    if deps:
        return Path(deps).expanduser() / "finn-hlslib"
    from finn.interface.settings import FINN_ROOT

    return Path(FINN_ROOT) / "finn_deps" / "finn-hlslib"


def missing_synthesis_tools(board: Board) -> list[str]:
    """Everything FINN's builder needs for a bitfile and this environment lacks (empty:
    ready): Xilinx tools (Vivado, Vitis HLS, Vitis and its platform for Alveo boards),
    FINN's HLS library and the Python modules FINN's builder imports."""
    missing = []
    for mod, by in missing_builder_modules():
        if mod == "xsi":  # not on PyPI: finn.xsi.setup compiles it against Vivado's XSI
            missing.append("FINN's simulation module 'xsi' is not built (finn.xsi.setup "
                           "compiles it with Vivado)")
        else:
            missing.append(f"Python module {mod!r} is not installed ({by} imports it; "
                           f"pip install {mod})")
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
    hlslib = _finn_hlslib_dir()
    if not hlslib.is_dir():
        missing.append(f"finn-hlslib not found at {hlslib} (FINN's HLS layers include it; "
                       "FINN's setup fetches it into FINN_DEPS)")
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
