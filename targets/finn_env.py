"""Run FINN inside a directory of ours, with its global settings initialised.

FINN (finn-plus) keeps global settings (`finn.util.settings`) and reads and writes
several environment variables (`FINN_BUILD_DIR`, `FINN_DEPS`, `FINN_SETTINGS`,
`NUM_DEFAULT_WORKERS`, ...). Some transformations (`CreateDataflowPartition`, code
generation) write into `FINN_BUILD_DIR`. `finn_workspace(dir)` points all of them at
`dir`, so nothing FINN writes lands outside it, and restores the environment and FINN's
previous settings afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["finn_workspace", "FINN_ENV_VARS"]

#: Environment variables FINN reads or writes; all are restored on exit.
FINN_ENV_VARS = (
    "FINN_BUILD_DIR",
    "FINN_SETTINGS",
    "FINN_DEPS",
    "FINN_DEPS_DEFINITIONS",
    "NUM_DEFAULT_WORKERS",
)


@contextmanager
def finn_workspace(directory: str | Path) -> Iterator[Path]:
    """Initialises FINN's settings with its build directory at `directory/finn_build`.

    The settings file is looked up at `directory/finn_settings.yaml` (normally absent),
    so FINN neither reads nor creates `~/.finn/settings.yaml`. Yields the build
    directory. On exit the environment variables in `FINN_ENV_VARS` and FINN's global
    settings object are restored to what they were before.
    """
    import finn.util.settings as finn_settings
    from finn.interface.settings import FINNSettings

    root = Path(directory).absolute()
    build_dir = root / "finn_build"
    build_dir.mkdir(parents=True, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in FINN_ENV_VARS}
    saved_settings = finn_settings._SETTINGS
    try:
        os.environ["FINN_SETTINGS"] = str(root / "finn_settings.yaml")
        os.environ["FINN_BUILD_DIR"] = str(build_dir)
        settings = FINNSettings.init(
            override_settings_path=root / "finn_settings.yaml",
            flow_config=root / "flow.yaml",
            finn_build_dir=str(build_dir),
            automatic_dependency_updates=False,
            auto_set_environment_vars=True,
        )
        finn_settings._SETTINGS = settings
        yield build_dir
    finally:
        finn_settings._SETTINGS = saved_settings
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
