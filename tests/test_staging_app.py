"""The staging instance and the app's commands under real pm2, over a real SSH connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.rig.pm2 import SampleApp
from tests.rig.postgres import PgServer
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import parse_database_url, staging_url
from vlad_tui.events import OutputLine
from vlad_tui.ops import staging_app
from vlad_tui.ops.pm2 import pm2_list, pm2_status
from vlad_tui.transport import SshTransport

pytestmark = pytest.mark.integration


@pytest.fixture
async def ssh(
    sshd: SshdServer, sample_app: SampleApp
) -> AsyncIterator[tuple[Target, SshTransport]]:
    target = sample_app.target(
        "production",
        sshd=sshd,
        staging_pm2_name="backend-vlad-test-stg",
        staging_port=free_port(),
        start_command="server.js",
    )
    transport = SshTransport(target)
    try:
        yield target, transport
    finally:
        await staging_app.stop_staging(target, transport)
        await transport.close()


def _proc_file(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b"\n").decode()


async def test_staging_instance_starts_and_stops_beside_production(
    ssh: tuple[Target, SshTransport], sample_app: SampleApp, pg: PgServer
) -> None:
    target, transport = ssh
    production = await pm2_status(target, transport)
    assert len(production) == sample_app.instances and all(p.online for p in production)
    url = staging_url(target, parse_database_url(sample_app.database_url))
    lines: list[OutputLine] = []

    health = await staging_app.start_staging(target, transport, url, sink=lines.append)

    assert health.ok and health.url == f"http://127.0.0.1:{target.staging_port}/health"
    procs = await staging_app.staging_processes(target, transport)
    assert [(p.name, p.status, p.mode) for p in procs] == [
        ("backend-vlad-test-stg", "online", "cluster")
    ]
    pid = procs[0].pid
    assert pid is not None
    # PORT and the staging DATABASE_URL are in its environment (pm2 hands a cluster worker
    # its environment as JSON in ``pm2_env``); the password is in no argv.
    environ = _proc_file(pid, "environ").splitlines()
    pm2_env = json.loads(next(e for e in environ if e.startswith("pm2_env="))[len("pm2_env=") :])
    assert pm2_env["env"]["PORT"] == str(target.staging_port)
    assert pm2_env["env"]["DATABASE_URL"] == url.to_url()
    assert pm2_env["pm_cwd"] == str(sample_app.app_dir)
    assert pg.password not in _proc_file(pid, "cmdline")
    assert quote(pg.password, safe="") not in _proc_file(pid, "cmdline")
    shown = "\n".join(line.text for line in lines)
    assert "peludosclick_staging" in shown and pg.password not in shown
    assert "delete" in shown and "--name backend-vlad-test-stg -i 1 --update-env" in shown

    # Production is untouched: same processes, still online.
    after = await pm2_status(target, transport)
    assert [(p.pm_id, p.pid, p.status) for p in after] == [
        (p.pm_id, p.pid, "online") for p in production
    ]

    # Starting again replaces the instance instead of failing with "already launched".
    await staging_app.start_staging(target, transport, url)
    assert len(await staging_app.staging_processes(target, transport)) == 1

    assert await staging_app.stop_staging(target, transport, sink=lines.append) is True
    names = [p.name for p in await pm2_list(target, transport)]
    assert "backend-vlad-test-stg" not in names and names.count(sample_app.name) == 2
    # Stopping what is not running is not an error.
    assert await staging_app.stop_staging(target, transport, sink=lines.append) is False
    assert lines[-1].text == "no staging instance backend-vlad-test-stg in pm2: nothing to stop"


async def test_an_instance_that_crashes_fails_fast_with_its_error_log(
    ssh: tuple[Target, SshTransport], sample_app: SampleApp, tmp_path: Path
) -> None:
    target, transport = ssh
    crash = tmp_path / "crash.js"
    # Like a NestJS app that cannot reach its database: logs the error, exits at boot.
    crash.write_text(
        "console.error('boom: cannot reach the database');\n"
        "setTimeout(() => process.exit(1), 100);\n"
    )
    broken = replace(target, start_command=str(crash))
    url = parse_database_url(sample_app.database_url).with_database("peludosclick_staging")
    lines: list[OutputLine] = []
    with pytest.raises(staging_app.StagingError) as info:
        await staging_app.start_staging(
            broken, transport, url, sink=lines.append, health_timeout=30
        )
    message = str(info.value)
    assert message.startswith("the staging instance backend-vlad-test-stg ")
    # pm2 shows a process that exits at boot as errored, stopped (between restarts) or
    # restarting; each ends the wait at once.
    assert any(word in message for word in ("crashing", "errored", "stopped")), message
    assert any("boom: cannot reach the database" in line.text for line in lines)
    # pm2 alone fails too (a script that does not exist): its error, at once.
    with pytest.raises(staging_app.StagingError, match="pm2"):
        await staging_app.start_staging(
            replace(target, start_command="no-such-script.js"), transport, url
        )


async def test_run_in_app_gets_database_url_through_stdin(
    ssh: tuple[Target, SshTransport], sample_app: SampleApp, pg: PgServer
) -> None:
    target, transport = ssh
    url = parse_database_url(sample_app.database_url).with_database("peludosclick_staging")
    script = (
        'node -e "const u=new URL(process.env.DATABASE_URL);'
        'console.log(process.cwd(), u.pathname, u.password.length > 0)"'
    )
    lines: list[OutputLine] = []
    result = await staging_app.run_in_app(target, transport, script, url, sink=lines.append)
    assert result.ok, result.stderr
    assert result.stdout.strip() == f"{sample_app.app_dir} /peludosclick_staging true"
    assert lines[0].text.startswith(f"$ cd {sample_app.app_dir} && node -e")
    assert pg.password not in "".join(line.text for line in lines)

    failing = Target(
        **{**target.__dict__, "build_command": "echo compiling; echo boom >&2; exit 3"}
    )
    with pytest.raises(staging_app.StagingError) as info:
        await staging_app.run_configured("build", failing, transport, url)
    assert str(info.value) == (
        "build `echo compiling; echo boom >&2; exit 3` failed (exit status 3): boom"
    )


def test_staging_names_and_ports_never_production() -> None:
    target = Target("p", pm2_name="app", staging_pm2_name="app")
    with pytest.raises(staging_app.StagingError, match="production"):
        staging_app.stop_command(target)
    same_port = Target("p", health_url="http://127.0.0.1:4000/health", staging_port=4000)
    with pytest.raises(staging_app.StagingError, match="production's traffic"):
        staging_app.start_command(same_port)
    assert staging_app.staging_health_url(Target("p", staging_port=4001)) == (
        "http://127.0.0.1:4001/health"
    )
    assert staging_app.staging_base_url(Target("p")) == "http://127.0.0.1:3336"
    command = staging_app.start_command(
        Target("p", app_dir="/srv/a b", start_command="x.js -- --v")
    )
    assert command.startswith("cd '/srv/a b' || exit 1; PORT=3336; export PORT; ")
    assert command.endswith("pm2 start x.js --name backend-vlad-staging -i 1 --update-env -- --v")
