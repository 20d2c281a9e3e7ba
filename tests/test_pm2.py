"""pm2: command building, ``pm2 jlist`` parsing (captured real output), status of a real app."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2, SampleApp
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.ops.pm2 import Pm2Error, parse_jlist, pm2_command, pm2_list, pm2_status
from vlad_tui.transport import open_transport

pytestmark = pytest.mark.integration

# `pm2 jlist` from pm2 6.0.14: backend-vlad in cluster mode (2 instances) and a stopped fork
# process, trimmed to the fields that matter (the real output also carries the whole env).
JLIST = r"""
[
 {
  "pid": 13154,
  "name": "backend-vlad",
  "pm2_env": {
   "status": "online",
   "exec_mode": "cluster_mode",
   "instances": 2,
   "restart_time": 0,
   "unstable_restarts": 0,
   "pm_uptime": 1795897119699,
   "pm_id": 0,
   "name": "backend-vlad",
   "pm_cwd": "/srv/backend-vlad",
   "pm_exec_path": "/srv/backend-vlad/server.js",
   "wait_ready": true,
   "NODE_APP_INSTANCE": 0,
   "env": {
    "NODE_ENV": "production",
    "PM2_HOME": "/home/deploy/.pm2"
   }
  },
  "pm_id": 0,
  "monit": {
   "memory": 60911616,
   "cpu": 0
  }
 },
 {
  "pid": 13167,
  "name": "backend-vlad",
  "pm2_env": {
   "status": "online",
   "exec_mode": "cluster_mode",
   "instances": 2,
   "restart_time": 0,
   "unstable_restarts": 0,
   "pm_uptime": 1795897119987,
   "pm_id": 1,
   "name": "backend-vlad",
   "pm_cwd": "/srv/backend-vlad",
   "pm_exec_path": "/srv/backend-vlad/server.js",
   "wait_ready": true,
   "NODE_APP_INSTANCE": 1,
   "env": {
    "NODE_ENV": "production",
    "PM2_HOME": "/home/deploy/.pm2"
   }
  },
  "pm_id": 1,
  "monit": {
   "memory": 60506112,
   "cpu": 0
  }
 },
 {
  "pid": 0,
  "name": "mailer",
  "pm2_env": {
   "status": "stopped",
   "exec_mode": "fork_mode",
   "instances": 1,
   "restart_time": 0,
   "unstable_restarts": 1,
   "pm_uptime": 1795897120744,
   "pm_id": 2,
   "name": "mailer",
   "pm_cwd": "/srv/mailer",
   "pm_exec_path": "/srv/mailer/server.js",
   "wait_ready": true,
   "NODE_APP_INSTANCE": 0,
   "env": {
    "NODE_ENV": "production",
    "PM2_HOME": "/home/deploy/.pm2"
   }
  },
  "pm_id": 2,
  "monit": {
   "memory": 0,
   "cpu": 0
  }
 }
]
"""
NOW = 1795897119699 / 1000 + 90.5  # 90.5 s after instance 0 started

OUT_OF_DATE = (
    "\x1b[33m[PM2][WARN]\x1b[39m Current process list is not synchronized with saved list. []\n"
    ">>>> In-memory PM2 is out-of-date, do:\n>>>> $ pm2 update\n"
    "In memory PM2 version: 5.3.0\nLocal PM2 version: 6.0.14\n\n"
)


def test_parse_jlist_captured_output() -> None:
    procs = parse_jlist(JLIST, now=NOW)
    assert [(p.name, p.pm_id, p.status, p.mode) for p in procs] == [
        ("backend-vlad", 0, "online", "cluster"),
        ("backend-vlad", 1, "online", "cluster"),
        ("mailer", 2, "stopped", "fork"),
    ]
    first, _, stopped = procs
    assert (first.pid, first.instances, first.restarts) == (13154, 2, 0)
    assert first.memory_bytes == 60911616 and first.cpu_percent == 0.0
    assert first.uptime_s == pytest.approx(90.5)
    assert first.online and not stopped.online
    assert stopped.pid is None and stopped.uptime_s is None and stopped.memory_bytes == 0
    assert first.to_dict()["mode"] == "cluster"


def test_parse_jlist_skips_warnings_printed_before_the_json() -> None:
    procs = parse_jlist(OUT_OF_DATE + JLIST, now=NOW)
    assert [p.pm_id for p in procs] == [0, 1, 2]
    assert parse_jlist(OUT_OF_DATE + "[]\n") == []


def test_parse_jlist_rejects_output_without_a_process_list() -> None:
    with pytest.raises(Pm2Error, match="no JSON process list"):
        parse_jlist("[PM2][ERROR] Daemon not launched\n")
    with pytest.raises(Pm2Error):
        parse_jlist("")


def test_pm2_command_quotes_every_value() -> None:
    assert pm2_command(Target("t"), "jlist") == "pm2 jlist"
    target = Target("t", pm2_bin="/opt/node bin/pm2", pm2_home="/var/lib/pm2 home")
    assert pm2_command(target, "jlist") == (
        "PM2_HOME='/var/lib/pm2 home' '/opt/node bin/pm2' jlist"
    )
    tilde = Target("t", pm2_bin="~/.npm-global/bin/pm2", pm2_home="~/.pm2")
    assert pm2_command(tilde, "jlist") == (
        'PM2_HOME="$HOME"/.pm2 "$HOME"/.npm-global/bin/pm2 jlist'
    )
    evil = Target("t", pm2_home="$(touch /tmp/x); rm -rf /")
    assert pm2_command(evil, "ls").startswith("PM2_HOME='$(touch /tmp/x); rm -rf /' ")


@pytest.mark.parametrize("via", ["local", "ssh"])
async def test_pm2_status_of_the_sample_app_in_cluster_mode(
    via: str, request: pytest.FixtureRequest, pm2: Pm2, sample_app: SampleApp
) -> None:
    sshd: SshdServer | None = request.getfixturevalue("sshd") if via == "ssh" else None
    target = sample_app.target(sshd=sshd)
    async with open_transport(target) as transport:
        procs = await pm2_status(target, transport)
        everything = await pm2_list(target, transport)
    assert len(procs) == sample_app.instances
    assert {p.name for p in procs} == {sample_app.name}
    assert all(p.online and p.mode == "cluster" and p.memory_bytes > 0 for p in procs)
    real = {e["pm_id"]: e["pid"] for e in pm2.jlist() if e["name"] == sample_app.name}
    assert {p.pm_id: p.pid for p in procs} == real
    assert len(everything) >= len(procs)


async def test_pm2_status_of_an_unknown_app_is_empty(sample_app: SampleApp) -> None:
    target = sample_app.target(pm2_name="not-deployed-here")
    async with open_transport(target) as transport:
        assert await pm2_status(target, transport) == []


async def test_missing_pm2_binary_is_a_clear_error(tmp_path: Path, pm2: Pm2) -> None:
    target = Target("local", host="local", pm2_bin=str(tmp_path / "no-pm2"), pm2_home=str(pm2.home))
    async with open_transport(target) as transport:
        with pytest.raises(Pm2Error, match=r"pm2 jlist failed on local: .*no-pm2 not found"):
            await pm2_list(target, transport)


async def test_no_daemon_is_reported_and_none_is_spawned(tmp_path: Path, pm2: Pm2) -> None:
    home = tmp_path / "pm2-home"
    home.mkdir()
    target = Target("local", host="local", pm2_bin=str(pm2.bin), pm2_home=str(home))
    async with open_transport(target) as transport:
        with pytest.raises(Pm2Error, match=r"pm2 is not running on local \(no pm2 daemon in "):
            await pm2_list(target, transport)
    assert list(home.iterdir()) == []  # `pm2 jlist` would have started a daemon here
