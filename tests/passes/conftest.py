"""Fixtures for the pass tests: FINN's TFC and CNV from brevitas_examples (random weights),
exported to QONNX once per session; each test gets its own copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from qonnx.core.modelwrapper import ModelWrapper


def export_brevitas(module, shape: tuple[int, ...], tmp_path: Path) -> ModelWrapper:  # type: ignore[no-untyped-def]
    import torch
    from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup_model

    from nashc.runtime.golden import load_model

    module.eval()
    p = tmp_path / "m.onnx"
    export_qonnx(module, torch.randn(*shape), str(p))
    return cleanup_model(load_model(p))


def _bnn_pynq(name: str, shape: tuple[int, ...],
              factory: pytest.TempPathFactory) -> Callable[[], ModelWrapper]:
    import torch
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(0)
    net, _ = model_with_cfg(name, False)
    data = export_brevitas(net, shape, factory.mktemp(name)).model.SerializeToString()
    return lambda: ModelWrapper(onnx.ModelProto.FromString(data))


@pytest.fixture(scope="session")
def brevitas_export() -> Callable[..., ModelWrapper]:
    """``brevitas_export(module, input_shape, tmp_path)`` -> cleaned QONNX model."""
    return export_brevitas


@pytest.fixture(scope="session")
def tfc_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], ModelWrapper]:
    return _bnn_pynq("tfc_2w2a", (1, 1, 28, 28), tmp_path_factory)


@pytest.fixture(scope="session")
def cnv_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], ModelWrapper]:
    return _bnn_pynq("cnv_2w2a", (1, 3, 32, 32), tmp_path_factory)
