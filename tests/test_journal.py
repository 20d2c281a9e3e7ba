"""The run journal: durable JSONL events, per-step logs, resume, crash tolerance."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest

from vlad_tui import journal as journal_module
from vlad_tui import redact
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal, RunFinished, RunNotFound
from vlad_tui.step_status import StepStatus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "state" / "runs")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_events_round_trip(journal: Journal) -> None:
    run = journal.start_run("production", operator="ana@bastion", meta={"version": "v1.4.0"})
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run.run_id)
    run.step_started("backup", title="Full backup", command="pg_dump -Fc peludosclick")
    run.step_output("backup", OutputLine("dumping users", "stdout", ts=1_700_000_000.25))
    run.step_output("backup", OutputLine("warning: slow\nsecond", "stderr", ts=1_700_000_001.0))
    run.artifact("backup", "backup", path="/var/backups/x.dump", size=1234, sha256="ab" * 32)
    run.step_finished("backup", status="ok", exit_status=0, duration=1.5)
    run.confirmation("migrate", prompt="Type MIGRATE to continue", typed="MIGRATE", accepted=True)
    run.finish("ok")
    run.close()

    record = journal.load(run.run_id)
    kinds = [e["kind"] for e in record.events]
    assert kinds == [
        "run_started",
        "step_started",
        "artifact",
        "step_finished",
        "confirmation",
        "run_finished",
    ]
    started = record.events[0]
    assert started["target"] == "production"
    assert started["meta"] == {"version": "v1.4.0"}
    assert started["pid"] == os.getpid()
    assert record.events_of("artifact")[0]["data"]["size"] == 1234
    confirmation = record.events_of("confirmation")[0]
    assert (confirmation["typed"], confirmation["accepted"]) == ("MIGRATE", True)
    assert confirmation["operator"] == "ana@bastion"
    assert record.events_of("step_finished")[0]["duration"] == 1.5

    summary = record.summary
    assert (summary.run_id, summary.target, summary.operator) == (
        run.run_id,
        "production",
        "ana@bastion",
    )
    assert summary.status == "ok"
    assert not summary.unfinished
    assert summary.finished_at is not None and summary.finished_at >= summary.started_at
    assert summary.steps == {"backup": "ok"}
    assert record.step_log("backup") == [
        "2023-11-14T22:13:20.250+00:00 stdout dumping users",
        "2023-11-14T22:13:21.000+00:00 stderr warning: slow\\nsecond",
    ]
    assert record.step_log("never-ran") == []


def test_permissions_are_private_even_with_a_lax_umask(journal: Journal) -> None:
    old = os.umask(0)
    try:
        run = journal.start_run("production", operator="a@b")
        run.step_started("build", title="Build")
        run.step_output("build", OutputLine("ok"))
        run.step_finished("build", status="ok")
        run.close()
    finally:
        os.umask(old)
    assert mode_of(journal.root) == 0o700
    assert mode_of(run.dir) == 0o700
    assert mode_of(run.dir / "steps") == 0o700
    assert mode_of(run.dir / "events.jsonl") == 0o600
    assert mode_of(run.dir / "steps" / "build.log") == 0o600


def _counting_fsync(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[str]]:
    """Record the inode of every file the journal fsyncs, and the thread of each (directories,
    fsync'd once when a run is created, are left out)."""
    synced: list[int] = []
    threads: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            synced.append(st.st_ino)
            threads.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", counting_fsync)
    return synced, threads


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the background fsync never came"
        time.sleep(0.01)


def test_events_are_complete_at_once_and_fsynced_off_the_caller_in_batches(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced, threads = _counting_fsync(monkeypatch)
    run = journal.start_run("production", operator="a@b")
    events_inode = (run.dir / "events.jsonl").stat().st_ino
    for i in range(200):
        run.record("sample", step="monitor", n=i)
        # Readable by another handle right away, as whole lines (flushed to the kernel).
        lines = (run.dir / "events.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["n"] == i
    _wait_for(lambda: events_inode in synced)
    # Never on the caller's thread, and far fewer fsyncs than events.
    assert set(threads) == {"vlad-tui-journal-sync"}
    assert synced.count(events_inode) < 50
    run.step_started("migrate", title="Migrate")
    run.step_output("migrate", OutputLine("applying 20240101_init"))
    log_inode = (run.dir / "steps" / "migrate.log").stat().st_ino
    assert (run.dir / "steps" / "migrate.log").read_text().endswith("applying 20240101_init\n")
    run.step_finished("migrate", status="ok")
    _wait_for(lambda: log_inode in synced)  # the closed log is fsync'd too
    run.close()


async def test_durable_waits_for_the_disk_without_blocking_the_loop(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced, threads = _counting_fsync(monkeypatch)
    run = journal.start_run("production", operator="a@b")
    events_inode = (run.dir / "events.jsonl").stat().st_ino
    synced.clear()
    run.record("step_started", step="migrate")
    await run.durable()
    assert events_inode in synced
    assert threading.main_thread().name not in threads
    run.close()


def test_list_runs_newest_first_and_unfinished(journal: Journal) -> None:
    assert journal.list_runs() == []
    first = journal.start_run("production", operator="a@b")
    first.finish("ok")
    time.sleep(0.01)
    second = journal.start_run("staging", operator="a@b")
    time.sleep(0.01)
    third = journal.start_run("production", operator="a@b")
    third.finish("failed")
    for run in (first, second, third):
        run.close()
    (journal.root / "not-a-run").mkdir()
    (journal.root / "stray.txt").write_text("x")

    runs = journal.list_runs()
    assert [r.run_id for r in runs] == [third.run_id, second.run_id, first.run_id]
    assert [r.status for r in runs] == ["failed", "running", "ok"]
    assert [r.run_id for r in journal.unfinished()] == [second.run_id]
    assert journal.unfinished("production") == []
    assert [r.run_id for r in journal.unfinished("staging")] == [second.run_id]


def test_open_run_resumes_an_unfinished_run(journal: Journal) -> None:
    run = journal.start_run("production", operator="ana@bastion")
    run.step_started("backup", title="Backup")
    run.step_finished("backup", status="ok", exit_status=0)
    run.step_started("migrate", title="Migrate")
    run.close()  # the process "dies" here

    record = journal.load(run.run_id)
    assert record.summary.unfinished
    assert record.summary.steps == {"backup": "ok", "migrate": "interrupted"}

    resumed = journal.open_run(run.run_id, operator="bo@laptop")
    assert (resumed.run_id, resumed.target, resumed.operator) == (
        run.run_id,
        "production",
        "bo@laptop",
    )
    resumed.step_started("migrate", title="Migrate")
    resumed.step_finished("migrate", status="ok", exit_status=0)
    resumed.confirmation("swap", prompt="Type SWAP", typed="SWAP", accepted=True)
    resumed.finish("ok")
    resumed.close()

    record = journal.load(run.run_id)
    resumed_event = record.events_of("run_resumed")[0]
    assert resumed_event["operator"] == "bo@laptop"
    assert resumed_event["steps"] == {"backup": "ok", "migrate": "interrupted"}
    assert record.summary.resumed == 1
    assert record.summary.operator == "ana@bastion"
    assert record.summary.steps == {"backup": "ok", "migrate": "ok"}
    assert record.events_of("confirmation")[0]["operator"] == "bo@laptop"
    with pytest.raises(RunFinished, match="already finished"):
        journal.open_run(run.run_id)


def test_unknown_run_is_a_vlad_key_error(journal: Journal) -> None:
    for bad in ("20990101-000000-beef", "../etc", ""):
        with pytest.raises(RunNotFound) as info:
            journal.load(bad)
        assert isinstance(info.value, VladError) and isinstance(info.value, KeyError)
        assert str(info.value).startswith("no run ")


def test_step_statuses_and_other_events(journal: Journal) -> None:
    run = journal.start_run("production", operator="a@b")
    run.step_status("lock", "locked", holder="bo@laptop")
    run.step_status("migrate", "needs_confirmation")
    run.step_started("skip-me", title="Optional")
    run.step_finished("skip-me", status="skipped")
    with pytest.raises(ValueError, match="step status"):
        run.step_finished("x", status="great")
    with pytest.raises(ValueError, match="run status"):
        run.finish("done")
    with pytest.raises(ValueError, match="reserved"):
        run.record("custom", ts=1)
    run.close()
    summary = journal.load(run.run_id).summary
    assert summary.steps == {
        "lock": "locked",
        "migrate": "needs_confirmation",
        "skip-me": "skipped",
    }


@pytest.mark.parametrize("step_id", ["../evil", "a/b", "", ".hidden", "x" * 200, "sp ace"])
def test_step_ids_must_be_safe_file_names(journal: Journal, step_id: str) -> None:
    run = journal.start_run("production", operator="a@b")
    with pytest.raises(ValueError, match="step id"):
        run.step_started(step_id, title="bad")
    with pytest.raises(ValueError, match="step id"):
        run.step_output(step_id, OutputLine("x"))
    run.close()
    assert sorted(p.name for p in run.dir.iterdir()) == ["events.jsonl"]


def test_truncated_last_line_is_tolerated(journal: Journal) -> None:
    run = journal.start_run("production", operator="a@b")
    run.step_started("migrate", title="Migrate")
    run.step_output("migrate", OutputLine("first"))
    run.close()
    with open(run.dir / "events.jsonl", "ab") as handle:
        handle.write(b'{"ts": 1, "kind": "step_fin')  # crash mid-write
    with open(run.dir / "steps" / "migrate.log", "ab") as handle:
        handle.write(b"2024-01-01T00:00:00.000+00:00 stdout torn li")

    record = journal.load(run.run_id)
    assert [e["kind"] for e in record.events] == ["run_started", "step_started"]
    assert record.summary.steps == {"migrate": "interrupted"}
    assert len(record.step_log("migrate")) == 1
    assert [r.run_id for r in journal.list_runs()] == [run.run_id]

    resumed = journal.open_run(run.run_id, operator="a@b")
    resumed.step_output("migrate", OutputLine("after resume"))
    resumed.step_finished("migrate", status="ok")
    resumed.finish("ok")
    resumed.close()
    record = journal.load(run.run_id)
    assert [e["kind"] for e in record.events][-3:] == [
        "run_resumed",
        "step_finished",
        "run_finished",
    ]
    assert record.summary.status == "ok"
    assert record.step_log("migrate")[-1].endswith("stdout after resume")


def test_everything_written_is_scrubbed(journal: Journal) -> None:
    redact.add_url("postgresql://vlad:Canary-7731@postgres/peludosclick")
    run = journal.start_run(
        "production", operator="a@b", meta={"url": "postgresql://vlad:Canary-7731@postgres/x"}
    )
    run.step_started("dump", title="Dump", command="PGPASSWORD=Canary-7731 pg_dump")
    run.step_output("dump", OutputLine("password is Canary-7731", "stderr"))
    run.step_finished("dump", status="failed", exit_status=1, error="auth Canary-7731 failed")
    run.confirmation("dump", prompt="retry?", typed="Canary-7731", accepted=False)
    run.artifact("dump", "note", text="Canary-7731", nested={"k": ["Canary-7731"]})
    run.finish("failed")
    run.close()
    written = [p for p in run.dir.rglob("*") if p.is_file()]
    assert len(written) == 2
    for path in written:
        content = path.read_text()
        assert "Canary-7731" not in content
        assert "***" in content


def test_default_operator_and_journal() -> None:
    assert re.fullmatch(r"[^@\s]+@[^@\s]+", journal_module.default_operator())
    assert Journal.default().root.name == "runs"


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vlad_tui.events import OutputLine
    from vlad_tui.journal import Journal

    run = Journal(Path(sys.argv[1])).start_run("production", operator="ci@rig")
    run.step_started("backup", title="Backup", command="pg_dump -Fc")
    run.step_output("backup", OutputLine("dumping users"))
    run.step_finished("backup", status="ok", exit_status=0, duration=0.1)
    run.step_started("migrate", title="Migrate", command="npx prisma migrate deploy")
    print(run.run_id, flush=True)
    n = 0
    while True:
        n += 1
        run.step_output("migrate", OutputLine(f"applying migration {n}"))
        if n % 25 == 0:
            run.record("progress", step="migrate", n=n)
    """
)


def test_journal_survives_sigkill_mid_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        assert run_id, child.stderr.read() if child.stderr else ""
        # Let it write for a while, then kill it without any chance to clean up.
        deadline = time.monotonic() + 5
        log = root / run_id / "steps" / "migrate.log"
        while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 4000):
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream:
                stream.close()

    journal = Journal(root)
    runs = journal.list_runs()
    assert [r.run_id for r in runs] == [run_id]
    assert runs[0].unfinished and runs[0].status == "running"
    assert [r.run_id for r in journal.unfinished("production")] == [run_id]
    record = journal.load(run_id)
    assert record.summary.steps == {"backup": "ok", "migrate": "interrupted"}
    assert record.summary.operator == "ci@rig"
    lines = record.step_log("migrate")
    assert len(lines) > 50
    assert all(re.fullmatch(r"\S+ stdout applying migration \d+", line) for line in lines)
    resumed = journal.open_run(run_id, operator="ci@rig")
    resumed.finish("aborted")
    resumed.close()
    assert journal.load(run_id).summary.status == "aborted"


def test_artifacts_of_a_target_across_runs(journal: Journal) -> None:
    first = journal.start_run("production", operator="ana@bastion")
    first.artifact("p1.backup", "backup", path="/b/1.dump", verified=True, created_at=1.0)
    first.artifact("p1.snapshot", "snapshot", tables={})
    first.finish("ok")
    other = journal.start_run("staging", operator="ana@bastion")
    other.artifact("p1.backup", "backup", path="/b/s.dump", verified=True, created_at=2.0)
    second = journal.start_run("production", operator="ana@bastion")
    second.artifact("p1.backup", "backup", path="/b/2.dump", verified=False, created_at=3.0)

    found = journal.artifacts("production", "backup")
    assert [data["path"] for _, data in found] == ["/b/2.dump", "/b/1.dump"]
    assert found[1][0].run_id == first.run_id and found[1][1]["verified"] is True
    assert [
        d["path"] for _, d in journal.artifacts("production", "backup", exclude_run=second.run_id)
    ] == ["/b/1.dump"]


def test_the_journal_records_every_step_status_but_unavailable() -> None:
    # "unavailable" is derived from this version's operations at start-up, never journaled.
    statuses = set(get_args(StepStatus))
    assert statuses - {"unavailable"} == journal_module.STEP_STATUSES
