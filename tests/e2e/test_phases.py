"""The deploy walked by keys, through Pilot, on the demo sandbox over a real loopback sshd.

One app run walks the plan in legs, each starting where the previous one left the sandbox, as an
operator would: :func:`leg_phase1` (backup, lint, staging clone), :func:`leg_phase2` (staging
migrate/build/start, smoke and manual checks, stop). Each leg drives the UI only by keys
(``1``/``2``, ``a``, ``enter``, ``space``, the acknowledgement key, typing the target name in the
confirmation modal) and then asserts on the journal and on the databases with asyncpg. Later
phases and the rollback add their own ``leg_*`` and a call in :func:`test_walk_the_deploy`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.e2e.conftest import DemoSandbox
from vlad_tui.config import load_config
from vlad_tui.demo.sandbox import APP_NAME
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, COUNTS, PENDING_MIGRATIONS
from vlad_tui.journal import Journal
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.transport import SshTransport
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.screens.confirm import ConfirmScreen
from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.screens.prompt import ReasonScreen
from vlad_tui.tui.widgets.step_list import StepList

pytestmark = pytest.mark.integration

SIZE = (100, 30)
TARGET = "production"
#: Seconds a whole phase may take on a slow CI machine (it takes a few here).
PHASE_TIMEOUT = 120.0
FEATURES = tuple(i.id for i in model.CHECKLIST if i.phase == 2 and i.manual)


@dataclass
class Walk:
    """One app run on the sandbox, and the operator's hands."""

    app: VladApp
    pilot: Pilot
    demo: DemoSandbox

    # ------------------------------------------------------------- waiting

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Let the app run until ``condition()`` holds (no fixed sleeps)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; {self.failures()}")
            await self.pilot.pause(0.05)

    @property
    def engine(self) -> Engine:
        """The run's engine (created by the first step the walk runs)."""
        assert self.app.engine is not None
        return self.app.engine

    def failures(self) -> dict[str, str | None]:
        engine = self.app.engine
        if engine is None:
            return {}
        return {s: engine.error(s) for s, st in engine.statuses.items() if st == "failed"}

    def status(self, step_id: str) -> str:
        return self.engine.statuses[step_id]

    # ------------------------------------------------------------- keys

    @property
    def screen(self) -> PhaseScreen:
        assert isinstance(self.app.screen, PhaseScreen), self.app.screen
        return self.app.screen

    async def open_phase(self, number: int) -> PhaseScreen:
        await self.pilot.press(str(number))
        await self.until(
            lambda: isinstance(self.app.screen, PhaseScreen) and self.app.screen.number == number,
            f"phase {number} screen",
        )
        return self.screen

    async def select_step(self, step_id: str) -> None:
        """Move the step list's cursor to ``step_id`` with the arrow keys."""
        steps = self.screen.query_one(StepList)
        steps.focus()
        await self.pilot.pause()
        index = [s.id for s in steps.steps].index(step_id)
        delta = index - steps.cursor_row
        await self.pilot.press(*(["down"] * delta if delta > 0 else ["up"] * -delta))
        assert steps.selected_step_id == step_id

    async def type_confirmation(self, text: str) -> ConfirmScreen:
        """Wait for the typed-confirmation modal, type ``text`` into it and press enter, as a
        newcomer does (the field has focus; no Tab). A wrong name keeps the modal open: it
        says why, and the operator then cancels with escape."""
        await self.until(lambda: isinstance(self.app.screen, ConfirmScreen), "confirmation")
        modal = self.app.screen
        assert isinstance(modal, ConfirmScreen)
        await self.pilot.press(*text, "enter")
        if text != modal.request.expected:
            await self.pilot.pause()
            assert self.app.screen is modal  # still open, saying why
            assert "is not" in str(modal.query_one("#confirm-why").render())
            await self.pilot.press("escape")
        await self.until(lambda: self.app.screen is not modal, "the modal to close")
        return modal

    async def run_rest_of_phase(self, *, confirm_as: str = TARGET) -> list[ConfirmScreen]:
        """``a``, answering every confirmation with ``confirm_as``; the modals answered."""
        answered: list[ConfirmScreen] = []
        await self.pilot.press("a")
        await self.until(lambda: self.app.busy, "the phase to start")
        while self.app.busy:
            if isinstance(self.app.screen, ConfirmScreen):
                answered.append(await self.type_confirmation(confirm_as))
            await self.pilot.pause(0.05)
        return answered

    # ------------------------------------------------------------- journal

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.app.journal.load(self.engine.run.run_id).events_of(kind)

    def artifacts(self, kind: str, step: str | None = None) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.events("artifact")
            if e["artifact"] == kind and step in (None, e["step"])
        ]

    def finished(self, step_id: str) -> list[str]:
        return [e["status"] for e in self.events("step_finished") if e["step"] == step_id]


# ----------------------------------------------------------------- legs


async def leg_phase1(walk: Walk) -> None:
    """Phase 1: everything by ``a``, a mistyped then a correct confirmation, the off-box copy
    by ``enter``, the lint finding acknowledged with ``k``."""
    screen = await walk.open_phase(1)
    assert screen.query_one(StepList).selected_step_id == "p1.connectivity"

    # A mistyped name refuses the restore: nothing restored, the phase stops there.
    [refused] = await walk.run_rest_of_phase(confirm_as="prod")
    assert refused.request.step_id == "p1.staging_restore"
    assert walk.status("p1.staging_restore") == "pending"
    assert walk.finished("p1.staging_restore") == []
    tables = "select count(*) from pg_tables where schemaname = 'public'"
    assert (await walk.demo.fetch(tables, staging=True))[0][0] == 0  # created, still empty

    [restore] = await walk.run_rest_of_phase()
    assert restore.request.step_id == "p1.staging_restore"
    assert restore.request.expected == TARGET
    assert "pg_restore" in restore.request.commands[0]
    assert restore.request.database.endswith("/peludosclick_staging")
    for step in model.phase(1).steps:
        expected = "pending" if step.optional else "ok"
        assert walk.status(step.id) == expected, (step.id, walk.failures())
        if not step.optional:
            assert screen.query_one(StepList).status_of(step.id) == "ok"

    # The optional off-box copy: selected with the arrows, run with enter, over SFTP.
    await walk.select_step("p1.offbox")
    await walk.pilot.press("enter")
    await walk.until(lambda: walk.status("p1.offbox") == "ok", "the off-box copy", 60)

    # Every confirmation is journaled with what was typed and by whom.
    operator = walk.engine.operator
    asked = [c for c in walk.events("confirmation") if c.get("needed") is not False]
    assert [(c["step"], c["typed"], c["accepted"], c["operator"]) for c in asked] == [
        ("p1.staging_restore", "", False, operator),  # cancelled after a wrong name
        ("p1.staging_restore", TARGET, True, operator),
    ]
    # The staging database did not exist: nothing was dropped, and the journal says so.
    [not_needed] = [c for c in walk.events("confirmation") if c.get("needed") is False]
    assert not_needed["step"] == "p1.staging_db" and "does not exist" in not_needed["reason"]

    # The verified backup: the production gate reads this artifact.
    [backup] = walk.artifacts("backup", "p1.verify_backup")
    assert backup["verified"] is True
    assert re.fullmatch(r"[0-9a-f]{64}", backup["sha256"])
    assert backup["checks"] == {s: "ok" for s in ("exit_status", "size", "sha256", "list")}
    dump = Path(backup["path"])
    assert dump.parent == walk.demo.root / "backups"
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == backup["sha256"]
    [copy] = walk.artifacts("backup_copy", "p1.offbox")
    assert Path(copy["path"]).read_bytes() == dump.read_bytes()
    # The off-box copy stays inside the sandbox ([project] local_backup_dir): --teardown
    # removes it with everything else.
    assert Path(copy["path"]).is_relative_to(walk.demo.root / "local-backups")
    assert copy["sha256"] == backup["sha256"]

    # Lint: the two pending migrations, one breaking finding the operator acknowledges.
    [lint] = walk.artifacts("lint", "p1.lint")
    assert lint["migrations"] == list(PENDING_MIGRATIONS)
    findings = walk.artifacts("lint_finding", "p1.lint")
    breaking = [f for f in findings if f["breaking"]]
    assert lint["findings"] == len(findings) and lint["breaking"] == len(breaking) >= 1
    assert {f["migration"] for f in breaking} == {PENDING_MIGRATIONS[1]}
    await walk.select_step("p1.lint")
    await walk.pilot.press("k")
    await walk.until(lambda: isinstance(walk.app.screen, ReasonScreen), "the acknowledgement")
    await walk.pilot.press(*"backfill revisado", "enter")
    await walk.until(lambda: not walk.engine.pending_acknowledgements("lint"), "ack")
    [ack] = walk.events("acknowledgement")
    assert ack["subject"] == "lint" and ack["operator"] == operator
    assert ack["note"] == "backfill revisado"
    assert [i["key"] for i in ack["items"]] == [i["key"] for i in lint["acknowledge"]["items"]]

    # Snapshots: production before the backup; the staging clone identical to it.
    [before] = walk.artifacts("snapshot", "p1.snapshot")
    assert before["label"] == "production" and before["stage"] == "before"
    assert {t: v["count"] for t, v in before["tables"].items()} == COUNTS
    [clone] = walk.artifacts("snapshot", "p1.staging_integrity")
    assert clone["tables"] == before["tables"]
    assert await walk.demo.counts(staging=True) == await walk.demo.counts() == COUNTS
    assert walk.engine.checklist["during.backup_verified"]


async def leg_phase2(walk: Walk) -> None:
    """Phase 2: ``a``; while the staging instance runs, the five critical features are ticked
    with ``space``/``down``; the phase then checks integrity and stops the instance."""
    screen = await walk.open_phase(2)
    await walk.pilot.press("a")
    await walk.until(lambda: walk.status("p2.features") == "running", "manual checks", 90)
    staging_name = walk.engine.target.staging_name
    assert staging_name in walk.demo.pm2_names()  # the staging instance is up meanwhile

    # The log followed the run to the waiting step; space ticks its next open item, each
    # after the optional note (typed for the first, left empty for the rest).
    await walk.until(lambda: screen.steps.selected_step_id == "p2.features", "the cursor")
    for n, item_id in enumerate(FEATURES):
        await walk.pilot.press("space")
        await walk.until(lambda: isinstance(walk.app.screen, ReasonScreen), f"note {item_id}")
        await walk.pilot.press(*("probado en staging" if n == 0 else ""), "enter")
        await walk.until(lambda i=item_id: walk.engine.checklist[i], item_id)
    await walk.until(lambda: not walk.app.busy, "the rest of phase 2", PHASE_TIMEOUT)
    for step in model.phase(2).steps:
        assert walk.status(step.id) == "ok", (step.id, walk.failures())
        assert screen.query_one(StepList).status_of(step.id) == "ok"
    assert walk.events("confirmation")[-1]["step"] == "p1.staging_restore"  # none in phase 2

    operator = walk.engine.operator
    [manual] = walk.artifacts("manual_checks", "p2.features")
    assert [(i["id"], i["by"]) for i in manual["items"]] == [(i, operator) for i in FEATURES]
    smoke = walk.artifacts("smoke_check", "p2.smoke")
    assert smoke and all(s["ok"] for s in smoke)
    [after] = walk.artifacts("integrity_compare", "p2.integrity")
    assert after["decreased"] == []

    # The two pending migrations applied on staging only.
    assert await walk.demo.migrations() == list(APPLIED_MIGRATIONS)
    assert await walk.demo.migrations(staging=True) == [*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS]
    assert len(await walk.demo.fetch("select 1 from _prisma_migrations")) == 4
    assert len(await walk.demo.fetch("select 1 from _prisma_migrations", staging=True)) == 6
    assert await walk.demo.counts(staging=True) == await walk.demo.counts() == COUNTS
    # Staging stopped at the end; production's app untouched.
    names = walk.demo.pm2_names()
    assert staging_name not in names and APP_NAME in names
    assert walk.engine.checklist["before.staging"]
    # What Phase 3's leg starts from: the production gate is open.
    assert not walk.engine.gate("p3.lock").locked


# Phase 3, Phase 4 and the rollback add `async def leg_phase3(walk)` etc. here.


async def test_walk_the_deploy(
    demo_sandbox: DemoSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))  # the off-box copy lands here
    sandbox = demo_sandbox.sandbox
    config = load_config(sandbox.config_path)
    target = config.target(TARGET)
    state = sandbox.state()
    assert state is not None and target.port == state.ssh_port  # through the loopback sshd
    app = make_app(config, target=target, journal=Journal(sandbox.journal_dir), environ={})
    async with app.run_test(size=SIZE) as pilot:
        walk = Walk(app, pilot, demo_sandbox)
        await leg_phase1(walk)
        await leg_phase2(walk)
        # await leg_phase3(walk); await leg_phase4(walk); await leg_rollback(walk)
        run_dir = Path(walk.engine.run.dir)
        assert isinstance(walk.engine.transport, SshTransport)
        await pilot.press("q")
    # The cluster's password reached no journal file.
    journaled = "".join(p.read_text() for p in run_dir.rglob("*") if p.is_file())
    assert demo_sandbox.password and demo_sandbox.password not in journaled
