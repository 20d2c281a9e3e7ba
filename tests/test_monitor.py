"""Monitoring without services: signatures, thresholds, crossings, the recording, [monitor]."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from vlad_tui.config import Config, Levels, MonitorConfig, Project, Target, load_config
from vlad_tui.errors import ConfigError
from vlad_tui.ops import sampler as monitor_sampler
from vlad_tui.ops.monitor import (
    AppSample,
    Crossings,
    DbSample,
    ErrorSample,
    Finding,
    Sample,
    WorkerSample,
    evaluate,
    sample_from_dict,
    sample_to_dict,
    signature,
)
from vlad_tui.ops.recording import Recording, recording_path
from vlad_tui.ops.sampler import Sampler
from vlad_tui.transport.local import LocalTransport

MB = 1024 * 1024
T = time.time() - 3600  # recent: the recording keeps 30 days


def _sample(
    ts: float = 1000.0,
    *,
    up: bool = True,
    p95: float = 50.0,
    memory_mb: float = 100.0,
    restarts: int = 0,
    per_minute: float = 0.0,
    connections: int = 10,
    waiting: int = 0,
    status: str = "online",
    failures: tuple[str, ...] = (),
) -> Sample:
    return Sample(
        ts=ts,
        app=AppSample(up, p95 / 2, p95, 0.0, 10, None if up else "no answer"),
        workers=(
            WorkerSample("app", 0, status, 1.5, int(memory_mb * MB), restarts, 0, 60.0),
            WorkerSample("app", 1, "online", 0.5, int(memory_mb * MB / 2), 0, 0, 60.0),
        ),
        db=DbSample(
            {"active": 1, "idle": connections - 1},
            100,
            waiting,
            4242 if waiting else None,
            0.2,
            "select 1",
            0.3,
            8 * MB,
            0.99,
        ),
        errors=ErrorSample(("Error: x",) if per_minute else (), per_minute, {}),
        failures=failures,
    )


def _by_metric(findings: list[Finding]) -> dict[str, Finding]:
    return {f.metric: f for f in findings}


def test_similar_lines_share_a_signature_and_different_ones_do_not() -> None:
    a = signature('2026-12-01T14:05:01.123Z Error: relation "medals" does not exist at 0x7f3a')
    b = signature('2026-12-01T14:06:59.999Z Error: relation "users" does not exist at 0x11')
    c = signature("Error: user 4f1c2d9e-8b7a-4c3d-9e1f-123456789abc timed out after 3000 ms")
    d = signature("Error: user 0b1c2d9e-8b7a-4c3d-9e1f-aaaaaaaaaaaa timed out after 12 ms")
    assert a == b == 'Error: relation "<v>" does not exist at <hex>'
    assert c == d == "Error: user <uuid> timed out after <n> ms"
    assert signature("TypeError: x is undefined") != signature("TypeError: y is null")


def test_a_healthy_sample_against_itself_is_ok_everywhere() -> None:
    s = _sample()
    found = _by_metric(evaluate(s, s, MonitorConfig()))
    assert set(found) >= {"health", "latency", "workers", "memory", "restarts", "error_rate"}
    assert {f.level for f in found.values()} == {"ok"}
    assert found["connections"].text == "connections 10 of 100: 10 %"


def test_levels_relative_to_the_baseline() -> None:
    cfg = MonitorConfig(latency_ms=Levels(300, 1000), memory_mb=Levels(150, 400))
    base = _sample(p95=500, memory_mb=300)
    # 700 ms is over 300 ms absolute but only 200 ms over the baseline: ok.
    found = _by_metric(evaluate(_sample(p95=700, memory_mb=400), base, cfg))
    assert found["latency"].level == "ok" and found["latency"].limit == 800
    assert found["memory"].level == "ok"
    found = _by_metric(evaluate(_sample(p95=900, memory_mb=800), base, cfg))
    assert (found["latency"].level, found["memory"].level) == ("warning", "critical")
    assert "baseline 500 ms" in found["latency"].text
    # Without a baseline, the value itself is compared.
    assert _by_metric(evaluate(_sample(p95=700), None, cfg))["latency"].level == "warning"


def test_a_stopped_app_is_critical_and_restarts_count_since_the_baseline() -> None:
    base = _sample(restarts=4)
    found = _by_metric(
        evaluate(_sample(up=False, status="stopped", restarts=7), base, MonitorConfig())
    )
    assert found["health"].level == "critical"
    assert found["workers"].level == "critical" and "app[0] stopped" in found["workers"].text
    assert (found["restarts"].value, found["restarts"].level) == (3.0, "critical")


def test_errors_connections_and_locks() -> None:
    found = _by_metric(
        evaluate(_sample(per_minute=40, connections=95, waiting=2), _sample(), MonitorConfig())
    )
    assert found["error_rate"].level == "critical"
    assert found["connections"].level == "critical"
    assert found["locks"].level == "warning" and "pid 4242" in found["locks"].text


def test_a_part_that_was_not_read_is_a_gap_not_a_finding() -> None:
    s = Sample(1.0, None, (), None, None, ("pm2: pm2 is not running", "postgres: refused"))
    assert evaluate(s, _sample(), MonitorConfig()) == []


def test_crossings_fire_when_a_level_rises_and_not_while_it_stays() -> None:
    tracker = Crossings()
    ok = Finding("latency", "ok", 1, 2, "")
    warn = Finding("latency", "warning", 3, 2, "")
    crit = Finding("latency", "critical", 9, 5, "")
    assert tracker.update([ok]) == []
    assert tracker.update([warn]) == [warn]
    assert tracker.update([warn]) == []
    assert tracker.update([]) == []  # a gap keeps the level
    assert tracker.update([crit]) == [crit]
    assert tracker.update([ok]) == []
    assert tracker.update([warn]) == [warn]


def test_samples_round_trip_through_dicts() -> None:
    s = _sample(per_minute=3.0, failures=("app: timeout",))
    assert sample_from_dict(sample_to_dict(s)) == s


def _config(tmp_path: Path, **monitor_kw: object) -> Config:
    return Config(
        tmp_path / "c.toml",
        Project(journal_dir=tmp_path / "runs"),
        monitor=MonitorConfig(**monitor_kw),  # type: ignore[arg-type]
    )


def test_recording_is_private_survives_a_reopen_and_summarises(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = recording_path(config, "production")
    with Recording.open(config, "production") as rec:
        for i, p95 in enumerate((50.0, 80.0, 2000.0, 60.0)):
            s = _sample(T + i * 2, p95=p95)
            rec.append(s, evaluate(s, _sample(), config.monitor), run_id="r1")
        rec.append(_sample(T + 100), [], run_id="r2", kind="check")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for f in path.parent.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    with Recording.open(config, "production") as rec:  # a restart of vlad-tui
        replay = rec.between(T, T + 10)
        summary = rec.summary(run_id="r1")
        assert [r.sample.app.latency_p95_ms for r in replay if r.sample.app] == [50, 80, 2000, 60]
        assert replay[2].findings and replay[0].run_id == "r1"
        assert [r.kind for r in rec.of_run("r2")] == ["check"]
        assert [r.sample.ts for r in rec.latest_before(T + 5, 2)] == [T + 2, T + 4]
        assert rec.log_offsets() == ({}, None)
        rec.save_log_offsets({"/logs/app-error-0.log": 120}, T)
    with Recording.open(config, "production") as rec:
        assert rec.log_offsets() == ({"/logs/app-error-0.log": 120}, T)
    assert summary["samples"] == 4
    assert summary["metrics"]["latency_p95_ms"] == {"min": 50.0, "median": 70.0, "max": 2000.0}
    assert [(c["metric"], c["level"]) for c in summary["crossings"]] == [("latency", "critical")]


def test_recording_is_bounded_by_retention(tmp_path: Path) -> None:
    config = _config(tmp_path, retention_days=1.0)
    with Recording.open(config, "production") as rec:
        rec.append(_sample(1000.0), [])
        rec.append(_sample(1000.0 + 2 * 86400), [])
        assert rec.sweep(now=1000.0 + 2 * 86400) == 1
        assert [r.sample.ts for r in rec.between(0, 1e12)] == [1000.0 + 2 * 86400]


def test_monitor_config_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    base = '[targets.production]\nhost = "local"\n'
    path.write_text(base + "[monitor]\ninterval = 5\nlatency_ms = { warning = 200 }\n")
    cfg = load_config(path).monitor
    assert cfg.interval == 5 and cfg.latency_ms == Levels(200, 1000)
    for bad, key in (
        ("latency_ms = { warning = 2000 }", "monitor.latency_ms"),
        ("connections_share = { warning = 0.5, critical = 2 }", "monitor.connections_share"),
        ("latncy_ms = { warning = 1 }", "monitor.latncy_ms"),
        ("interval = 0", "monitor.interval"),
    ):
        path.write_text(base + f"[monitor]\n{bad}\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert err.value.key.startswith(key), (bad, err.value.key)


async def test_error_log_is_read_from_offsets_in_one_command(tmp_path: Path) -> None:
    """The log part of the remote command, on this machine (no pm2 daemon here: pm2 is a
    failure line, the log lines are still read)."""
    log = tmp_path / "it's an error log.log"
    log.write_text("old line, not read\n")
    target = Target("t", host="local", pm2_home=str(tmp_path / "no-pm2"), pm2_name="app")
    sampler = Sampler(_config(tmp_path), target, LocalTransport())
    sampler._state.logs[str(log)] = monitor_sampler._Log(str(log))  # as learnt from pm2 jlist
    sampler._state.started = 0.0
    _workers, errors, failure = await sampler._remote(10.0)
    assert failure and "pm2 is not running" in failure
    assert errors is not None and errors.new_lines == ()  # starts at the end of the file
    with log.open("a") as f:
        f.write("Error: id 17 failed\nError: id 18 failed\n    at x (y.js:1:1)\npartial")
    _workers, errors, _ = await sampler._remote(40.0)
    assert errors is not None
    assert errors.new_lines == ("Error: id 17 failed", "Error: id 18 failed", "    at x (y.js:1:1)")
    assert errors.groups == {"Error: id <n> failed": 2}
    assert errors.per_minute == pytest.approx(2 * 60 / 40)
    with log.open("a") as f:
        f.write(" line\n")
    _workers, errors, _ = await sampler._remote(41.0)
    assert errors is not None and errors.new_lines == ("partial line",)
    log.write_text("Error: after rotation\n")  # smaller than the offset: read from 0
    _workers, errors, _ = await sampler._remote(42.0)
    assert errors is not None and errors.new_lines == ("Error: after rotation",)
    assert sampler.remote_commands == 4 and sampler.sessions_opened == 1
    await sampler.close()
    assert os.path.exists(log)


async def test_a_shell_session_runs_commands_one_after_another() -> None:
    from vlad_tui.errors import CommandTimeout

    transport = LocalTransport()
    session = await transport.open_session()
    assert session is not None
    try:
        assert await session.run("echo one; echo two >&2", timeout=5) == (0, "one\ntwo\n")
        # A command that reads stdin reads nothing: the next commands stay the shell's.
        assert await session.run("cat; echo after", timeout=5) == (0, "after\n")
        assert (await session.run("no_such_command_xyz", timeout=5))[0] == 127
        status, big = await session.run("head -c 3000000 /dev/zero | tr '\\0' x", timeout=10)
        assert status == 0 and len(big) == 3000000
        assert (await session.run("false", timeout=5))[0] == 1
        assert await session.run("printf 'no newline'", timeout=5) == (0, "no newline")
        with pytest.raises(CommandTimeout):
            await session.run("sleep 5", timeout=0.3)
        assert session.closed
    finally:
        await session.close()


def test_proc_readings_are_parsed_from_the_head() -> None:
    mark = "@@m"
    stat_line = "4242 (node /srv/a (x)) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 98765 1 2"
    head = f'[{{"name": "a"}}]\n{mark} proc 4242 58000 {stat_line}\n{mark} tck 100\n'
    text, procs, tck = monitor_sampler._split_head(head, mark)
    assert procs == {4242: (200, "98765", "S", 58000)}
    assert tck == 100 and text.strip() == '[{"name": "a"}]'


async def test_a_sample_with_nothing_reachable_is_gaps_not_an_exception(tmp_path: Path) -> None:
    from tests.rig.services import free_port

    target = Target(
        "t",
        host="local",
        pm2_home=str(tmp_path / "no-pm2"),
        health_url=f"http://127.0.0.1:{free_port()}/health",
        database=f"postgresql://nobody@127.0.0.1:{free_port()}/nothing",
        connect_timeout=2.0,
    )
    sampler = Sampler(_config(tmp_path), target, LocalTransport())
    try:
        sample = await sampler.sample()
    finally:
        await sampler.close()
    assert sample.app is not None and not sample.app.up and sample.app.latency_p95_ms is None
    assert [f.split(":")[0] for f in sample.failures] == ["pm2", "postgres"]
    assert sample.workers == () and sample.db is None
    found = {f.metric: f.level for f in evaluate(sample, None, MonitorConfig())}
    assert found == {"health": "critical", "non_2xx": "critical"}


def test_last_deploy_is_the_newest_successful_deploy_of_the_target(tmp_path: Path) -> None:
    """What the dashboard marks as the deploy, and what the baseline is taken before."""
    from vlad_tui.journal import Journal
    from vlad_tui.ops.baseline import last_deploy

    journal = Journal(tmp_path / "runs")
    assert last_deploy(journal, "production", "p3.deploy") is None
    ended = []
    for target, status in (("production", "ok"), ("production", "failed"), ("staging", "ok")):
        run = journal.start_run(target, operator="ana@bastion")
        run.step_started("p3.deploy", title="Despliega la aplicación")
        run.step_finished("p3.deploy", status=status, duration=1.0)
        ended.append(journal.load(run.run_id).events_of("step_finished")[-1]["ts"])
        run.finish("ok")
        run.close()
    production = last_deploy(journal, "production", "p3.deploy")
    assert production is not None and production.ts == ended[0]
    staging = last_deploy(journal, "staging", "p3.deploy")
    assert staging is not None and staging.ts == ended[2]
