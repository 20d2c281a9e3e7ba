"""Where vlad-tui keeps its files (platformdirs), resolved lazily: importing creates nothing."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "vlad-tui"


def config_file() -> Path:
    """The default configuration file: ``<user config dir>/vlad-tui/config.toml``."""
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def state_dir() -> Path:
    """Per-user state (the run journal lives under ``state_dir() / "runs"``)."""
    return platformdirs.user_state_path(APP_NAME)


def data_dir() -> Path:
    """Per-user data (local copies of backups)."""
    return platformdirs.user_data_path(APP_NAME)


def runs_dir() -> Path:
    """The run journal's root directory."""
    return state_dir() / "runs"


def backups_dir() -> Path:
    """Where local (off-box) backup copies go."""
    return data_dir() / "backups"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and make it ``0700``; the parents it creates are ``0700`` too (the
    journal's directory, say, when the recording is the first to need it). Return it."""
    path = Path(path)
    missing = [p for p in path.parents if not p.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    for created in (path, *missing):
        os.chmod(created, 0o700)
    return path
