from __future__ import annotations

import os
from pathlib import Path

from nashc.targets.finn_env import finn_workspace


def test_workspace_sets_and_restores(tmp_path: Path) -> None:
    import finn.util.settings as s

    before = dict(os.environ)
    with finn_workspace(tmp_path) as build:
        assert build == tmp_path / "finn_build" and build.is_dir()
        assert os.environ["FINN_BUILD_DIR"] == str(build)
        assert s.get_settings().finn_build_dir == build
    assert dict(os.environ) == before
