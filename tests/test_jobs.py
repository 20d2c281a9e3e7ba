"""Detached jobs (vlad_tui.ops.jobs) and the engine's re-attach, on the local transport.

The pure parts (state parsing, journal round trip, backoff) use fakes; everything else runs
real ``sh`` job directories through :class:`LocalTransport`. The same over the real sshd and
PostgreSQL, with the staging restore: ``tests/e2e/test_resume_reattach.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.rig.operator import Operator
from vlad_tui.config import Config, Project, Target, load_config, render_template
from vlad_tui.errors import ConfigError, ConnectionLost, VladError
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal
from vlad_tui.ops import jobs
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations import OPERATIONS, Operation, StepContext
from vlad_tui.runbook.operations.detached import run_detached
from vlad_tui.transport import LocalTransport
from vlad_tui.transport.base import DetachedJob
from vlad_tui.transport.shell import JOBS_DIR, cleanup_jobs_script, job_dir

# --- pure parts -------------------------------------------------------------------------------


def test_status_lines_parse_into_states() -> None:
    assert jobs.parse_status("finished 0\n") == jobs.JobState("finished", 0)
    assert jobs.parse_status("finished 3") == jobs.JobState("finished", 3)
    assert jobs.parse_status("running") == jobs.JobState("running")
    for word, why in (("missing", "gone"), ("nopid", "never wrote"), ("dead", "killed")):
        state = jobs.parse_status(word)
        assert state.state == "unknown" and why in state.reason
    assert jobs.parse_status("finished garbage").state == "unknown"
    assert jobs.parse_status("").state == "unknown"
    assert "exit status 3" in jobs.JobState("finished", 3).describe()


def test_a_job_round_trips_through_the_journal_and_refuses_a_foreign_directory() -> None:
    job = jobs.new_job("pg_restore into x", "/srv/jobs", now=1700000000.0)
    assert job.job_dir == f"/srv/jobs/{JOBS_DIR}/{job.job_id}"
    assert jobs.job_root_of(job) == "/srv/jobs"
    data = jobs.to_artifact(job)
    assert data == {
        "job_id": job.job_id,
        "job_dir": job.job_dir,
        "label": "pg_restore into x",
        "started_at": 1700000000.0,
    }
    back = jobs.from_artifact(data, offset=42)
    assert (back.job_id, back.job_dir, back.offset, back.label) == (
        job.job_id,
        job.job_dir,
        42,
        "pg_restore into x",
    )
    with pytest.raises(jobs.JobError, match="unexpected directory"):
        jobs.from_artifact({**data, "job_dir": "/home/ana"})
    with pytest.raises(jobs.JobError, match="incomplete"):
        jobs.from_artifact({"job_id": job.job_id})
    with pytest.raises(ValueError):
        job_dir("/tmp", "../etc")


class _Flaky(LocalTransport):
    """A local transport whose attach drops the "connection" the first ``drops`` times."""

    def __init__(self, drops: int) -> None:
        super().__init__()
        self.drops = drops
        self.calls = 0

    async def attach(self, job: DetachedJob, **kwargs: Any) -> int:  # type: ignore[override]
        self.calls += 1
        if self.calls <= self.drops:
            raise ConnectionLost("connection lost (test)")
        return 7


async def test_attach_retries_with_backoff_then_gives_up_without_stopping_the_job() -> None:
    job = jobs.new_job("x")
    retries: list[tuple[int, float]] = []
    flaky = _Flaky(drops=2)
    got = await jobs.attach(
        flaky, job, backoff=(0.01, 0.02), on_retry=lambda n, d, _e: retries.append((n, d))
    )
    assert got == 7 and retries == [(1, 0.01), (2, 0.02)]
    with pytest.raises(jobs.JobConnectionLost, match="it goes on in"):
        await jobs.attach(_Flaky(drops=3), job, backoff=(0.0, 0.0))

    class Progressing(_Flaky):
        async def attach(self, job: DetachedJob, **kwargs: Any) -> int:  # type: ignore[override]
            if self.calls < self.drops:
                job.offset += 10  # output arrived before this drop
            return await super().attach(job, **kwargs)

    # Drops with output in between are not "in a row": the retries start over each time.
    assert await jobs.attach(Progressing(drops=5), job, backoff=(0.0,)) == 7


def test_cleanup_script_only_matches_job_ids() -> None:
    script = cleanup_jobs_script("/tmp/a b", 60, keep="20250101T000000-deadbeef")
    assert "'/tmp/a b/vlad-tui-jobs'" in script and "-mmin -60" in script


def test_config_keys_for_jobs_are_validated_and_documented(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    base = '[targets.production]\nhost = "prod.example.com"\n'
    path.write_text(f'[project]\njobs_keep_days = 2.5\n{base}jobs_dir = "/var/lib/vlad"\n')
    config = load_config(path)
    assert config.project.jobs_keep_days == 2.5
    assert config.target().jobs_dir == "/var/lib/vlad"
    assert Project().jobs_keep_days == 7 and Target("t").jobs_dir == "/tmp"
    for text, key in (
        (f"[project]\njobs_keep_days = 0\n{base}", "project.jobs_keep_days"),
        (f'[project]\njobs_keep_days = "week"\n{base}', "project.jobs_keep_days"),
        (f'{base}jobs_dir = "jobs"\n', "targets.production.jobs_dir"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert err.value.key == key
    template = render_template()
    assert "jobs_keep_days = 7" in template and '# jobs_dir = "/tmp"' in template


# --- real job directories on this machine ------------------------------------------------------


async def _until_file(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


async def test_status_sees_running_finished_missing_and_killed_jobs(tmp_path: Path) -> None:
    local = LocalTransport()
    job = jobs.new_job("sleeper", str(tmp_path))
    await jobs.start(local, job, "echo started; sleep 30")
    assert (await jobs.status(local, job)).state == "running"
    pid = int(Path(job.job_dir, "pid").read_text())
    os.killpg(pid, signal.SIGKILL)  # the whole job, before it could write its status
    await asyncio.sleep(0.2)
    dead = await jobs.status(local, job)
    assert dead.state == "unknown" and "killed" in dead.reason
    with pytest.raises(jobs.JobStateUnknown, match="killed"):
        await jobs.attach(local, job, poll=0.02)

    done = jobs.new_job("quick", str(tmp_path))
    await jobs.start(local, done, "echo out; exit 3")
    lines: list[OutputLine] = []
    offsets: list[int] = []
    assert await jobs.attach(local, done, sink=lines.append, on_offset=offsets.append) == 3
    assert [line.text for line in lines] == ["out"] and offsets == [4]
    assert await jobs.status(local, done) == jobs.JobState("finished", 3)

    gone = jobs.new_job("never", str(tmp_path))
    missing = await jobs.status(local, gone)
    assert missing.state == "unknown" and "gone" in missing.reason


async def test_secrets_reach_the_job_through_stdin_only(tmp_path: Path) -> None:
    local = LocalTransport()
    job = jobs.new_job("secret", str(tmp_path))
    await jobs.start(local, job, 'test "$PW" = "s3 cr3t" && echo same', secrets={"PW": "s3 cr3t"})
    lines: list[OutputLine] = []
    assert await jobs.attach(local, job, sink=lines.append, poll=0.02) == 0
    assert [line.text for line in lines] == ["same"]
    on_disk = b"".join(p.read_bytes() for p in Path(job.job_dir).iterdir() if p.is_file())
    assert b"s3 cr3t" not in on_disk


async def test_a_refused_launch_is_not_started(tmp_path: Path) -> None:
    (tmp_path / JOBS_DIR).symlink_to(tmp_path)  # planted: not a private directory
    job = jobs.new_job("refused", str(tmp_path))
    with pytest.raises(jobs.JobNotStarted, match="not a private directory"):
        await jobs.start(LocalTransport(), job, "echo never")


async def test_cleanup_removes_only_old_finished_job_directories(tmp_path: Path) -> None:
    local = LocalTransport()
    old_done, fresh_done, old_running, kept = (
        jobs.new_job(n, str(tmp_path)) for n in ("old", "fresh", "running", "kept")
    )
    for job in (old_done, fresh_done, kept):
        await jobs.start(local, job, "echo done")
        assert await jobs.attach(local, job, poll=0.02) == 0
    await jobs.start(local, old_running, "sleep 30")
    stranger = tmp_path / JOBS_DIR / "notes"
    stranger.mkdir()
    ten_days_ago = time.time() - 10 * 86400
    for job in (old_done, old_running, kept):
        for path in (*Path(job.job_dir).iterdir(), Path(job.job_dir)):
            os.utime(path, (ten_days_ago, ten_days_ago), follow_symlinks=False)
    os.utime(stranger, (ten_days_ago, ten_days_ago))
    try:
        removed = await jobs.cleanup(local, str(tmp_path), 7, keep=kept.job_id)
        assert removed == [old_done.job_dir]
        assert not Path(old_done.job_dir).exists()
        for job in (fresh_done, old_running, kept):
            assert Path(job.job_dir).is_dir()
        assert stranger.is_dir()
        # start() prunes by itself.
        again = jobs.new_job("again", str(tmp_path))
        await jobs.start(local, again, "true", keep_days=7)
        assert not Path(kept.job_dir).exists() and Path(old_running.job_dir).is_dir()
    finally:
        os.killpg(int(Path(old_running.job_dir, "pid").read_text()), signal.SIGKILL)


# --- the engine: a step never starts its job twice ---------------------------------------------

STEP = "p1.facts"  # a plain step (no needs, not destructive) whose operation we replace


def _marker_command(tmp_path: Path, seconds: float, status: int = 0) -> str:
    starts = tmp_path / "starts"
    return f"echo start >> {starts}; echo one; sleep {seconds}; echo two; exit {status}"


class Bench:
    """An engine over the local transport whose ``p1.facts`` step runs a detached job."""

    def __init__(self, tmp_path: Path, command: str) -> None:
        self.tmp = tmp_path
        self.command = command
        self.target = replace(Target("production"), jobs_dir=str(tmp_path))
        self.config = Config(tmp_path / "c.toml", Project(), {"production": self.target})
        self.journal = Journal(tmp_path / "runs")
        self.run = self.journal.start_run("production", operator="ana@bastion")
        self.operator = Operator()
        self.after: list[int] = []

        async def op(ctx: StepContext) -> None:
            status = await run_detached(ctx, "the test job", self.command)
            self.after.append(status)  # the post-processing runs once the job ended
            if status != 0:
                raise VladError(f"the test job failed (exit status {status})")

        self.operations = {**OPERATIONS, "facts": Operation(op)}

    def engine(self, *, resume: bool = False) -> Engine:
        kw: dict[str, Any] = {
            "confirm": self.operator.confirm,
            "sink": self.operator.sink,
            "journal": self.journal,
            "operations": self.operations,
        }
        if not resume:
            return Engine(self.config, self.target, LocalTransport(), self.run, **kw)
        self.run.close()
        self.run = self.journal.open_run(self.run.run_id, operator="ana@bastion")
        record = self.journal.load(self.run.run_id)
        return Engine.resume(self.config, self.target, LocalTransport(), self.run, record, **kw)

    def starts(self) -> int:
        path = self.tmp / "starts"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def job_dirs(self) -> list[Path]:
        return sorted((self.tmp / JOBS_DIR).iterdir())

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.journal.load(self.run.run_id).events_of(kind)


async def test_a_cancelled_step_re_attaches_in_the_same_session(tmp_path: Path) -> None:
    bench = Bench(tmp_path, _marker_command(tmp_path, 1.0, status=4))
    engine = bench.engine()
    task = asyncio.create_task(engine.run_step(STEP))
    await _until_file(tmp_path / "starts")
    await asyncio.sleep(0.7)  # "one" has been shown
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.statuses[STEP] == "interrupted"
    job = engine.unfinished_job(STEP)
    assert job is not None and job["offset"] == 4  # b"one\n"

    assert await engine.run_step(STEP) == "failed"
    assert bench.starts() == 1 and len(bench.job_dirs()) == 1
    [text] = [line.text for line in engine.log(STEP) if line.text in ("one", "two")]
    assert text == "two"  # the rest only
    finished = bench.events("step_finished")
    assert finished[-1]["exit_status"] == 4 and bench.after == [4]
    assert engine.unfinished_job(STEP) is None
    # With the job's end known, running the step again starts a new one.
    bench.command = "echo again"
    assert await engine.run_step(STEP) == "ok"
    assert len(bench.job_dirs()) == 2


async def test_a_resumed_run_re_attaches_to_a_job_that_finished_meanwhile(tmp_path: Path) -> None:
    bench = Bench(tmp_path, _marker_command(tmp_path, 0.3))
    engine = bench.engine()
    task = asyncio.create_task(engine.run_step(STEP))
    await _until_file(tmp_path / "starts")
    # vlad-tui "dies": the task is dropped without any journal write, like SIGKILL would.
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Forget the interrupted step_finished the cancel wrote: a crash writes nothing.
    events = Path(bench.run.dir, "events.jsonl")
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join(line for line in lines if '"step_finished"' not in line))
    await asyncio.sleep(0.6)  # the job ends while nobody watches

    resumed = bench.engine(resume=True)
    assert resumed.statuses[STEP] == "interrupted"
    assert "re-attach" in (resumed.error(STEP) or "")
    assert await resumed.run_step(STEP) == "ok"
    assert bench.starts() == 1 and len(bench.job_dirs()) == 1
    assert [e["job_id"] for e in bench.events("job_reattach")] == [bench.job_dirs()[0].name]
    assert bench.events("step_finished")[-1]["exit_status"] == 0 and bench.after == [0]
    assert not bench.operator.asked  # re-attaching asks nothing


async def test_a_job_whose_state_cannot_be_read_is_never_guessed(tmp_path: Path) -> None:
    bench = Bench(tmp_path, _marker_command(tmp_path, 5))
    engine = bench.engine()
    task = asyncio.create_task(engine.run_step(STEP))
    await _until_file(tmp_path / "starts")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [directory] = bench.job_dirs()
    os.killpg(int((directory / "pid").read_text()), signal.SIGKILL)
    await asyncio.sleep(0.2)

    resumed = bench.engine(resume=True)
    bench.operator.answers = [None]  # the operator cancels
    assert await resumed.run_step(STEP) == "interrupted"
    [asked] = bench.operator.asked
    assert "cannot be read" in asked.title and "killed" in asked.consequence
    assert bench.starts() == 1 and resumed.unfinished_job(STEP) is not None

    bench.operator.answers = ["production"]  # checked on the server: it is not running
    bench.command = "echo fresh"
    assert await resumed.run_step(STEP) == "ok"
    [released] = bench.events("job_released")
    assert released["operator"] == "ana@bastion" and released["job_id"] == directory.name
    assert len(bench.job_dirs()) == 2


async def test_an_unreadable_state_fails_the_step_before_anything_runs(tmp_path: Path) -> None:
    bench = Bench(tmp_path, _marker_command(tmp_path, 5))
    engine = bench.engine()
    task = asyncio.create_task(engine.run_step(STEP))
    await _until_file(tmp_path / "starts")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    class Down(LocalTransport):
        async def run(self, command: str, **kwargs: Any) -> Any:  # type: ignore[override]
            raise ConnectionLost("connection lost (test)")

    engine.transport = Down()
    try:
        assert await engine.run_step(STEP) == "failed"
        assert "it is not started again" in (engine.error(STEP) or "")
        assert bench.starts() == 1 and engine.unfinished_job(STEP) is not None
        # A resume still finds the job (the failed attempt did not lose it).
        resumed = bench.engine(resume=True)
        assert resumed.unfinished_job(STEP) is not None
    finally:
        [directory] = bench.job_dirs()
        os.killpg(int((directory / "pid").read_text()), signal.SIGKILL)
