"""Real pm2 for the test session (fixtures ``pm2`` and ``sample_app``).

pm2 comes from PATH or ``<repo>/.tools/node_modules/.bin/pm2`` (``scripts/setup.sh`` runs
``npm install --prefix .tools pm2@6``). The daemon lives in a temporary ``PM2_HOME`` and is
killed (``pm2 kill``) at the end of the session.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.rig.postgres import SeededDatabase
from tests.rig.services import free_port, missing
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.demo import install_backend
from vlad_tui.demo import pm2 as demo_pm2
from vlad_tui.demo.pm2 import Pm2

REPO = Path(__file__).resolve().parents[2]
LOCAL_PM2 = REPO / ".tools" / "node_modules" / ".bin" / "pm2"
SAMPLE_NAME = "backend-vlad-test"


def find_pm2() -> Path | None:
    return demo_pm2.find_pm2(LOCAL_PM2)


@dataclass(frozen=True)
class SampleApp:
    """The sample backend running under pm2 (cluster mode)."""

    name: str
    app_dir: Path
    port: int
    instances: int
    pm2_home: Path
    pm2_bin: Path
    database_url: str

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def target(
        self, name: str = "production", *, sshd: SshdServer | None = None, **kw: Any
    ) -> Target:
        """A target for this app: local by default, or through ``sshd`` (same machine)."""
        fields: dict[str, Any] = {
            "app_dir": str(self.app_dir),
            "pm2_name": self.name,
            "pm2_bin": str(self.pm2_bin),
            "pm2_home": str(self.pm2_home),
            "health_url": self.health_url,
            "backup_dir": str(self.app_dir.parent / "backups"),
            "database": "dotenv:.env",
            **kw,
        }
        if sshd is not None:
            return sshd.target(name, **fields)
        return Target(name, host="local", **fields)


def wait_http(url: str, timeout: float = 20.0) -> bytes:
    """GET ``url`` until it answers 200; its body."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return resp.read()
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s: {last}")


@pytest.fixture(scope="session")
def pm2() -> Iterator[Pm2]:
    """A real pm2 daemon in a temporary ``PM2_HOME``."""
    binary = find_pm2()
    if binary is None or shutil.which("node") is None:
        missing("pm2", "npm install --prefix .tools pm2@6")
    home = Path(tempfile.mkdtemp(prefix="vlad-pm2-"))
    rig = Pm2(binary, home)
    try:
        rig.run("ping")
        yield rig
    finally:
        rig.run("kill", check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_app(pm2: Pm2, peludosclick: SeededDatabase) -> Iterator[SampleApp]:
    """The sample backend in a temp ``app_dir`` (``.env``: PORT, DATABASE_URL), 2 instances."""
    root = Path(tempfile.mkdtemp(prefix="vlad-app-"))
    app_dir = root / "backend-vlad"
    port = free_port()
    install_backend(app_dir, port=port, database_url=peludosclick.url)
    (root / "backups").mkdir()
    instances = 2
    try:
        pm2.start_app(SAMPLE_NAME, app_dir, instances=instances)
        wait_http(f"http://127.0.0.1:{port}/health")
        yield SampleApp(SAMPLE_NAME, app_dir, port, instances, pm2.home, pm2.bin, peludosclick.url)
    finally:
        pm2.delete(SAMPLE_NAME)
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["Pm2", "SampleApp", "find_pm2", "pm2", "sample_app", "wait_http"]
