"""gather_facts against real PostgreSQL, pm2 and sshd: healthy, broken, unreachable."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2, SampleApp, wait_http
from tests.rig.postgres import PgServer, SeededDatabase
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project
from vlad_tui.demo import install_backend
from vlad_tui.demo.seed import CRITICAL_TABLES
from vlad_tui.ops.facts import Facts, format_bytes, format_duration, gather_facts
from vlad_tui.transport import open_transport

pytestmark = pytest.mark.integration

CONFIG = Config(path=Path("config.toml"), project=Project(critical_tables=CRITICAL_TABLES))


def test_render_and_dict_of_handmade_facts() -> None:
    facts = Facts(
        target="production",
        transport="deploy@prod:22",
        server={"hostname": "prod-1", "kernel": "Linux 6.1", "uptime_s": 93784.0},
        postgres={
            "url": "postgresql://app@postgres:5432/peludosclick",
            "database": "peludosclick",
            "version": "15.8",
            "size_bytes": 12 * 1024**2,
            "connections": {
                "by_state": {"active": 1, "idle": 4},
                "total": 5,
                "max_connections": 100,
            },
        },
        row_counts={"users": 1200, "medals": None},
        pm2=[
            {
                "name": "backend-vlad",
                "pm_id": 0,
                "status": "online",
                "pid": 4242,
                "mode": "cluster",
                "instances": 1,
                "restarts": 3,
                "memory": 50 * 1024**2,
                "cpu": 1.5,
                "uptime": 300.0,
            }
        ],
        problems=['PostgreSQL: critical table "medals" is missing in database peludosclick'],
    )
    text = facts.render_text()
    assert "prod-1 · Linux 6.1 · up 1d2h" in text
    assert "PostgreSQL 15.8 · 12.0 MiB" in text
    assert "5 of max 100 (active 1, idle 4)" in text
    assert "users        1,200" in text and "medals     MISSING" in text
    assert "backend-vlad#0 online pid 4242 · cluster · restarts 3 · mem 50.0 MiB" in text
    assert text.splitlines()[-1].startswith("PROBLEM    PostgreSQL: critical table")
    data = facts.to_dict()
    assert data["ok"] is False and json.loads(json.dumps(data))["row_counts"]["medals"] is None
    assert (format_bytes(512), format_bytes(3 * 1024**3), format_bytes(None)) == (
        "512 B",
        "3.0 GiB",
        "?",
    )
    assert [format_duration(s) for s in (42, 300, 3 * 3600 + 720)] == ["42s", "5m", "3h12m"]


@pytest.mark.parametrize("via", ["local", "ssh"])
async def test_healthy_target_has_every_fact_and_no_problem(
    via: str,
    request: pytest.FixtureRequest,
    pg: PgServer,
    peludosclick: SeededDatabase,
    sample_app: SampleApp,
) -> None:
    sshd: SshdServer | None = request.getfixturevalue("sshd") if via == "ssh" else None
    target = sample_app.target(sshd=sshd)
    async with open_transport(target) as transport:
        facts = await gather_facts(CONFIG, target, transport)
    assert facts.problems == [] and facts.ok
    assert facts.transport == transport.label
    assert facts.server["hostname"] and facts.server["kernel"].startswith("Linux")
    assert facts.server["disk_free"] > 0 and facts.server["uptime_s"] > 0
    assert facts.postgres["database"] == "peludosclick"
    assert re.match(r"\d+\.\d+", facts.postgres["version"])
    assert facts.postgres["size_bytes"] > 0 and facts.postgres["connections"]["total"] >= 1
    assert facts.row_counts == peludosclick.counts
    assert [p["status"] for p in facts.pm2] == ["online"] * sample_app.instances
    assert {p["mode"] for p in facts.pm2} == {"cluster"}
    text = facts.render_text()
    assert text.endswith("status     OK") and "peludosclick" in text
    assert pg.password not in text and pg.password not in json.dumps(facts.to_dict(), default=str)


async def test_broken_target_lists_each_problem(
    tmp_path: Path, pg: PgServer, sample_app: SampleApp
) -> None:
    url = await pg.create_database("peludos_broken", seeded=True)
    conn = await pg.connect("peludos_broken")
    try:
        await conn.execute('DROP TABLE "medal_fronts" CASCADE')
    finally:
        await conn.close()
    target = sample_app.target(
        database=url, pm2_name="backend-vlad-missing", app_dir=str(tmp_path / "gone")
    )
    try:
        async with open_transport(target) as transport:
            facts = await gather_facts(CONFIG, target, transport)
    finally:
        await pg.drop_database("peludos_broken")
    assert not facts.ok
    assert facts.row_counts["medal_fronts"] is None and facts.row_counts["users"] == 120
    assert facts.problems == [
        f"server: app_dir {tmp_path / 'gone'} does not exist on production",
        'PostgreSQL: critical table "medal_fronts" is missing in database peludos_broken',
        'pm2: no process named "backend-vlad-missing" on production',
    ]
    assert facts.pm2 == []


async def test_stopped_app_and_unreachable_database_are_problems_but_pm2_is_reported(
    pm2: Pm2, pg: PgServer, sample_app: SampleApp
) -> None:
    root = Path(tempfile.mkdtemp(prefix="vlad-stopped-"))
    app_dir, name = root / "app", "backend-vlad-stopped"
    # The .env points at a database with a wrong password: the DB part fails, pm2 still reports.
    install_backend(
        app_dir, port=free_port(), database_url=pg.url("peludosclick", password="Wr0ng@pw")
    )
    try:
        pm2.start_app(name, app_dir)
        pm2.run("stop", name)
        target = sample_app.target(app_dir=str(app_dir), pm2_name=name)
        async with open_transport(target) as transport:
            facts = await gather_facts(CONFIG, target, transport)
    finally:
        pm2.delete(name)
        shutil.rmtree(root, ignore_errors=True)
    assert facts.problems == [
        f'PostgreSQL 127.0.0.1:{pg.port}: password authentication failed for user "vlad"',
        f"pm2: {name}#{facts.pm2[0]['pm_id']} is stopped, not online",
    ]
    assert facts.postgres["error"].endswith('failed for user "vlad"')
    assert facts.row_counts == {}
    assert [(p["name"], p["status"], p["mode"], p["pid"]) for p in facts.pm2] == [
        (name, "stopped", "fork", None)
    ]
    assert "Wr0ng@pw" not in facts.render_text()
    # The session's app was not disturbed.
    wait_http(sample_app.health_url, timeout=5)


async def test_unreachable_ssh_is_one_problem_and_nothing_else(sshd: SshdServer) -> None:
    target = sshd.target("production", port=free_port(), connect_timeout=3.0)
    async with open_transport(target) as transport:
        facts = await gather_facts(CONFIG, target, transport)
    assert len(facts.problems) == 1
    assert facts.problems[0].startswith("production unreachable: ")
    assert "\n" not in facts.problems[0]
    assert facts.server == {} and facts.postgres == {} and facts.pm2 == []
    assert "PROBLEM    production unreachable" in facts.render_text()
