"""LocalTransport specifics (the behaviour shared with SSH is in test_transport_ssh.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vlad_tui.config import Target
from vlad_tui.errors import CommandFailed, TransportError
from vlad_tui.transport import (
    Endpoint,
    LocalTransport,
    SshTransport,
    open_transport,
    with_secrets,
)


@pytest.fixture
async def local() -> AsyncIterator[LocalTransport]:
    t = LocalTransport(kill_grace=0.5)
    yield t
    await t.close()


async def test_open_transport_picks_local_or_ssh_without_connecting() -> None:
    local = open_transport(Target(name="here"))
    assert isinstance(local, LocalTransport)
    assert local.label.endswith("(local)")
    remote = open_transport(Target(name="prod", host="prod.invalid", user="deploy", port=2222))
    assert isinstance(remote, SshTransport)
    assert remote.label == "deploy@prod.invalid:2222"
    await remote.close()  # never connected: nothing to do, no error


async def test_forward_is_the_address_itself(local: LocalTransport) -> None:
    assert await local.forward("127.0.0.1", 5432) == Endpoint("127.0.0.1", 5432)


async def test_a_command_killed_by_a_signal_reports_it(local: LocalTransport) -> None:
    result = await local.run("kill -s KILL $$")
    assert result.exit_status is None and result.signal == "SIGKILL" and not result.ok
    with pytest.raises(CommandFailed, match="signal SIGKILL"):
        await local.run("kill -s KILL $$", check=True)


async def test_the_command_gets_its_own_session(local: LocalTransport) -> None:
    result = await local.run("ps -o pid= -o pgid= -o sid= -p $$")
    pid, pgid, sid = result.stdout.split()
    assert pid == pgid == sid
    assert int(sid) != os.getsid(0)


async def test_file_errors_are_one_line_transport_errors(
    local: LocalTransport, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(TransportError, match=f"cannot read {missing}: No such file"):
        await local.read_file(str(missing))
    with pytest.raises(TransportError, match="cannot list"):
        await local.listdir(str(missing))
    with pytest.raises(TransportError, match="cannot write"):
        await local.write_file(str(missing / "x"), b"")


async def test_detached_jobs_refuse_a_planted_symlink(
    local: LocalTransport, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "vlad-tui-jobs").symlink_to(elsewhere)
    with pytest.raises(TransportError, match="not a private directory"):
        await local.start_detached("echo hi", job_root=str(tmp_path))
    assert list(elsewhere.iterdir()) == []


async def test_secrets_in_a_detached_job_stay_off_disk(
    local: LocalTransport, tmp_path: Path
) -> None:
    command, stdin = with_secrets('[ -n "$PW" ] && echo has-secret', {"PW": "canary-disk-5e1d"})
    job = await local.start_detached(command, stdin=stdin, job_root=str(tmp_path))
    assert await local.attach(job, poll=0.02, timeout=20) == 0
    for path in Path(job.job_dir).iterdir():
        assert b"canary-disk-5e1d" not in path.read_bytes()
    assert Path(job.job_dir, "log").read_text() == "has-secret\n"
