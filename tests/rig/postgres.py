"""A throwaway PostgreSQL cluster for the test session (fixtures ``pg`` and ``peludosclick``).

``initdb -A scram-sha-256`` with superuser ``vlad`` and a random password full of URL-unsafe
characters, ``pg_ctl start`` on 127.0.0.1 and a free port (socket inside the temp dir), and at
the end ``pg_ctl stop -m immediate`` and the directory removed. Under root every server command
runs as the ``postgres`` user (see :mod:`vlad_tui.demo.cluster`).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg
import pytest

from tests.rig.services import free_port, missing
from vlad_tui.demo.cluster import PgCluster, find_bin_dir
from vlad_tui.demo.seed import COUNTS, seed_database

T = TypeVar("T")
#: Characters that must be percent-encoded in a URL (and one that needs shell quoting).
UNSAFE = "@:/%#?&$' "


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even if a loop runs in this thread."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(factory())
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@dataclass(frozen=True)
class PgServer:
    """A running test cluster and the superuser's credentials."""

    host: str
    port: int
    user: str
    password: str
    bin_dir: Path
    cluster: PgCluster

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        """``postgresql://vlad:<percent-encoded password>@127.0.0.1:PORT/dbname``."""
        pw = quote(self.password if password is None else password, safe="")
        return f"postgresql://{quote(self.user, safe='')}:{pw}@{self.host}:{self.port}/{dbname}"

    async def connect(self, dbname: str = "postgres") -> asyncpg.Connection:
        return await asyncpg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=dbname,
        )

    async def create_database(self, name: str, *, seeded: bool = False) -> str:
        """Create (or recreate) database ``name``, optionally seeded; return its URL."""
        conn = await self.connect()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        if seeded:
            conn = await self.connect(name)
            try:
                await seed_database(conn)
            finally:
                await conn.close()
        return self.url(name)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server as ``pg_ctl restart -m <mode>`` would (same port and options):
        every session is cut off; returns once it accepts connections again. Blocking."""
        self.cluster.stop(mode=mode)
        self.cluster.start()

    async def drop_database(self, name: str) -> None:
        conn = await self.connect()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@dataclass(frozen=True)
class SeededDatabase:
    """The seeded ``peludosclick`` database: its URL and the rows inserted per table."""

    name: str
    url: str
    counts: dict[str, int]


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A real PostgreSQL server on 127.0.0.1 (scram-sha-256, superuser ``vlad``)."""
    with pg_server() as server:
        yield server


@contextmanager
def pg_server() -> Iterator[PgServer]:
    """A cluster of its own (for a module that restarts or stops it), removed afterwards."""
    bin_dir = find_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        missing("PostgreSQL server binaries", "apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="vlad-pg-"))
    root.chmod(0o755)
    password = "p" + UNSAFE + secrets.token_urlsafe(9)
    cluster = PgCluster(root=root / "cluster", port=free_port(), bin_dir=bin_dir, password=password)
    try:
        cluster.init()
        try:
            cluster.start()
        except Exception:
            cluster.port = free_port()  # lost a race for the port: once more
            cluster.start()
        yield PgServer("127.0.0.1", cluster.port, cluster.superuser, password, bin_dir, cluster)
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def peludosclick(pg: PgServer) -> SeededDatabase:
    """Database ``peludosclick``: the five critical tables, data, ``_prisma_migrations``."""
    url = run_sync(lambda: pg.create_database("peludosclick", seeded=True))
    return SeededDatabase("peludosclick", url, dict(COUNTS))


__all__ = ["PgServer", "SeededDatabase", "peludosclick", "pg", "pg_server", "run_sync"]
