"""The demo sandbox the end-to-end legs walk: built once per session with ``ssh=True``.

Everything a leg does crosses real parts: the loopback OpenSSH sshd (host key verified), the
sandbox's PostgreSQL cluster and pm2 daemon. pm2 comes from PATH or ``.tools/`` (never from npm
during a test run). The sandbox is a one-way street, like a real deploy: each leg starts where
the previous one left it (Phase 2 needs Phase 1's staging database), so the legs share one app
run (see ``test_phases.py``), and nothing else writes to this sandbox.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.rig.pm2 import find_pm2
from tests.rig.services import missing
from vlad_tui.demo import sshd as loopback_sshd
from vlad_tui.demo.cluster import find_bin_dir
from vlad_tui.demo.pm2 import Pm2
from vlad_tui.demo.sandbox import Sandbox
from vlad_tui.dotenv import parse_dotenv

TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")


def require_demo_tools() -> Path:
    """pm2's binary; a missing tool is a skip locally and a failure in CI."""
    pm2 = find_pm2()
    if pm2 is None:
        missing("pm2", "bash scripts/setup.sh (npm install --prefix .tools pm2)")
    if find_bin_dir() is None:
        missing("PostgreSQL server binaries", "apt-get install postgresql")
    if shutil.which("node") is None:
        missing("Node.js", "apt-get install nodejs npm")
    if not loopback_sshd.available():
        missing("OpenSSH server", "apt-get install openssh-server")
    return pm2


def env_with_pm2(pm2: Path) -> dict[str, str]:
    """The environment with pm2's directory first on PATH (the sandbox then installs nothing)."""
    return {**os.environ, "PATH": f"{pm2.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@dataclass
class DemoSandbox:
    """A built sandbox and what the legs read from it."""

    sandbox: Sandbox
    pm2: Pm2

    @property
    def root(self) -> Path:
        return self.sandbox.root

    def database_url(self, env_file: str = ".env") -> str:
        """``DATABASE_URL`` of the sample app's ``.env`` (``.env.staging`` for staging)."""
        return parse_dotenv((self.sandbox.app_dir / env_file).read_text())["DATABASE_URL"]

    @property
    def password(self) -> str:
        """The cluster's password (it must never reach the journal or the screen)."""
        return urlsplit(self.database_url()).password or ""

    async def fetch(self, query: str, *, staging: bool = False) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url(".env.staging" if staging else ".env"))
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    async def counts(self, *, staging: bool = False) -> dict[str, int]:
        rows = await self.fetch(
            " union all ".join(f"select '{t}', count(*) from \"{t}\"" for t in TABLES),
            staging=staging,
        )
        return {r[0]: r[1] for r in rows}

    async def migrations(self, *, staging: bool = False) -> list[str]:
        rows = await self.fetch(
            "select migration_name from _prisma_migrations "
            "where finished_at is not null and rolled_back_at is null order by migration_name",
            staging=staging,
        )
        return [r[0] for r in rows]

    def pm2_names(self) -> list[str]:
        return [p["name"] for p in self.pm2.jlist()]


@pytest.fixture(scope="session")
def demo_sandbox() -> Iterator[DemoSandbox]:
    """``vlad-tui demo --ssh`` in a temp dir, torn down (every process stopped) at the end."""
    pm2 = require_demo_tools()
    parent = Path(tempfile.mkdtemp(prefix="vlad-e2e-"))
    parent.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must enter the sandbox
    sandbox = Sandbox(parent / "sandbox")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PATH", env_with_pm2(pm2)["PATH"])
            sandbox.setup("small", ssh=True, progress=lambda _line: None)
        state = sandbox.state()
        assert state is not None and state.ssh_port is not None
        yield DemoSandbox(sandbox, Pm2(Path(state.pm2_bin), sandbox.root / "pm2"))
    finally:
        sandbox.teardown(progress=lambda _line: None)
        shutil.rmtree(parent, ignore_errors=True)
