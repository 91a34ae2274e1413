"""Shared helpers for the .nash front-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path: Path):
    """Writes a .nash text into a temporary file and returns its path."""

    def _write(text: str, name: str = "t.nash") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
