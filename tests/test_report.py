"""Reports of journaled runs: Markdown and JSON, complete and scrubbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlad_tui import redact
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal, RunRecord
from vlad_tui.report import render_report

CANARY = "Canary-Pw-4412"


@pytest.fixture
def record(tmp_path: Path) -> RunRecord:
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion", meta={"git_ref": "v1.4.0"})
    run.step_started("backup", title="Full backup", command="pg_dump -Fc -f /b/x.dump")
    run.step_output("backup", OutputLine("pg_dump: dumping contents of table users"))
    run.artifact(
        "backup", "backup", path="/var/backups/x.dump", size=52_428_800, sha256="f00d" * 16
    )
    run.step_finished("backup", status="ok", exit_status=0, duration=12.25)
    run.confirmation(
        "migrate", prompt="Type MIGRATE to apply 2 migrations", typed="MIGRATE", accepted=True
    )
    run.confirmation("swap", prompt="Type SWAP | to swap", typed="nope", accepted=False)
    run.step_started("migrate", title="Apply migrations", command="npx prisma migrate deploy")
    for i in range(60):
        run.step_output("migrate", OutputLine(f"migrate line {i}"))
    # A secret that shows up later is learnt now: the report scrubs with what redact knows then.
    run.step_output("migrate", OutputLine(f"error: password {CANARY} rejected ```", "stderr"))
    run.step_finished(
        "migrate", status="failed", exit_status=1, duration=75.0, error=f"auth failed {CANARY}"
    )
    run.step_started("build", title="Build")  # never finishes: interrupted
    run.finish("failed")
    run.close()
    redact.add_url(f"postgresql://vlad:{CANARY}@postgres/peludosclick")
    return journal.load(run.run_id)


def test_markdown_report(record: RunRecord) -> None:
    md = render_report(record, "md")
    assert md.startswith(f"# Run {record.run_id}\n")
    assert "| Target | production |" in md
    assert "| Operator | ana@bastion |" in md
    assert "| Status | **failed** |" in md
    assert "| git_ref | v1.4.0 |" in md
    assert "| `backup` | Full backup | ok | 12.2s | 0 |  |" in md
    assert "| `migrate` | Apply migrations | failed | 1m 15s | 1 | auth failed *** |" in md
    assert "| `build` | Build | interrupted |" in md
    # Confirmations: who typed what, and the verdict; pipes escaped inside cells.
    assert "| ana@bastion | Type MIGRATE to apply 2 migrations | `MIGRATE` | yes |" in md
    assert "Type SWAP \\| to swap | `nope` | no |" in md
    assert "- **backup** (step `backup`)" in md
    assert "  - sha256: `" + "f00d" * 16 + "`" in md
    assert "  - size: `50.0 MiB`" in md  # a size with its unit, never raw bytes
    # Tail of the failed step's log, fenced so backticks inside cannot break out.
    assert "### `migrate` Apply migrations (failed)" in md
    assert "migrate line 59" in md
    assert "migrate line 0\n" not in md  # only the tail
    assert "````text" in md
    assert "stderr error: password *** rejected" in md
    assert CANARY not in md


def test_json_report(record: RunRecord) -> None:
    text = render_report(record, "json")
    assert CANARY not in text
    doc = json.loads(text)
    assert doc["run_id"] == record.run_id
    assert (doc["target"], doc["operator"], doc["status"]) == (
        "production",
        "ana@bastion",
        "failed",
    )
    assert doc["unfinished"] is False
    assert doc["started_at"].endswith("+00:00")
    steps = {s["id"]: s for s in doc["steps"]}
    assert list(steps) == ["backup", "migrate", "build"]
    assert steps["backup"]["status"] == "ok"
    assert steps["backup"]["duration"] == 12.25
    assert steps["backup"]["log_tail"] == []
    assert steps["migrate"]["exit_status"] == 1
    assert steps["migrate"]["error"] == "auth failed ***"
    assert len(steps["migrate"]["log_tail"]) == 40
    assert steps["migrate"]["log_tail"][-1].endswith("stderr error: password *** rejected ```")
    assert steps["build"]["status"] == "interrupted"
    assert [
        (c["step"], c["typed"], c["accepted"], c["operator"]) for c in doc["confirmations"]
    ] == [
        ("migrate", "MIGRATE", True, "ana@bastion"),
        ("swap", "nope", False, "ana@bastion"),
    ]
    assert doc["artifacts"][0]["kind"] == "backup"
    assert doc["artifacts"][0]["data"]["path"] == "/var/backups/x.dump"


def test_unfinished_run_report(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("staging", operator="bo@laptop")
    run.close()
    record = journal.load(run.run_id)
    md = render_report(record)
    assert "**unfinished (no run_finished event)**" in md
    assert "| Finished | – |" in md
    assert "No steps ran." in md
    doc = json.loads(render_report(record, "json"))
    assert doc["unfinished"] is True and doc["finished_at"] is None and doc["steps"] == []


def test_unknown_format(record: RunRecord) -> None:
    with pytest.raises(ValueError, match="md, json"):
        render_report(record, "html")


def test_markdown_report_has_no_raw_values(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    run.step_started("p3.lock", title="Tomar el lock")
    run.artifact("p3.lock", "lock", holder="ana", acquired_at=1796158236.62, reason=None)
    run.artifact("p1.facts", "pm2", processes=[{"name": "backend-vlad", "pid": 7}])
    run.step_finished("p3.lock", status="ok", duration=0.2)
    run.close()
    md = render_report(journal.load(run.run_id))
    assert "1796158236" not in md
    assert ": `None`" not in md and "{'" not in md
    assert "  - reason: `–`" in md
    assert "  - processes: `name=backend-vlad, pid=7`" in md
    # Times are local with their age (the JSON keeps ISO 8601 UTC).
    started = md.split("| Started |")[1].splitlines()[0]
    assert started.endswith("(just now) |") and "+00:00" not in started


def test_a_confirmation_not_needed_is_in_the_report(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    run.record(
        "confirmation",
        step="p1.staging_db",
        needed=False,
        reason="peludosclick_staging does not exist yet, so nothing is dropped",
        operator="ana@bastion",
    )
    run.close()
    record = journal.load(run.run_id)
    md = render_report(record)
    assert (
        "| `p1.staging_db` | ana@bastion | not needed: peludosclick_staging does not exist "
        "yet, so nothing is dropped | – | not asked |"
    ) in md
    doc = json.loads(render_report(record, "json"))
    assert doc["confirmations"][0]["needed"] is False
