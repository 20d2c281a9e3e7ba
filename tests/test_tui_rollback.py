"""The rollback screen at 80×24 (Pilot): the picker with the default preselected, the scope."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import DataTable, Static

from vlad_tui.journal import Journal
from vlad_tui.ops.inventory import KnownBackup
from vlad_tui.runbook.operations import rollback_picker as rb
from vlad_tui.runbook.operations.rollback_picker import LastDeploy
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.sample import NOW, SAMPLE_FACTS, sample_config
from vlad_tui.tui.screens.rollback import RollbackScreen

SIZE = (80, 24)
P1 = "/var/backups/backend-vlad/peludosclick-p1.dump"
P3 = "/var/backups/backend-vlad/peludosclick-p3.dump"
NEWEST = "/var/backups/backend-vlad/peludosclick-newest.dump"


def _journal(root: Path, *, migrated: bool) -> Journal:
    """A Phase 1 run, then a Phase 3 run that backed up (verified) and deployed, then a
    newer verified backup: the default must still be Phase 3's."""
    journal = Journal(root / "runs")
    for path, step, hours, deploy in (
        (P1, "p1.backup", 30.0, False),
        (P3, "p3.backup", 3.0, True),
        (NEWEST, "p1.backup", 1.0, False),
    ):
        run = journal.start_run("production", operator="ana@bastion")
        data = {
            "path": path,
            "format": "custom",
            "created_at": NOW - hours * 3600,
            "size": 96_468_992,
            "sha256": "ab" * 32,
            "verified": True,
        }
        run.artifact(step, "backup", **data)
        if deploy:
            for done in ("p3.migrate", "p3.deploy") if migrated else ("p3.deploy",):
                run.step_started(done, title=done)
                run.step_finished(done, status="ok", duration=1.0)
        run.finish("ok")
        run.close()
    return journal


def _app(tmp_path: Path, journal: Journal) -> VladApp:
    return make_app(sample_config(tmp_path), journal=journal, facts=SAMPLE_FACTS, clock=lambda: NOW)


async def _screen(app: VladApp, pilot: object) -> RollbackScreen:
    await pilot.press("r")  # type: ignore[attr-defined]
    for _ in range(100):
        await pilot.pause(0.05)  # type: ignore[attr-defined]
        screen = app.screen
        if isinstance(screen, RollbackScreen) and screen.backups:
            return screen
    raise AssertionError("the rollback screen never listed the backups")


def _text(screen: RollbackScreen) -> str:
    return str(screen.query_one("#scope", Static).render())


async def test_picker_preselects_phase3s_backup_and_says_what_both_will_do(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path, _journal(tmp_path, migrated=True))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _screen(app, pilot)
        table = screen.query_one("#backups", DataTable)
        assert table.row_count == 3
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        assert key.value == P3
        assert screen.selection.path == P3
        assert screen.selection.scope == "both"
        text = _text(screen)
        assert "Scope (s): both" in text
        assert "Does NOT bring back rows written since the backup" in text
        assert "Backup (b): peludosclick-p3.dump" in text
        keys = {k for k, b in screen.active_bindings.items() if b.binding.show}
        assert {"a", "b", "s"} <= keys

        await pilot.press("s")  # both → code
        await pilot.pause()
        assert screen.selection.scope == "code"
        assert "Does NOT undo migrations or data" in _text(screen)
        await pilot.press("s")  # code → data
        await pilot.pause()
        assert "Does NOT change the code" in _text(screen)


async def test_code_only_deploy_defaults_to_the_code_scope(tmp_path: Path) -> None:
    app = _app(tmp_path, _journal(tmp_path, migrated=False))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _screen(app, pilot)
        assert screen.selection.scope == "code"
        assert "Backup (b): not used (code only)" in _text(screen)
        await asyncio.sleep(0)


# --- the picker's choices (pure) -------------------------------------------------------------


def _known(path: str, hours: float, **kw: object) -> KnownBackup:
    fields: dict[str, object] = {
        "path": path,
        "format": "custom",
        "size": 100,
        "sha256": "ab" * 32,
        "created_at": NOW - hours * 3600,
        "verified": True,
        "run_id": "r",
        "step": "p1.backup",
        "exists": True,
        "size_on_disk": 100,
        **kw,
    }
    return KnownBackup(**fields)  # type: ignore[arg-type]


def test_default_scope_follows_what_the_last_deploy_changed() -> None:
    migrated = LastDeploy("r", NOW, migrated=True, deployed=True, backup_path=None)
    code = LastDeploy("r", NOW, migrated=False, deployed=True, backup_path=None)
    assert rb.default_scope(migrated) == "both"
    assert rb.default_scope(code) == "code"
    assert rb.default_scope(None) == "data"
    # The migrate ran, the deploy did not: the code is still the one before, so data only
    # (rolling the code back too would go one release too far).
    half = LastDeploy("r", NOW, migrated=True, deployed=False, backup_path=None, failed=True)
    assert rb.default_scope(half) == "data"


def test_a_failed_phase3_offers_the_scope_the_screen_preselects() -> None:
    assert rb.failed_phase3_offer({"p3.migrate": "failed"}) == "data"
    assert rb.failed_phase3_offer({"p3.migrate": "ok", "p3.deploy": "failed"}) == "data"
    assert rb.failed_phase3_offer({"p3.migrate": "ok", "p3.deploy": "ok"}) == "both"
    assert rb.failed_phase3_offer({"p3.migrate": "skipped", "p3.deploy": "ok"}) == "code"
    assert rb.failed_phase3_offer({"p3.migrate": "locked", "p3.backup": "failed"}) is None


def test_last_deploy_counts_a_migrate_that_failed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    run.artifact("p3.verify_backup", "backup", path=P3, verified=True, created_at=NOW)
    run.step_started("p3.migrate", title="migrate")
    run.step_finished("p3.migrate", status="failed", duration=1.0, error="exit status 1")
    run.close()
    deploy = rb.last_deploy(journal, "production")
    assert deploy is not None and deploy.migrated and not deploy.deployed and deploy.failed
    assert deploy.backup_path == P3 and rb.default_scope(deploy) == "data"


def test_default_backup_is_phase3s_unless_it_is_no_longer_usable() -> None:
    p3, newest = _known(P3, 3.0), _known(NEWEST, 1.0)
    deploy = LastDeploy("r", NOW, migrated=True, deployed=True, backup_path=P3)
    assert rb.default_backup([newest, p3], deploy, NOW) is p3
    changed = _known(P3, 3.0, size_on_disk=50)
    assert rb.default_backup([newest, changed], deploy, NOW) is newest
    assert rb.default_backup([newest, p3], None, NOW) is newest
    assert "changed since it was verified" in (rb.refusal(changed) or "")
    assert "no longer exists" in (rb.refusal(_known(P1, 9.0, exists=False)) or "")
    assert rb.refusal(p3) is None


def test_last_deploy_and_migrations_come_from_the_journal(tmp_path: Path) -> None:
    journal = _journal(tmp_path, migrated=True)
    deploy = rb.last_deploy(journal, "production")
    assert deploy is not None and deploy.migrated and deploy.backup_path == P3
    # A later deploy: its verified backup is the default, its unverified one is not.
    run = journal.start_run("production", operator="ana@bastion")
    run.artifact("p3.verify_backup", "backup", path=P1, verified=True, created_at=NOW)
    run.artifact("p3.status", "migrations", migrations=[{"name": "a", "state": "applied"}] * 4)
    run.artifact("p3.backup", "backup", path=NEWEST, verified=False, created_at=NOW)
    run.step_started("p3.migrate", title="migrate")
    run.step_finished("p3.migrate", status="ok", duration=1.0)
    run.close()
    deploy = rb.last_deploy(journal, "production")
    assert deploy is not None and deploy.backup_path == P1
    assert rb.migrations_by_backup(journal, "production") == {NEWEST: 4}
    # Phase 1's backup reused by Phase 3: the count is the one Phase 3 read under the lock,
    # never staging's (Phase 2 migrated staging to 6 in between).
    run = journal.start_run("production", operator="ana@bastion")
    run.artifact("p1.backup", "backup", path=P1, verified=False, created_at=NOW)
    run.artifact("p2.migrate", "migrations", migrations=[{"name": "a", "state": "applied"}] * 6)
    run.artifact("p3.backup", "backup", path=P1, verified=True, created_at=NOW, reused=True)
    run.artifact("p3.backup", "backup_migrations", migrations=["a"] * 4)
    run.close()
    assert rb.migrations_by_backup(journal, "production")[P1] == 4
    assert rb.backup_record(journal, "production", P3)["verified"] is True
    assert rb.restore_throughput(journal, "production") is None
    run = journal.start_run("production", operator="ana@bastion")
    run.artifact("p1.staging_restore", "staging_restore", size=4_000_000, seconds=2.0)
    run.close()
    assert rb.restore_throughput(journal, "production") == 2_000_000


async def test_an_unverified_backup_asks_for_its_name_before_anything_runs(
    tmp_path: Path,
) -> None:
    from vlad_tui.tui.screens.prompt import ReasonScreen

    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    run.artifact("p1.backup", "backup", path=P1, created_at=NOW - 3600, size=10, verified=False)
    run.close()
    app = _app(tmp_path, journal)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _screen(app, pilot)
        # No verified backup: the selection is the highlighted row, said to be unverified.
        await pilot.press("b", "down", "up")
        await pilot.pause()
        assert screen.selection.path == P1
        assert "NOT verified" in _text(screen)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        assert app.engine is None  # nothing ran, no run was started


async def test_steps_outside_the_scope_are_skipped_journaled_and_survive_a_resume(
    tmp_path: Path,
) -> None:
    from tests.rig.operator import Operator
    from vlad_tui.runbook import model
    from vlad_tui.runbook.engine import Engine
    from vlad_tui.runbook.progress import phase_progress
    from vlad_tui.transport import LocalTransport

    config = sample_config(tmp_path)
    target = config.targets["production"]
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    operator = Operator()
    async with LocalTransport() as transport:
        engine = Engine(
            config, target, transport, run, confirm=operator.confirm, sink=operator.sink,
            journal=journal,
        )  # fmt: skip
        engine.skip_step("rb.code", rb.scope_skip_reason("data"))
        assert engine.statuses["rb.code"] == "skipped"
        assert engine.error("rb.code") == "not part of the chosen scope (data)"
        run.close()
        run = journal.open_run(run.run_id, operator="ana@bastion")
        resumed = Engine.resume(
            config, target, transport, run, journal.load(run.run_id),
            confirm=operator.confirm, sink=operator.sink, journal=journal,
        )  # fmt: skip
        assert resumed.statuses["rb.code"] == "skipped"
        # Every other step ok: the rollback passed without the skipped one.
        ok = {s.id: "ok" for s in model.phase(model.ROLLBACK).steps} | {"rb.code": "skipped"}
        assert phase_progress(0, ok, resumed.operations).passed
        resumed.skip_step("rb.code", None)  # back in scope
        assert resumed.statuses["rb.code"] in ("pending", "locked")
        run.close()


def test_the_failure_line_of_phase3_offers_the_rollback_once_production_changed() -> None:
    from vlad_tui.runbook.model import step
    from vlad_tui.tui.widgets.note import failure_note

    migrate = step("p3.migrate")
    line = failure_note(migrate, "exit status 1", {"p3.migrate": "failed"}).plain
    assert "This run changed production" in line and "press r" in line
    assert "scope «data» preselected" in line
    backup = step("p3.backup")
    assert "press r" not in failure_note(backup, "disk full", {"p3.backup": "failed"}).plain
    assert "press r" not in failure_note(step("p2.build"), "x", {"p3.migrate": "failed"}).plain
