"""A production world for engine tests: a seeded database, the sample backend built in place and
run by pm2 (cluster, 2 workers) from ``app_dir`` (the plan's layout), reached through real sshd.

``build_world`` is an async context manager, so a module can share one world (its fixture
decides the scope); ``phases_1_and_2`` runs the preparation and the staging test on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.rig.operator import Operator
from tests.rig.pm2 import Pm2, wait_http
from tests.rig.postgres import PgServer
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project, SmokeCheck, Target
from vlad_tui.demo import install_backend
from vlad_tui.journal import Journal, Run
from vlad_tui.runbook.engine import Engine
from vlad_tui.transport import SshTransport

GENERATE = "node -e \"console.log('prisma generate: nothing to generate in the sample')\""
#: The sample has no Prisma CLI; its schema file must be there (real servers: prisma validate).
VALIDATE = "test -s prisma/schema.prisma && echo 'schema present'"
FEATURES = ("p2.login", "p2.virgin_medals", "p2.qr_codes", "p2.partners", "p2.api")


@dataclass
class World:
    pg: PgServer
    pm2: Pm2
    target: Target
    config: Config
    journal: Journal
    run: Run
    transport: SshTransport
    operator: Operator
    app_dir: Path
    port: int
    production: str
    staging: str

    def engine(self, run: Run | None = None) -> Engine:
        return Engine(
            self.config,
            self.target,
            self.transport,
            run or self.run,
            confirm=self.operator.confirm,
            sink=self.operator.events.append,
            journal=self.journal,
        )

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def builds(self, n: int = 10) -> set[str]:
        return {self.get("/build")["build"] for _ in range(n)}

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.pg.connect(self.production)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def applied(self) -> list[str]:
        rows = await self.fetch(
            "select migration_name from _prisma_migrations where finished_at is not null "
            "and rolled_back_at is null order by migration_name"
        )
        return [r[0] for r in rows]

    def events(self, run: Run | None = None) -> list[dict[str, Any]]:
        return self.journal.load((run or self.run).run_id).events

    def artifacts(self, kind: str, step: str | None = None) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.events()
            if e["kind"] == "artifact" and e["artifact"] == kind and step in (None, e["step"])
        ]

    def journal_text(self) -> str:
        files = self.journal.root.rglob("*")
        return "".join(p.read_text(errors="replace") for p in files if p.is_file())


#: The sample's critical tables.
TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")


async def fingerprints(world: World) -> dict[str, tuple[Any, ...]]:
    """Row count and an md5 of every row of each critical table of production."""
    out = {}
    for table in TABLES:
        [row] = await world.fetch(
            f"select count(*), md5(coalesce(string_agg(t::text, ',' order by t::text), '')) "
            f"from {table} t"
        )
        out[table] = tuple(row)
    return out


@asynccontextmanager
async def build_world(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path: Path, **target: Any
) -> AsyncIterator[World]:
    """A fresh world in ``tmp_path``; ``target`` overrides fields of the production target."""
    name = f"p3_{secrets.token_hex(4)}"
    url = await pg.create_database(name, seeded=True)
    app_dir = tmp_path / "backend-vlad"
    port = free_port()
    install_backend(app_dir, port=port, database_url=url)
    env = {**os.environ, "BUILD_ID": "production-v1"}
    subprocess.run(["npm", "run", "build"], cwd=app_dir, env=env, check=True, capture_output=True)
    backups = tmp_path / "backups"
    backups.mkdir()
    app_name = f"vlad-{name}"
    target = sshd.target(
        "production",
        app_dir=str(app_dir),
        pm2_name=app_name,
        pm2_bin=str(pm2.bin),
        pm2_home=str(pm2.home),
        health_url=f"http://127.0.0.1:{port}/health",
        backup_dir=str(backups),
        jobs_dir=str(tmp_path / "jobs"),
        database="dotenv:.env",
        migrate_command="npm run migrate:deploy",
        install_command="npm ci --no-audit --no-fund",
        generate_command=GENERATE,
        build_command="npm run build",
        validate_command=VALIDATE,
        start_command="dist/server.js",
        staging_port=free_port(),
        smoke_checks=(SmokeCheck("GET", "/health", 200), SmokeCheck("GET", "/build", 200)),
        **target,
    )
    (tmp_path / "jobs").mkdir()
    config = Config(tmp_path / "config.toml", Project(), {"production": target})
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    transport = SshTransport(target)
    subprocess.run(
        [pm2.bin, "start", "dist/server.js", "--name", app_name, "-i", "2"],
        cwd=app_dir, env=pm2.env, check=True, capture_output=True,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health")
    world = World(
        pg, pm2, target, config, journal, run, transport, Operator(), app_dir, port, name,
        f"{name}_staging",
    )  # fmt: skip
    try:
        yield world
    finally:
        run.close()
        await transport.close()
        for leftover in {p["name"] for p in await asyncio.to_thread(pm2.jlist)} & {
            target.staging_name,
            app_name,
        }:
            await asyncio.to_thread(pm2.delete, leftover)
        await pg.drop_database(world.staging)
        await pg.drop_database(name)


async def phases_1_and_2(
    world: World, engine: Engine, during: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Phase 1 (one confirmation: the staging restore) and Phase 2 with the manual checks
    ticked while the staging instance runs (``during`` is awaited then); lint findings
    acknowledged."""
    world.operator.answers = ["production"]
    assert await engine.run_phase(1), {s: engine.error(s) for s in engine.statuses}
    phase2 = asyncio.create_task(engine.run_phase(2))
    deadline = asyncio.get_running_loop().time() + 180
    while engine.statuses["p2.features"] != "running":
        assert not phase2.done(), {s: engine.error(s) for s in engine.statuses if engine.error(s)}
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    if during is not None:
        await during()
    for item in FEATURES:
        engine.tick(item, True)
    assert await asyncio.wait_for(phase2, 60), {s: engine.error(s) for s in engine.statuses}
    if engine.pending_acknowledgements("lint"):
        engine.acknowledge("lint", note="revisado")
