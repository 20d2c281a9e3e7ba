"""Phase 4 monitoring against real services: the sample app under real pm2, reached through a
real sshd, and real PostgreSQL. One app of its own for the module (stopping it must not disturb
other modules' app)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.rig.pm2 import Pm2, wait_http
from tests.rig.postgres import PgServer, SeededDatabase
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui import cli, redact
from vlad_tui.config import Config, MonitorConfig, Project, SmokeCheck, Target, dump_config
from vlad_tui.demo import install_backend
from vlad_tui.journal import Journal
from vlad_tui.ops.monitor import Sample
from vlad_tui.ops.recording import Recording
from vlad_tui.ops.sampler import Sampler
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import MonitorSampled
from vlad_tui.transport import open_transport

pytestmark = pytest.mark.integration

NAME = "backend-vlad-monitor"


class Rig:
    def __init__(self, pm2: Pm2, app_dir: Path, port: int, target: Target, pg: PgServer) -> None:
        self.pm2 = pm2
        self.app_dir = app_dir
        self.port = port
        self.target = target
        self.pg = pg

    def config(self, tmp: Path, **monitor: Any) -> Config:
        return Config(
            tmp / "vlad.toml",
            Project(journal_dir=tmp / "runs"),
            targets={self.target.name: self.target},
            monitor=MonitorConfig(interval=0.5, **monitor),
        )

    def error_logs(self) -> list[Path]:
        return [
            Path(p["pm2_env"]["pm_err_log_path"]) for p in self.pm2.jlist() if p["name"] == NAME
        ]

    def ensure_online(self) -> None:
        self.pm2.run("start", NAME)
        wait_http(f"http://127.0.0.1:{self.port}/health")


@pytest.fixture(scope="module")
def rig(pm2: Pm2, peludosclick: SeededDatabase, sshd: SshdServer, pg: PgServer) -> Iterator[Rig]:
    root = Path(tempfile.mkdtemp(prefix="vlad-monitor-"))
    app_dir = root / NAME
    port = free_port()
    install_backend(app_dir, port=port, database_url=peludosclick.url)
    try:
        pm2.start_app(NAME, app_dir, instances=2)
        wait_http(f"http://127.0.0.1:{port}/health")
        target = sshd.target(
            "production",
            app_dir=str(app_dir),
            pm2_name=NAME,
            pm2_bin=str(pm2.bin),
            pm2_home=str(pm2.home),
            health_url=f"http://127.0.0.1:{port}/health",
            backup_dir=str(root / "backups"),
        )
        yield Rig(pm2, app_dir, port, target, pg)
    finally:
        pm2.delete(NAME)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def sampler(rig: Rig, tmp_path: Path) -> AsyncIterator[Sampler]:
    rig.ensure_online()
    transport = open_transport(rig.target)
    s = Sampler(rig.config(tmp_path), rig.target, transport)
    try:
        yield s
    finally:
        await s.close()
        await transport.close()


async def _samples(sampler: Sampler, n: int, pause: float = 0.5) -> list[Sample]:
    out = []
    for i in range(n):
        if i:
            await asyncio.sleep(pause)
        out.append(await sampler.sample())
    return out


async def test_metrics_appear_for_the_running_app(sampler: Sampler) -> None:
    samples = await _samples(sampler, 3, pause=1.2)
    last = samples[-1]
    assert last.failures == ()
    assert last.app is not None and last.app.up and last.app.probes == 3
    assert last.app.latency_p50_ms is not None and last.app.latency_p50_ms > 0
    assert last.app.non_2xx_rate == 0.0
    assert [w.status for w in last.workers] == ["online", "online"]
    assert all(w.memory > 10 * 1024 * 1024 for w in last.workers)
    assert all(w.uptime_s is not None for w in last.workers)
    db = last.db
    assert db is not None and db.max_connections > 0 and db.size_bytes
    # vlad-tui's own session is not shown: its query is never the longest.
    assert "pg_blocking_pids" not in (db.longest_query or "")
    assert any(s.db and s.db.cache_hit_ratio is not None for s in samples[1:])
    assert last.errors is not None  # the error log files are known from the first sample on
    # At most one remote command and one SQL round trip per sample; pm2 jlist only in the
    # first while the workers' pids stay alive (the others read /proc).
    assert sampler.remote_commands == sampler.sql_round_trips == 3
    assert sampler.jlist_runs == 1
    assert sampler.sessions_opened == 1  # one shell on the server for every sample
    assert [w.restarts for w in last.workers] == [w.restarts for w in samples[0].workers]


async def test_a_restart_is_seen_by_the_next_sample(rig: Rig, sampler: Sampler) -> None:
    from vlad_tui.ops.monitor import evaluate

    baseline = (await _samples(sampler, 2))[-1]
    rig.pm2.run("restart", NAME)
    wait_http(f"http://127.0.0.1:{rig.port}/health")
    after = (await _samples(sampler, 1))[0]
    assert sampler.jlist_runs == 2  # the old pids were gone: pm2 jlist ran in that command
    assert [w.restarts for w in after.workers] == [w.restarts + 1 for w in baseline.workers]
    found = {f.metric: f for f in evaluate(after, baseline, MonitorConfig())}
    assert found["restarts"].value == 2.0 and found["restarts"].level == "warning"


async def test_stopping_the_app_turns_health_critical(rig: Rig, sampler: Sampler) -> None:
    from vlad_tui.ops.monitor import evaluate

    baseline = (await _samples(sampler, 1))[0]
    rig.pm2.run("stop", NAME)
    try:
        stopped = (await _samples(sampler, 1))[0]
    finally:
        rig.ensure_online()
    found = {f.metric: f for f in evaluate(stopped, baseline, MonitorConfig())}
    assert stopped.app is not None and not stopped.app.up
    assert found["health"].level == "critical"
    assert found["workers"].level == "critical" and "stopped" in found["workers"].text


async def test_a_burst_of_error_lines_raises_the_error_rate(rig: Rig, sampler: Sampler) -> None:
    before = await _samples(sampler, 2)  # the first learns the files, the second their ends
    assert before[-1].errors is not None and before[-1].errors.per_minute == 0
    password = "s3cr3t-in-a-log-line"
    redact.add_secret(password)
    log = rig.error_logs()[0]
    with log.open("a") as f:
        for i in range(40):
            f.write(f'Error: request {1000 + i} failed: relation "t{i}" does not exist\n')
        f.write(f"Error: connecting with password {password}\n")
    after = (await _samples(sampler, 1))[0]
    errors = after.errors
    assert errors is not None and errors.per_minute > 30
    assert errors.groups['Error: request <n> failed: relation "<v>" does not exist'] == 40
    assert len(errors.new_lines) == 41
    assert password not in " ".join(errors.new_lines) and "***" in errors.new_lines[-1]
    from vlad_tui.ops.monitor import evaluate

    found = {f.metric: f for f in evaluate(after, before[-1], MonitorConfig())}
    assert found["error_rate"].level == "critical"


async def test_a_long_query_shows_as_the_longest(rig: Rig, sampler: Sampler) -> None:
    await _samples(sampler, 1)
    conn = await rig.pg.connect("peludosclick")
    try:
        sleeping = asyncio.create_task(conn.execute("select pg_sleep(4) /* long-one */"))
        await asyncio.sleep(1.5)
        sample = (await _samples(sampler, 1))[0]
        await sleeping
    finally:
        await conn.close()
    assert sample.db is not None
    assert "pg_sleep(4)" in (sample.db.longest_query or "")
    assert sample.db.longest_query_s is not None and sample.db.longest_query_s >= 1.0
    assert sample.db.connections.get("active", 0) >= 1


async def test_the_step_records_and_ends_ok_when_stopped(rig: Rig, tmp_path: Path) -> None:
    rig.ensure_online()
    config = rig.config(tmp_path)
    journal = Journal(config.journal_dir)
    run = journal.start_run(rig.target.name)
    events: list[Any] = []
    transport = open_transport(rig.target)

    async def no_confirm(_request: Any) -> str | None:
        return None

    engine = Engine(
        config, rig.target, transport, run, confirm=no_confirm, sink=events.append, journal=journal
    )
    assert engine.available("p4.metrics") and engine.status("p4.metrics") == "pending"
    try:
        task = asyncio.create_task(engine.run_step("p4.metrics"))
        deadline = time.monotonic() + 30
        while sum(isinstance(e, MonitorSampled) for e in events) < 3:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        task.cancel()  # the operator stops monitoring
        assert await task == "ok"
    finally:
        await transport.close()
        run.close()
    sampled = [e for e in events if isinstance(e, MonitorSampled)]
    assert sampled[0].baseline is not None and "first sample" in sampled[0].baseline_note
    record = journal.load(run.run_id)
    artifacts = record.events_of("artifact")
    summary = [e["data"] for e in artifacts if e["artifact"] == "monitor_summary"]
    assert summary and summary[0]["stopped"] == "stopped by the operator"
    assert summary[0]["samples"] >= 3 and "latency_p95_ms" in summary[0]["metrics"]
    assert record.summary.steps["p4.metrics"] == "ok"
    # The recording survives this session and is replayed by the next one.
    with Recording.open(config, rig.target) as rec:
        replay = [r for r in rec.between(0, time.time()) if r.run_id == run.run_id]
    assert len(replay) == summary[0]["samples"]
    assert [r.sample for r in replay[:3]] == [e.sample for e in sampled[:3]]


def test_check_exits_1_on_a_breached_threshold_and_journals_the_round(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.ensure_online()
    path = tmp_path / "vlad.toml"
    text = dump_config([rig.target], Project(journal_dir=tmp_path / "runs"))
    path.write_text(text + "\n[monitor]\ninterval = 0.5\n")
    path.chmod(0o600)
    # Generous thresholds: the round is fine (exit 0 unless another part of check is not).
    code = cli.main(["--config", str(path), "check", "--target", "production", "--json"])
    healthy = json.loads(capsys.readouterr().out)
    assert healthy["monitor"]["breached"] == [], healthy["monitor"]
    assert code == (0 if not healthy["problems"] else 1)
    # An endpoint that answers 404 to every probe: half the probes fail, breached, exit 1.
    broken = replace(rig.target, smoke_checks=(SmokeCheck(), SmokeCheck("GET", "/missing", 200)))
    text = dump_config([broken], Project(journal_dir=tmp_path / "runs"))
    path.write_text(text + "\n[monitor]\ninterval = 0.5\n")
    # Errors logged between two checks are read by the next one (from the saved offsets).
    with rig.error_logs()[0].open("a") as f:
        f.write("Error: between the checks 1\nError: between the checks 2\n    at x\n")
        f.write("TypeError: between the checks\n")
    code = cli.main(["--config", str(path), "check", "--target", "production", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["monitor"]["error_lines"] == 3 and out["monitor"]["errors_since"]
    groups = out["monitor"]["sample"]["errors"]["groups"]
    assert groups == {"Error: between the checks <n>": 2, "TypeError: between the checks": 1}
    assert [b["metric"] for b in out["monitor"]["breached"]] == ["non_2xx"]
    journal = Journal(tmp_path / "runs")
    checks = [r for r in journal.list_runs() if r.meta.get("kind") == "daily_check"]
    assert len(checks) == 2 and checks[0].status == "failed" and checks[1].status == "ok"
    record = journal.load(checks[0].run_id)
    (event,) = record.events_of("monitor_check")
    assert event["level"] == "critical" and event["summary"]["samples"] == 3
    assert "first sample(s) recorded" in event["baseline"]["note"]
    assert cli.main(["--config", str(path), "runs"]) == 0
    assert "daily check" in capsys.readouterr().out
    assert cli.main(["--config", str(path), "report", checks[0].run_id]) == 0
    report = capsys.readouterr().out
    assert "Daily check" in report and "non_2xx" in report


async def test_a_stopped_app_is_journaled_as_a_crossing(rig: Rig, tmp_path: Path) -> None:
    rig.ensure_online()
    config = rig.config(tmp_path)
    journal = Journal(config.journal_dir)
    run = journal.start_run(rig.target.name)
    events: list[Any] = []
    transport = open_transport(rig.target)

    async def no_confirm(_request: Any) -> str | None:
        return None

    engine = Engine(
        config, rig.target, transport, run, confirm=no_confirm, sink=events.append, journal=journal
    )
    try:
        task = asyncio.create_task(engine.run_step("p4.metrics", params={"duration": 6}))
        deadline = time.monotonic() + 30
        while sum(isinstance(e, MonitorSampled) for e in events) < 2:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        await asyncio.to_thread(rig.pm2.run, "stop", NAME)
        assert await task == "ok"  # the duration ran out
    finally:
        rig.ensure_online()
        await transport.close()
        run.close()
    record = journal.load(run.run_id)
    crossed = [(e["metric"], e["level"]) for e in record.events_of("monitor_threshold")]
    assert ("health", "critical") in crossed and ("workers", "critical") in crossed
    assert any("critical: health" in line for line in record.step_log("p4.metrics"))
    last = [e for e in events if isinstance(e, MonitorSampled)][-1]
    assert {f.metric: f.level for f in last.findings}["health"] == "critical"
    (summary,) = [
        e["data"] for e in record.events_of("artifact") if e["artifact"] == "monitor_summary"
    ]
    assert summary["stopped"] == "the duration ran out"
    assert ("health", "critical") in [(c["metric"], c["level"]) for c in summary["crossings"]]
