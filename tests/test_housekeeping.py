"""Housekeeping: dropping a kept database or removing an old release, one named thing at a time.

The name rules, the refusals and the rolled-back mark are pure and tested first. Then, against
real PostgreSQL, sshd and pm2 (one production site per module: a seeded database, the sample
backend under pm2 in cluster mode running the second of two releases): the drop through the
engine with its typed confirmation, each refusal, a session that connects after the
confirmation, a release in use, and the palette's picker in the TUI.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from tests.rig.operator import Operator
from tests.rig.pm2 import Pm2, wait_http
from tests.rig.postgres import PgServer, run_sync
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from tests.rig.world import GENERATE
from vlad_tui.config import Config, Project, Target
from vlad_tui.demo import install_backend
from vlad_tui.journal import Journal
from vlad_tui.ops import housekeeping as hk
from vlad_tui.ops import release_prune, releases
from vlad_tui.ops import release_switch as rs
from vlad_tui.ops.releases import BAD_MARK, Release
from vlad_tui.runbook.engine import ConfirmRequest, Engine
from vlad_tui.runbook.operations.context import ConfirmRequest as Request
from vlad_tui.runbook.operations.context import Operation
from vlad_tui.transport import SshTransport
from vlad_tui.tui.screens.confirm import mismatch

STAMP = "20261201_101500"


# --- the name rules (pure) ----------------------------------------------------------------------


def test_only_the_targets_failed_and_restore_databases_may_be_dropped() -> None:
    db = "peludosclick"
    assert hk.check_kept_name(f"{db}_failed_{STAMP}", db) == "failed"
    assert hk.check_kept_name(f"{db}_restore_{STAMP}", db) == "restore"
    for name, why in (
        (db, "production's own database"),
        ("postgres", "system database"),
        ("template1", "system database"),
        (f"{db}_staging", "not a database a rollback"),
        (f"{db}_failed_{STAMP}x", "not a database a rollback"),
        (f"{db}_failed_2026120_101500", "not a database a rollback"),
        (f"{db}_failed_", "not a database a rollback"),
        (f"other_failed_{STAMP}", "not a database a rollback"),
        (f"x{db}_failed_{STAMP}", "not a database a rollback"),
        (f"{db.upper()}_failed_{STAMP}", "not a database a rollback"),
        (f"{db}_failed_{STAMP}\n", "not a database a rollback"),
    ):
        with pytest.raises(hk.HousekeepingError, match=why):
            hk.check_kept_name(name, db)
    # A name PostgreSQL would have truncated is no name a rollback made.
    long = "p" * 41  # 41 + len("_failed_") + 15 = 64 bytes
    with pytest.raises(hk.HousekeepingError, match="not a database a rollback"):
        hk.check_kept_name(f"{long}_failed_{STAMP}", long)
    assert hk.drop_statement('a"b_failed_x') == 'DROP DATABASE "a""b_failed_x"'


def test_a_release_is_removed_only_by_its_id_under_releases_path_quoted() -> None:
    target = Target("p", app_dir="/srv/app", releases_dir="/srv/my releases")
    rid = "20261201T101500-3f2a1c9b0d1e-a1b2"
    assert hk.remove_command(target, rid) == f"rm -rf -- '/srv/my releases/{rid}'"
    for bad in ("../etc", "", "20261201T101500-x/../../etc", "*", f"{rid}/dist"):
        with pytest.raises(hk.HousekeepingError, match="not a release id"):
            hk.remove_command(target, bad)
    with pytest.raises(releases.ReleaseError, match="outside app_dir"):
        hk.remove_command(Target("p", app_dir="/srv/app", releases_dir="/srv/app/r"), rid)


def _release(rid: str, created: float, *, built: bool = True, bad: bool = False) -> Release:
    return Release(rid, f"/r/{rid}", None, created, created if built else None, rolled_back=bad)


def test_release_refusals_name_what_keeps_it() -> None:
    old = _release("20260101T000000-a", 1.0)
    young = _release("20260102T000000-b", 1000.0, built=False)
    in_use = [("/r/20260101T000000-a/dist/server.js", "pm2 runs it (app, worker 3)")]
    assert hk.release_refusal(old, in_use=in_use, previous=set()) == "pm2 runs it (app, worker 3)"
    assert "previous release" in (
        hk.release_refusal(old, in_use=[], previous={"/r/20260101T000000-a/"}) or ""
    )
    assert hk.release_refusal(young, in_use=[], previous=set(), now=2000.0) == (
        "incomplete, may still be building"
    )
    assert hk.release_refusal(young, in_use=[], previous=set(), now=1e9) is None
    # A prefix of another release's path is not that release.
    other = [("/r/20260101T000000-ab", "pm2 runs it")]
    assert hk.release_refusal(old, in_use=other, previous=set()) is None


def test_a_rolled_back_release_is_never_the_previous_one() -> None:
    r1, r2, r3 = (_release(f"2026010{i}T000000-x", float(i)) for i in (1, 2, 3))
    bad3 = replace(r3, rolled_back=True)
    log = json.dumps({"at": 1, "from": [r3.path], "to": r2.path})
    # Rolled back from r3 to r2: r3 is what ran before, but never "the previous release".
    assert rs.previous_releases(log, [r2.path], [r1, r2, r3]) == {r3.path}
    assert rs.previous_releases(log, [r2.path], [r1, r2, bad3]) == set()
    # No switch log: the newest built release older than the running one, skipping marked ones.
    bad2 = replace(r2, rolled_back=True)
    assert rs.previous_releases("", [r3.path], [r1, r2, r3]) == {r2.path}
    assert rs.previous_releases("", [r3.path], [r1, bad2, r3]) == {r1.path}
    # Pruning: a rolled-back release keeps no "previous" slot; it goes like any old one.
    rels = [_release(f"2026010{i}T000000-x", float(i)) for i in range(1, 6)]
    rels[1] = replace(rels[1], rolled_back=True)
    result = release_prune.choose_prune(
        rels, 2, in_use=[(rels[0].path, "pm2 runs it")], previous=[rels[1].path], now=10.0
    )
    assert result.removed == (rels[1].id, rels[2].id)
    assert result.kept == {
        rels[0].id: "pm2 runs it",
        rels[3].id: "one of the newest 2",
        rels[4].id: "one of the newest 2",
    }


def test_the_listing_reads_the_rolled_back_mark() -> None:
    rid, other = "20260101T000000-x", "20260102T000000-y"
    text = f"== {rid}\nsize 4\nrolled-back\nmanifest ok\n== {other}\nsize 8\n"
    listed = {r.id: r for r in releases.parse_listing("/r", text)}
    assert listed[rid].rolled_back and not listed[other].rolled_back
    assert listed[rid].describe().endswith(", rolled back)")
    assert "rolled back" not in listed[other].describe()
    assert BAD_MARK in releases.list_script("/r", sizes=False, verify=False)


async def test_the_typed_name_is_the_dropped_things_only_when_the_step_says_so() -> None:
    ctx: Any = SimpleNamespace(
        step=SimpleNamespace(id="cmd.x", title="X"),
        transport=SimpleNamespace(label="deploy@db1"),
        target=SimpleNamespace(name="production"),
        state={},
    )

    def asking(**kw: Any) -> Operation:
        fields = {"step_id": "", "title": "", "commands": [], "host": "", "database": ""}
        return Operation(lambda c: asyncio.sleep(0), lambda c: Request(**fields, **kw))

    named = await asking(
        consequence="", expected="db_failed_x", expected_label="the database's name"
    ).confirm_request(ctx)
    assert named is not None
    assert (named.expected, named.expected_label) == ("db_failed_x", "the database's name")
    for kw in (
        {"expected": "db_failed_x"},  # no label: the target's name, as for every step
        {"expected": " ", "expected_label": "the database's name"},  # blank: never
    ):
        request = await asking(consequence="", **kw).confirm_request(ctx)
        assert request is not None and request.expected == "production"
        assert request.expected_label == ""
    assert mismatch("x", "db_failed_x", "the database's name") == (
        "'x' is not 'db_failed_x': type the database's name exactly."
    )


# --- a production site (real PostgreSQL, sshd and pm2) ------------------------------------------


@dataclass
class Site:
    pg: PgServer
    pm2: Pm2
    target: Target
    production: str
    port: int
    r0: str
    r1: str
    r2: str
    root: Path

    def kept(self, kind: str = "failed", stamp: str = STAMP) -> str:
        return f"{self.production}_{kind}_{stamp}"

    async def databases(self) -> set[str]:
        conn = await self.pg.connect()
        try:
            rows = await conn.fetch(
                "select datname from pg_database where datname like $1", self.production + "%"
            )
        finally:
            await conn.close()
        return {r[0] for r in rows}

    async def create(self, name: str) -> None:
        conn = await self.pg.connect()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def site(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """Production under pm2 (cluster, 2 workers) running release r2; r1 ran before it (the
    previous release); r0 never ran (a copy of r1 under an older id)."""
    root = tmp_path_factory.mktemp("housekeeping")
    name = f"hk_{secrets.token_hex(4)}"
    url = run_sync(lambda: pg.create_database(name, seeded=True))
    app_dir = root / "backend-vlad"
    port = free_port()
    install_backend(app_dir, port=port, database_url=url)
    subprocess.run(["npm", "run", "build"], cwd=app_dir, check=True, capture_output=True)
    app_name = f"vlad-{name}"
    target = sshd.target(
        "production",
        app_dir=str(app_dir),
        pm2_name=app_name,
        pm2_bin=str(pm2.bin),
        pm2_home=str(pm2.home),
        health_url=f"http://127.0.0.1:{port}/health",
        backup_dir=str(root / "backups"),
        jobs_dir=str(root / "jobs"),
        database="dotenv:.env",
        install_command="npm ci --no-audit --no-fund",
        generate_command=GENERATE,
        build_command="npm run build",
        start_command="dist/server.js",
    )
    pm2.run("start", "dist/server.js", "--name", app_name, "-i", "2", cwd=app_dir)
    wait_http(f"http://127.0.0.1:{port}/health")

    async def two_releases() -> tuple[Release, Release]:
        async with SshTransport(target) as transport:
            built = [await releases.build_release(target, transport) for _ in range(2)]
            for release in built:
                plan = await rs.plan_switch(target, transport, release)
                await rs.switch(target, transport, plan, settle=0.5)
            return built[0], built[1]

    try:
        r1, r2 = run_sync(two_releases)
        r0 = "20200101T000000-old-0000"
        shutil.copytree(r1.path, Path(target.releases_path) / r0, symlinks=True)
        yield Site(pg, pm2, target, name, port, r0, r1.id, r2.id, root)
    finally:
        pm2.delete(app_name)
        run_sync(lambda: drop_all(pg, name))
        shutil.rmtree(Path(target.releases_path), ignore_errors=True)


async def drop_all(pg: PgServer, production: str) -> None:
    """Production and every database named after it (the tests' kept ones)."""
    conn = await pg.connect()
    try:
        rows = await conn.fetch(
            "select datname from pg_database where datname like $1", production + "%"
        )
        for (name,) in rows:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Desk:
    """One test's engine over the site: a journal, a run and a scripted operator."""

    site: Site
    journal: Journal
    transport: SshTransport
    operator: Operator
    engine: Engine
    #: Answers confirmations instead of the operator when set.
    hook: Callable[[ConfirmRequest], Awaitable[str | None]] | None = None

    def artifacts(self, kind: str) -> list[dict[str, Any]]:
        events = self.journal.load(self.engine.run.run_id).events
        return [e["data"] for e in events if e["kind"] == "artifact" and e["artifact"] == kind]

    def confirmations(self) -> list[dict[str, Any]]:
        return self.journal.load(self.engine.run.run_id).events_of("confirmation")


@pytest.fixture
async def desk(site: Site, tmp_path: Path) -> Any:
    config = Config(tmp_path / "config.toml", Project(), {"production": site.target})
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    operator = Operator()
    desk: Desk | None = None

    async def confirm(request: ConfirmRequest) -> str | None:
        assert desk is not None
        return await (desk.hook or operator.confirm)(request)

    async with SshTransport(site.target) as transport:
        engine = Engine(
            config,
            site.target,
            transport,
            run,
            confirm=confirm,
            sink=operator.events.append,
            journal=journal,
        )
        desk = Desk(site, journal, transport, operator, engine)
        yield desk
    run.close()


@pytest.mark.integration
async def test_a_kept_database_is_dropped_only_by_its_exact_name_and_journaled(
    desk: Desk,
) -> None:
    site = desk.site
    name = site.kept("failed")
    await site.create(name)
    desk.operator.answers = ["production", name.upper(), name]
    params = {"name": name}

    # The target's name no longer confirms: the name of what is dropped does.
    assert await desk.engine.run_step("cmd.kept_drop", params=params) != "ok"
    request = desk.operator.asked[0]
    assert request.expected == name and request.expected_label == "the database's name"
    assert request.commands == [f'DROP DATABASE "{name}"']
    assert "PostgreSQL 127.0.0.1" in request.host and name in request.changes
    assert "rows written to production after the restored backup" in request.consequence
    assert name in await site.databases()
    assert await desk.engine.run_step("cmd.kept_drop", params=params) != "ok"
    assert name in await site.databases()

    assert await desk.engine.run_step("cmd.kept_drop", params=params) == "ok", desk.engine.error(
        "cmd.kept_drop"
    )
    assert name not in await site.databases()
    assert site.production in await site.databases()
    [dropped] = desk.artifacts("kept_dropped")
    assert dropped["name"] == name and dropped["by"] == "ana@bastion"
    assert dropped["statement"] == f'DROP DATABASE "{name}"' and dropped["kept_kind"] == "failed"
    typed = [(c["typed"], c["accepted"]) for c in desk.confirmations()]
    assert typed == [("production", False), (name.upper(), False), (name, True)]


@pytest.mark.integration
async def test_production_and_names_no_rollback_made_are_refused_before_asking(
    desk: Desk,
) -> None:
    site = desk.site
    other = f"{site.production}_staging"
    await site.create(other)
    for name, why in (
        (site.production, "production's own database"),
        (other, "not a database a rollback"),
        ("postgres", "system database"),
    ):
        assert await desk.engine.run_step("cmd.kept_drop", params={"name": name}) == "failed"
        assert why in (desk.engine.error("cmd.kept_drop") or "")
    assert desk.operator.asked == []
    assert {site.production, other} <= await site.databases()
    assert desk.artifacts("kept_dropped") == []


@pytest.mark.integration
async def test_a_database_someone_is_connected_to_is_refused_naming_who(desk: Desk) -> None:
    site = desk.site
    name = site.kept("restore", "20261201_111500")
    await site.create(name)
    session = await asyncpg.connect(
        site.pg.url(name), server_settings={"application_name": "ana-psql"}
    )
    try:
        assert await desk.engine.run_step("cmd.kept_drop", params={"name": name}) == "failed"
        error = desk.engine.error("cmd.kept_drop") or ""
        assert "1 session(s) connected" in error and "ana-psql" in error, error
        assert desk.operator.asked == []
    finally:
        await session.close()

    # Nobody connected when the confirmation was shown; someone connects while it is open.
    late: list[asyncpg.Connection] = []

    async def confirm(request: ConfirmRequest) -> str:
        late.append(await asyncpg.connect(site.pg.url(name)))
        return request.expected

    desk.hook = confirm
    try:
        assert await desk.engine.run_step("cmd.kept_drop", params={"name": name}) == "failed"
        assert "session(s) connected" in (desk.engine.error("cmd.kept_drop") or "")
    finally:
        for conn in late:
            await conn.close()
    assert name in await site.databases()
    assert desk.artifacts("kept_dropped") == []


@pytest.mark.integration
async def test_a_release_pm2_runs_or_the_previous_one_is_refused_an_old_one_removed(
    desk: Desk,
) -> None:
    site = desk.site
    root = Path(site.target.releases_path)
    listed = {c.id: c for c in await hk.old_releases(site.target, desk.transport)}
    assert (listed[site.r2].refusal or "").startswith("pm2 runs it")
    assert "previous release" in (listed[site.r1].refusal or "")
    assert listed[site.r0].refusal is None
    # The palette's listing (read-only) says the same, line by line.
    assert await desk.engine.run_step("cmd.releases") == "ok"
    lines = {ln.text.split(" ")[0]: ln.text for ln in desk.engine.log("cmd.releases")}
    assert "build intact" in lines[site.r2] and "kept: pm2 runs it" in lines[site.r2]
    assert "kept: the previous release" in lines[site.r1] and "kept:" not in lines[site.r0]

    for rid, why in ((site.r2, "pm2 runs it"), (site.r1, "previous release"), ("../x", "id")):
        assert await desk.engine.run_step("cmd.release_remove", params={"release": rid}) == (
            "failed"
        )
        assert why in (desk.engine.error("cmd.release_remove") or "")
    assert desk.operator.asked == []

    desk.operator.answers = ["production", site.r0]
    params = {"release": site.r0}
    assert await desk.engine.run_step("cmd.release_remove", params=params) != "ok"
    assert (root / site.r0).is_dir()
    [request] = desk.operator.asked
    assert request.expected == site.r0 and request.expected_label == "the release's id"
    assert request.commands == [f"rm -rf -- {root / site.r0}"]
    assert await desk.engine.run_step("cmd.release_remove", params=params) == "ok"
    assert not (root / site.r0).exists()
    assert (root / site.r1).is_dir() and (root / site.r2).is_dir()
    [removed] = desk.artifacts("release_removed")
    assert removed["release"] == site.r0 and removed["by"] == "ana@bastion"
    assert (await rs.verify_running(site.target, desk.transport, str(root / site.r2))).ok


@pytest.mark.integration
async def test_the_palette_picks_a_kept_database_and_drops_it_by_name(
    site: Site, tmp_path: Path
) -> None:
    from textual.widgets import OptionList

    from tests.rig.pilot import open_palette_command, wait_until
    from vlad_tui.tui.app import make_app
    from vlad_tui.tui.screens.confirm import ConfirmScreen
    from vlad_tui.tui.screens.housekeeping import HousekeepingScreen

    free, busy = site.kept("failed", "20261202_090000"), site.kept("restore", "20261202_080000")
    for name in (free, busy):
        await site.create(name)
    session = await asyncpg.connect(site.pg.url(busy), server_settings={"application_name": "bob"})
    config = Config(tmp_path / "config.toml", Project(), {"production": site.target})
    journal = Journal(tmp_path / "runs")
    app = make_app(config, target=site.target, journal=journal, environ={})
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_palette_command(pilot, "Drop a kept database")
            await wait_until(pilot, lambda: isinstance(app.screen, HousekeepingScreen))
            picker = app.screen
            assert isinstance(picker, HousekeepingScreen)
            status = picker.query_one("#housekeeping-status")
            await wait_until(
                pilot,
                lambda: bool(picker.candidates) or "Cannot" in str(status.render()),
                timeout=30,
            )
            listing = picker.query_one(OptionList)
            ids = [listing.get_option_at_index(i).id for i in range(listing.option_count)]
            assert ids[:2] == [free, busy], status.render()  # newest first
            assert listing.get_option_at_index(1).disabled  # bob is connected
            assert "bob" in str(listing.get_option_at_index(1).prompt)
            listing.highlighted = 0
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
            modal = app.screen
            assert isinstance(modal, ConfirmScreen) and modal.request.expected == free
            assert "(the database's name)" in str(modal.query_one("#confirm-prompt").render())
            await pilot.press(*free)
            await pilot.press("enter")
            await wait_until(pilot, lambda: not app.busy, timeout=60)
            assert app.engine is not None
            assert app.engine.statuses["cmd.kept_drop"] == "ok", app.engine.error("cmd.kept_drop")
    finally:
        await session.close()
    assert free not in await site.databases() and busy in await site.databases()
