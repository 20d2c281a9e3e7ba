"""The embedded sandbox behind ``vlad-tui demo``: a sample backend, seed data, local services."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: The dependency-free sample of backend-vlad (server.js, package.json, prisma/).
BACKEND_DIR = Path(__file__).parent / "backend"


def install_backend(
    app_dir: Path, *, port: int, database_url: str, extra_env: dict[str, str] | None = None
) -> Path:
    """Copy the sample backend to ``app_dir`` and write its ``.env`` (mode 0600); the .env path.

    ``database_url`` holds a password: it goes only into that private file.
    """
    shutil.copytree(
        BACKEND_DIR,
        app_dir,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("node_modules", "dist", ".env", "__pycache__"),
    )
    env = {"PORT": str(port), "DATABASE_URL": database_url, **(extra_env or {})}
    dotenv = app_dir / ".env"
    fd = os.open(dotenv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for key, value in env.items():
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            fh.write(f'{key}="{escaped}"\n')
    os.chmod(dotenv, 0o600)
    return dotenv
