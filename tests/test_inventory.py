"""The target's state in one read: the backup merge (pure), and real sshd + PostgreSQL + pm2."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from tests.rig.pm2 import SampleApp
from tests.rig.postgres import PgServer, SeededDatabase
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project, Target
from vlad_tui.db import resolve_database_url
from vlad_tui.demo.seed import CRITICAL_TABLES
from vlad_tui.journal import Journal
from vlad_tui.ops import lock
from vlad_tui.ops.backup import Backup
from vlad_tui.ops.backup_dump import create_backup
from vlad_tui.ops.backup_verify import verify_backup
from vlad_tui.ops.inventory import (
    CLOCK_SKEW_S,
    BackupRecord,
    KnownBackup,
    Part,
    TargetState,
    latest_verified_backup,
    merge_backups,
    read_backups,
    read_state,
)
from vlad_tui.transport import LocalTransport, open_transport

NOW = 1_795_867_200.0
WHEN = datetime(2025, 3, 14, 9, 26, 53)
DIR = "/srv/backups"
CONFIG = Config(path=Path("config.toml"), project=Project(critical_tables=CRITICAL_TABLES))


def artifact(name: str, *, hours: float, verified: bool, size: int = 1000, **extra: object) -> dict:
    fmt = {"dump": "custom", "dir": "directory", "sql": "plain"}[name.rsplit(".", 1)[-1]]
    return {
        "path": f"{DIR}/{name}",
        "format": fmt,
        "size": size,
        "sha256": "ab" * 32,
        "created_at": NOW - hours * 3600,
        "database": "postgresql://vlad@db:5432/peludosclick",
        "verified": verified,
        "checks": {"exit_status": "ok"},
        **extra,
    }


def on_disk(name: str, *, hours: float, size: int = 1000) -> Backup:
    fmt = {"dump": "custom", "dir": "directory", "sql": "plain"}[name.rsplit(".", 1)[-1]]
    return Backup(f"{DIR}/{name}", fmt, size, "", NOW - hours * 3600, "")


# --- the merge (pure) -----------------------------------------------------------------------


def test_journal_and_disk_merge_into_one_list_newest_first() -> None:
    made = artifact("backup_produccion_1.dir", hours=2, verified=False)
    records = [
        BackupRecord("run-a", "p1.backup", NOW - 7000, made),
        BackupRecord("run-a", "p1.verify_backup", NOW - 6900, {**made, "verified": True}),
        BackupRecord(
            "run-b", "p1.backup", NOW - 90000, artifact("old.dump", hours=25, verified=True)
        ),
        BackupRecord(
            "run-b", "p1.backup", NOW - 80000, artifact("never.sql", hours=22, verified=False)
        ),
    ]
    disk = [
        on_disk("backup_produccion_1.dir", hours=2),
        on_disk("never.sql", hours=22),
        on_disk("stray.dump", hours=1, size=77),  # no journaled run knows it
    ]
    merged = merge_backups(records, disk, exists={f"{DIR}/old.dump": False})
    by_name = {b.name: b for b in merged}
    assert [b.name for b in merged] == [
        "stray.dump",
        "backup_produccion_1.dir",
        "never.sql",
        "old.dump",
    ]
    directory = by_name["backup_produccion_1.dir"]
    assert directory.format == "directory" and directory.verified is True
    # Made by the backup step, verified by a later one: the maker is named.
    assert (directory.run_id, directory.step) == ("run-a", "p1.backup")
    assert directory.exists is True and directory.size_on_disk == 1000 and directory.usable
    assert by_name["old.dump"].verified is True and by_name["old.dump"].exists is False
    assert not by_name["old.dump"].usable  # deleted since it was verified
    assert by_name["never.sql"].verified is False and not by_name["never.sql"].usable
    stray = by_name["stray.dump"]
    assert (stray.verified, stray.run_id, stray.step, stray.exists) == (None, None, None, True)
    assert stray.size == 77 and not stray.usable
    assert latest_verified_backup(merged, NOW) == directory
    data = json.loads(json.dumps(directory.to_dict()))
    assert Backup.from_artifact(data).path == directory.path  # what a rollback step reads back


def test_latest_record_decides_a_failed_reverification_and_a_changed_file() -> None:
    good = artifact("a.dump", hours=3, verified=True)
    failed = {**good, "verified": False, "checks": {"sha256": "mismatch"}}
    merged = merge_backups(
        [
            BackupRecord("r1", "p1.verify_backup", 1, good),
            BackupRecord("r2", "p1.verify", 2, failed),
        ]
    )
    assert merged[0].verified is False and merged[0].checks == {"sha256": "mismatch"}
    assert merged[0].run_id == "r1"

    changed = merge_backups(
        [BackupRecord("r1", "s", 1, artifact("b.dump", hours=1, verified=True, size=10))],
        [on_disk("b.dump", hours=1, size=11)],
    )
    assert changed[0].changed and not changed[0].usable
    assert latest_verified_backup(changed, NOW) is None


def test_nothing_read_from_disk_means_exists_unknown_not_gone() -> None:
    merged = merge_backups([BackupRecord("r", "s", 1, artifact("c.dump", hours=1, verified=True))])
    assert merged[0].exists is None and merged[0].usable
    assert merge_backups([], None) == [] and latest_verified_backup([], NOW) is None


def test_latest_verified_backup_is_the_newest_usable_and_not_from_the_future() -> None:
    def known(name: str, hours: float, **kw: object) -> KnownBackup:
        fields: dict = {
            "path": f"{DIR}/{name}",
            "format": "custom",
            "size": 1,
            "sha256": "",
            "created_at": NOW - hours * 3600,
            "verified": True,
            "run_id": "r",
            "step": "p1.backup",
            "exists": True,
            **kw,
        }
        return KnownBackup(**fields)

    older, newer = known("older.dump", 30), known("newer.dump", 5)
    future = known("future.dump", -(CLOCK_SKEW_S + 60) / 3600)
    gone = known("gone.dump", 1, exists=False)
    unverified = known("unverified.dump", 0.5, verified=False)
    best = latest_verified_backup([older, future, gone, unverified, newer], NOW)
    assert best == newer and best.age_hours(NOW) == pytest.approx(5.0)
    assert latest_verified_backup([future], NOW) is None


def test_one_broken_part_does_not_hide_the_others() -> None:
    target = Target("production", host="local")
    journaled = merge_backups(
        [BackupRecord("r", "s", 1, artifact("a.dump", hours=1, verified=True))]
    )
    state = TargetState(
        target=target,
        transport="local",
        read_at=NOW,
        server=Part({"hostname": "prod-1"}),
        pm2=Part([]),
        database=Part.failed("PostgreSQL 127.0.0.1:5432: connection refused"),
        lock=Part.failed("cannot read /srv/backups/.vlad-tui.lock: permission denied"),
        migrations=Part.failed("not read: PostgreSQL 127.0.0.1:5432: connection refused"),
        backups=Part(journaled),
        findings=("PostgreSQL 127.0.0.1:5432: connection refused",),
    )
    assert state.problems == [
        "PostgreSQL 127.0.0.1:5432: connection refused",
        "deploy lock: cannot read /srv/backups/.vlad-tui.lock: permission denied",
    ]  # the migrations "not read" repeats the database failure: listed once
    data = state.to_dict()
    assert data["postgres"] == {"error": "PostgreSQL 127.0.0.1:5432: connection refused"}
    assert data["lock"] == {"error": state.lock.error}
    assert data["migrations"]["error"].startswith("not read: ")
    assert data["backup"]["path"] == f"{DIR}/a.dump" and data["server"]["hostname"] == "prod-1"

    unreachable = TargetState(
        target,
        "ssh",
        NOW,
        Part.failed("connection refused"),
        *([Part.failed("not read")] * 4),
        backups=Part(journaled),
    )
    assert unreachable.problems == ["production unreachable: connection refused"]
    assert unreachable.to_dict()["backup"]["exists"] is None  # known from the journal only


async def test_read_backups_lists_directory_backups_and_flags_deleted_ones(tmp_path: Path) -> None:
    """The local transport (no service): real files, a real listing, a real journal."""
    backups = tmp_path / "backups"
    (backups / "backup_produccion_20261128_100000.dir").mkdir(parents=True)
    (backups / "backup_produccion_20261128_100000.dir" / "toc.dat").write_bytes(b"x" * 10)
    (backups / "backup_produccion_20261127_100000.dump").write_bytes(b"y" * 20)
    elsewhere = tmp_path / "moved" / "backup_produccion_20261126_100000.dump"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"z")
    target = Target("production", host="local", backup_dir=str(backups))
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production")
    for path, verified in (
        (backups / "backup_produccion_20261128_100000.dir", True),
        (backups / "backup_produccion_20261125_100000.dump", True),  # deleted since
        (elsewhere, True),  # another backup_dir: looked up one by one
    ):
        run.artifact("p1.backup", "backup", path=str(path), format="custom", verified=verified)
    run.close()
    async with LocalTransport() as transport:
        part = await read_backups(target, transport, journal)
        without_disk = await read_backups(target, None, journal)
    assert part.ok, part.error
    found = {b.name: b for b in part.value or []}
    assert set(found) == {
        "backup_produccion_20261128_100000.dir",
        "backup_produccion_20261127_100000.dump",
        "backup_produccion_20261126_100000.dump",
        "backup_produccion_20261125_100000.dump",
    }
    assert found["backup_produccion_20261128_100000.dir"].exists is True
    assert found["backup_produccion_20261128_100000.dir"].step == "p1.backup"
    assert found["backup_produccion_20261128_100000.dir"].run_id == run.run_id
    assert found["backup_produccion_20261127_100000.dump"].verified is None
    assert found["backup_produccion_20261126_100000.dump"].exists is True
    assert found["backup_produccion_20261125_100000.dump"].exists is False
    assert {b.exists for b in without_disk.value or []} == {None} and without_disk.ok


# --- real sshd + PostgreSQL + pm2 -----------------------------------------------------------


@pytest.mark.integration
async def test_state_over_ssh_merges_real_backups_lock_and_migrations(
    tmp_path: Path,
    pg: PgServer,
    peludosclick: SeededDatabase,
    sample_app: SampleApp,
    sshd: SshdServer,
) -> None:
    target = sample_app.target(sshd=sshd, backup_dir=str(tmp_path / "backups"))
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production")
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        made = {}
        for fmt in ("directory", "custom"):
            backup = await create_backup(target, transport, url, fmt=fmt)
            run.artifact("p1.backup", "backup", **backup.to_artifact())
            verified = await verify_backup(target, transport, backup, CRITICAL_TABLES)
            run.artifact("p1.verify_backup", "backup", **verified.to_artifact())
            made[fmt] = backup
        run.close()
        # The custom one is deleted on the server after it was verified.
        Path(made["custom"].path).unlink()
        await lock.acquire(target, transport, run_id=run.run_id, reason="inventory test")
        try:
            state = await read_state(CONFIG, target, transport, journal)
        finally:
            await lock.release(target, transport, run_id=run.run_id)

    assert state.problems == [], state.problems
    assert state.reachable and state.server.value and state.server.value["hostname"]
    assert state.database.value is not None
    assert state.database.value.row_counts == peludosclick.counts
    assert [p.status for p in state.pm2.value or []] == ["online"] * sample_app.instances
    assert state.lock.value is not None and state.lock.value.run_id == run.run_id
    assert state.migrations.ok and state.migrations.value is not None
    backups = {b.format: b for b in state.backups.value or []}
    directory, custom = backups["directory"], backups["custom"]
    assert (directory.verified, directory.exists, directory.step) == (True, True, "p1.backup")
    assert directory.size_on_disk == made["directory"].size and directory.run_id == run.run_id
    assert (custom.verified, custom.exists, custom.usable) == (True, False, False)
    assert state.latest_verified_backup == directory

    data = json.loads(json.dumps(state.to_dict(), default=str))
    assert data["backup"]["path"] == directory.path and data["lock"]["run_id"] == run.run_id
    assert data["problems"] == [] and data["ok"] is True
    text = state.render_text()
    assert f"backup     {directory.path}" in text and "deleted since" in text
    assert text.endswith("status     OK") and pg.password not in text + json.dumps(data)


@pytest.mark.integration
async def test_broken_database_keeps_pm2_lock_and_backups(
    tmp_path: Path, pg: PgServer, sample_app: SampleApp, sshd: SshdServer
) -> None:
    closed = free_port()
    target = sample_app.target(
        sshd=sshd,
        backup_dir=str(tmp_path / "backups"),
        database=f"postgresql://vlad:pw@127.0.0.1:{closed}/peludosclick",
    )
    journal = Journal(tmp_path / "runs")
    async with open_transport(target) as transport:
        state = await read_state(CONFIG, target, transport, journal)
    assert state.database.error and str(closed) in state.database.error
    assert state.migrations.error and state.migrations.error.startswith("not read: ")
    assert state.pm2.ok
    assert [p.status for p in state.pm2.value or []] == ["online"] * sample_app.instances
    assert state.lock.ok and state.lock.value is None and state.backups.ok
    assert len(state.problems) == 1 and state.problems[0].startswith("PostgreSQL")


@pytest.mark.integration
async def test_unreachable_target_is_one_problem_and_the_journal_still_answers(
    tmp_path: Path, sshd: SshdServer
) -> None:
    target = sshd.target("production", port=free_port(), connect_timeout=3.0)
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production")
    run.artifact(
        "p1.backup", "backup", **artifact("backup_produccion_1.dump", hours=1, verified=True)
    )
    run.close()
    async with open_transport(target) as transport:
        state = await read_state(CONFIG, target, transport, journal, clock=lambda: NOW)
    assert not state.reachable and len(state.problems) == 1
    assert state.problems[0].startswith("production unreachable: ")
    assert all(p.error == "not read: production unreachable" for p in (state.pm2, state.lock))
    known = state.backups.value or []
    assert [(b.name, b.exists) for b in known] == [("backup_produccion_1.dump", None)]
    assert state.to_dict()["backup"]["path"] == f"{DIR}/backup_produccion_1.dump"


@pytest.mark.integration
async def test_overview_and_rollback_picker_render_the_inventory(
    tmp_path: Path, pg: PgServer, sample_app: SampleApp
) -> None:
    """The app on a local target: the picker shows a directory backup and a deleted one."""
    from textual.widgets import DataTable

    from vlad_tui.tui.app import make_app

    target = sample_app.target(backup_dir=str(tmp_path / "backups"))
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production")
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        kept = await create_backup(target, transport, url, fmt="directory")
        # Made outside any journaled run: only the disk listing knows it.
        stray = await create_backup(target, transport, url, fmt="directory", now=WHEN)
        run.artifact("p1.verify_backup", "backup", **{**kept.to_artifact(), "verified": True})
    gone = artifact("backup_produccion_20200101_000000.dump", hours=1, verified=True)
    run.artifact("p1.backup", "backup", **{**gone, "path": str(tmp_path / "backups" / "x.dump")})
    run.finish("ok")
    run.close()
    config = Config(tmp_path / "config.toml", Project(), {"production": target})

    app = make_app(config, target=target, journal=journal, environ={})
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(200):
            if app.state is not None:
                break
            await pilot.pause(0.1)
        assert app.state is not None and app.facts is not None
        assert app.facts["backup"]["path"] == kept.path  # the newest usable one
        await pilot.press("r")
        table = app.screen.query_one("#backups", DataTable)
        for _ in range(100):
            if table.row_count == 3:
                break
            await pilot.pause(0.1)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
    # The picker's columns: when, verified, …, file name last.
    by_mark = {row[1]: row for row in rows}
    assert set(by_mark) == {"yes", "gone", "?"}
    assert by_mark["yes"][-1] == kept.name + "/"  # directory-format backups are listed
    assert by_mark["?"][-1] == stray.name + "/"  # ... also when no journaled run knows them
    assert by_mark["gone"][-1] == "x.dump"
