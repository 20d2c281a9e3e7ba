"""The deploy's reload and post-deploy gate against real pm2 and the sample backend.

One app per module (cluster mode, 2 workers, a 300 ms boot): a reload under a steady load,
error lines appended after the deploy, then a release that cannot boot (last: it leaves a
worker crash-looping). The pure figures of the probe are checked on hand-made probes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2, wait_http
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.demo import install_backend
from vlad_tui.ops.deploy_gate import (
    ERROR_LOG,
    HEALTH,
    NO_CRASH_LOOP,
    ONLINE,
    LogOffsets,
    capture_log_offsets,
    post_deploy_gate,
)
from vlad_tui.ops.pm2 import Pm2Process, pm2_status
from vlad_tui.ops.probe import HealthProbe, Probe, ProbeReport
from vlad_tui.ops.rollout import ReloadPlan, describe_reload, plan_reload, rolling_reload
from vlad_tui.transport import LocalTransport, open_transport

pytestmark = pytest.mark.integration

NAME = "backend-vlad-rollout"
LISTEN_TIMEOUT_MS = 4000


@dataclass(frozen=True)
class App:
    pm2: Pm2
    app_dir: Path
    port: int
    name: str

    def target(self, *, sshd: SshdServer | None = None, **kw: object) -> Target:
        fields = {
            "app_dir": str(self.app_dir),
            "pm2_name": self.name,
            "pm2_bin": str(self.pm2.bin),
            "pm2_home": str(self.pm2.home),
            "health_url": f"http://127.0.0.1:{self.port}/health",
            **kw,
        }
        if sshd is not None:
            return sshd.target("production", **fields)
        return Target("production", host="local", **fields)  # type: ignore[arg-type]

    def set_env(self, **values: str) -> None:
        """Rewrite the app's .env (what a new worker reads when it boots)."""
        install_backend(
            self.app_dir,
            port=self.port,
            database_url="postgresql://nobody@127.0.0.1:1/unused",
            extra_env={"BOOT_DELAY_MS": "300", **values},
        )


def start(pm2: Pm2, name: str, *, cluster: bool) -> Iterator[App]:
    root = Path(tempfile.mkdtemp(prefix="vlad-rollout-"))
    app = App(pm2, root / "backend-vlad", free_port(), name)
    app.set_env()
    args = ["start", "server.js", "--name", name, "--wait-ready"]
    args += ["--listen-timeout", str(LISTEN_TIMEOUT_MS)]
    if cluster:
        args += ["-i", "2"]
    try:
        pm2.run(*args, cwd=app.app_dir)
        wait_http(f"http://127.0.0.1:{app.port}/health")
        yield app
    finally:
        pm2.delete(name)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def app(pm2: Pm2) -> Iterator[App]:
    yield from start(pm2, NAME, cluster=True)


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


# -- pure figures ------------------------------------------------------------------------------


def test_probe_report_figures() -> None:
    probes = (
        Probe(0.0, True, 0.010),
        Probe(0.1, False, 1.0, error="timeout 1 s"),
        Probe(0.2, False, 0.002, error="Connection refused"),
        Probe(0.3, True, 0.020),
        Probe(0.4, True, 0.030),
    )
    report = ProbeReport(probes, wall_time=0.5, hz=10)
    assert (report.sent, report.failed) == (5, 2)
    # good answers at 0.01, 0.32, 0.43: the gap 0.01 → 0.32 is the longest
    assert report.longest_gap == pytest.approx(0.31)
    assert report.p50 == pytest.approx(0.020) and report.p95 == pytest.approx(0.030)
    assert report.errors() == ["timeout 1 s", "Connection refused"]
    assert "2 failed, longest gap 0.31 s" in report.describe()
    empty = ProbeReport((), wall_time=2.0, hz=10)
    assert empty.longest_gap == 2.0 and empty.p50 is None


async def test_the_probe_stops_by_itself_and_counts_every_failure() -> None:
    # Nothing listens on the port: every probe fails fast, and the loop ends at its limit.
    target = Target("prod", health_url=f"http://127.0.0.1:{free_port()}/health")
    async with LocalTransport() as transport:
        probe = HealthProbe(target, transport, hz=20, max_duration=0.5)
        probe.start()
        await asyncio.sleep(1.0)
        report = await probe.stop()
    assert report.truncated and report.wall_time == pytest.approx(0.5, abs=0.1)
    assert 8 <= report.sent <= 12 and report.failed == report.sent
    assert report.longest_gap == report.wall_time and report.p50 is None
    assert "Connection refused" in report.errors()[0]


def test_describe_reload_names_every_command() -> None:
    target = Target("prod", pm2_bin="/opt/pm 2/pm2", pm2_home="~/.pm2", pm2_name="api's")

    def proc(pm_id: int, mode: str) -> Pm2Process:
        return Pm2Process("api's", pm_id, "online", 100 + pm_id, mode, 2, 0, 5.0, 0, 0.0)

    plan = describe_reload(target, [proc(3, "cluster"), proc(1, "cluster")])
    assert plan.mode == "cluster" and plan.pm_ids == (1, 3)
    assert plan.commands == (
        "PM2_HOME=\"$HOME\"/.pm2 '/opt/pm 2/pm2' reload 1",
        "PM2_HOME=\"$HOME\"/.pm2 '/opt/pm 2/pm2' reload 3 --force",
    )
    fork = describe_reload(target, [proc(0, "fork")])
    assert fork.commands == ("PM2_HOME=\"$HOME\"/.pm2 '/opt/pm 2/pm2' restart 'api'\"'\"'s'",)
    assert "cluster mode" in fork.summary and "without downtime" in fork.summary


# -- real pm2 ----------------------------------------------------------------------------------


async def test_cluster_reload_under_steady_load_fails_no_request(
    app: App, sshd: SshdServer
) -> None:
    # Through sshd: the probes go through the SSH tunnel as in production.
    target = app.target(sshd=sshd)
    async with open_transport(target) as transport:
        before = {p.pm_id: p.pid for p in await pm2_status(target, transport)}
        plan = await plan_reload(target, transport)
        assert plan.mode == "cluster" and plan.pm_ids == tuple(sorted(before))
        offsets = await capture_log_offsets(target, transport)
        async with HealthProbe(target, transport, hz=50) as load:
            result = await rolling_reload(target, transport, plan=plan, settle=1.0)
        gate = await post_deploy_gate(
            target, transport, log_offsets=offsets, settle=2.0, expected_workers=2
        )
    assert result.ok, result.describe()
    assert [w.pm_id for w in result.workers] == sorted(before)
    assert all(w.ok and w.new_pid not in (None, w.old_pid) for w in result.workers)
    assert result.probe.failed == 0, result.probe.describe()
    assert result.probe.sent >= 9 * result.probe.wall_time  # ≥ 10 Hz, one tick of slack
    load_report = load.report()
    assert load_report.failed == 0 and load_report.sent >= 40 * load_report.wall_time
    assert result.probe.longest_gap < 0.5
    assert gate.ok, gate.describe()
    assert [c.name for c in gate.checks] == [HEALTH, ONLINE, NO_CRASH_LOOP, ERROR_LOG]


async def test_a_changed_app_is_not_reloaded_from_a_stale_plan(app: App) -> None:
    target = app.target()
    async with open_transport(target) as transport:
        before = {p.pm_id: p.pid for p in await pm2_status(target, transport)}
        stale = ReloadPlan("cluster", (97, 98), (), "")
        result = await rolling_reload(target, transport, plan=stale)
        after = {p.pm_id: p.pid for p in await pm2_status(target, transport)}
    assert not result.ok and "changed since the commands were confirmed" in result.reason
    assert result.workers == () and after == before


async def test_error_lines_after_the_deploy_fail_the_gate_earlier_ones_do_not(app: App) -> None:
    target = app.target()
    async with open_transport(target) as transport:
        procs = await pm2_status(target, transport)
        paths = sorted({p.err_log_path for p in procs if p.err_log_path})
        assert len(paths) == 2  # cluster mode: one error log per worker
        for path in paths:
            _append(path, "Error: connect ECONNREFUSED (before the deploy)\n")
        offsets = await capture_log_offsets(target, transport)
        assert LogOffsets.from_dict(offsets.to_dict()) == offsets  # what the journal keeps
        clean = await post_deploy_gate(target, transport, log_offsets=offsets, settle=0.5)
        _append(paths[1], "a warning that is not one\nError: x is undefined (new)\n")
        gate = await post_deploy_gate(target, transport, log_offsets=offsets, settle=0.5)
    assert clean.ok, clean.describe()
    assert [c.name for c in gate.failed] == [ERROR_LOG], gate.describe()
    check = gate.check(ERROR_LOG)
    assert "1 new error line since the deploy" in check.reason
    assert check.details == (f"{paths[1]}: Error: x is undefined (new)",)
    assert not any("before the deploy" in d for d in check.details)


async def test_fork_mode_restart_reports_its_downtime(pm2: Pm2) -> None:
    for app in start(pm2, f"{NAME}-fork", cluster=False):
        target = app.target()
        async with open_transport(target) as transport:
            plan = await plan_reload(target, transport)
            result = await rolling_reload(target, transport, plan=plan, settle=1.0)
        assert plan.mode == "fork" and len(plan.commands) == 1 and "restart" in plan.commands[0]
        assert result.ok, result.describe()
        assert result.mode == "fork" and "cluster mode" in result.note
        # The 300 ms boot is downtime in fork mode: the probe sees it, the result says it.
        assert result.probe.failed > 0 and result.probe.longest_gap >= 0.3
        assert result.wall_time >= result.probe.wall_time > 0


async def test_a_release_that_cannot_boot_stops_at_the_first_worker(app: App) -> None:
    """Last in the module: it leaves one worker crash-looping (the fixture deletes the app)."""
    target = app.target()
    async with open_transport(target) as transport:
        before = {p.pm_id: p for p in await pm2_status(target, transport)}
        first, second = sorted(before)
        offsets = await capture_log_offsets(target, transport)
        app.set_env(CRASH_AT_BOOT="1")
        try:
            async with HealthProbe(target, transport, hz=20) as load:
                result = await rolling_reload(
                    target, transport, settle=1.0, ready_timeout=LISTEN_TIMEOUT_MS / 1000 + 10
                )
            after = {p.pm_id: p for p in await pm2_status(target, transport)}
            gate = await post_deploy_gate(
                target, transport, log_offsets=offsets, settle=2.0, health_timeout=5.0
            )
        finally:
            app.set_env()
    assert not result.ok
    assert result.failed_pm_id == first and result.untouched == (second,)
    assert [w.pm_id for w in result.workers] == [first] and not result.workers[0].ok
    assert "crash" in result.reason or "errored" in result.reason, result.reason
    assert "roll the code back" in result.reason
    # The other worker never left: same process, online, and every request was served.
    assert after[second].pid == before[second].pid and after[second].online
    assert load.report().failed == 0, load.report().describe()
    assert result.probe.failed == 0
    assert not gate.ok
    assert gate.check(HEALTH).ok  # the old worker still answers
    assert {ONLINE, NO_CRASH_LOOP} & {c.name for c in gate.failed}, gate.describe()
    assert not gate.check(ERROR_LOG).ok
    assert any("CRASH_AT_BOOT" in d for d in gate.check(ERROR_LOG).details)
