"""Transports against real parts: OpenSSH sshd on 127.0.0.1 and local processes.

The behaviour tests at the top run against both transports (``transport`` is parametrized
``local``/``ssh``); the SSH-only ones (dropped connections, host keys, authentication,
unreachable hosts) follow. The sshd runs on this machine, so "remote" paths are local too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    HostKeyChanged,
    HostKeyUnknown,
    TransportError,
    Unreachable,
)
from vlad_tui.events import OutputLine
from vlad_tui.transport import LocalTransport, SshTransport, Transport, quote, with_secrets

pytestmark = pytest.mark.integration

GRACE = 0.5


@pytest.fixture(params=["local", "ssh"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    if request.param == "local":
        t: Transport = LocalTransport(kill_grace=GRACE)
    else:
        server: SshdServer = request.getfixturevalue("sshd")
        t = SshTransport(server.target(), kill_grace=GRACE)
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
async def ssh(sshd: SshdServer) -> AsyncIterator[SshTransport]:
    t = SshTransport(sshd.target(), kill_grace=GRACE)
    try:
        yield t
    finally:
        await t.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def process_gone(t: Transport, pid: int) -> bool:
    """No such process on the target, or only its zombie (dead, awaiting its reaper)."""
    result = await t.run(f"ps -o stat= -p {pid}")
    return not result.ok or result.stdout.strip().startswith("Z")


async def read_pids(t: Transport, path: Path) -> list[int]:
    async def written() -> bool:
        st = await t.stat(str(path))
        return st is not None and st.size > 0 and (await t.read_file(str(path))).endswith(b"\n")

    assert await eventually(written), "the command never wrote its pids"
    return [int(p) for p in (await t.read_file(str(path))).split()]


# -- commands ----------------------------------------------------------------------------


async def test_run_streams_tagged_lines_in_order(transport: Transport) -> None:
    lines: list[OutputLine] = []
    result = await transport.run(
        "for i in 1 2 3; do echo out-$i; echo err-$i >&2; done; printf 'no newline'",
        sink=lines.append,
    )
    assert result.exit_status == 0 and result.ok and result.signal is None
    stdout = [line.text for line in lines if line.stream == "stdout"]
    stderr = [line.text for line in lines if line.stream == "stderr"]
    assert stdout == ["out-1", "out-2", "out-3", "no newline"]
    assert stderr == ["err-1", "err-2", "err-3"]
    assert result.stdout == "out-1\nout-2\nout-3\nno newline\n"
    assert result.stderr == "err-1\nerr-2\nerr-3\n"
    assert all(line.ts > 0 for line in lines)


@pytest.mark.parametrize("status", [0, 1, 42])
async def test_run_reports_the_exit_status(transport: Transport, status: int) -> None:
    result = await transport.run(f"echo before; exit {status}")
    assert result.exit_status == status
    assert result.ok is (status == 0)
    assert result.duration > 0


async def test_run_check_raises_a_one_line_error(transport: Transport) -> None:
    with pytest.raises(CommandFailed) as info:
        await transport.run("echo 'boom: disk full' >&2; exit 3", check=True)
    assert info.value.exit_status == 3
    assert "\n" not in str(info.value)
    assert "exit status 3" in str(info.value) and "boom: disk full" in str(info.value)


async def test_stdin_reaches_the_command(transport: Transport) -> None:
    result = await transport.run("tr a-z A-Z", stdin="hello\nworld\n")
    assert result.stdout == "HELLO\nWORLD\n"
    big = "x" * (1024 * 1024)
    result = await transport.run("wc -c", stdin=big)
    assert int(result.stdout) == len(big)
    result = await transport.run("cat; echo end")  # no stdin: end-of-file at once
    assert result.stdout == "end\n"
    # A command that exits without reading a big stdin neither hangs nor fails.
    result = await transport.run("exit 0", stdin="y" * (8 * 1024 * 1024), timeout=20)
    assert result.ok


async def test_secret_is_usable_but_never_in_argv_or_output(
    transport: Transport, tmp_path: Path
) -> None:
    canary = "canary-" + secrets.token_hex(8)
    probe = "vlad-probe-" + secrets.token_hex(4)
    flag = tmp_path / "go"
    command, stdin = with_secrets(
        f': {probe}; printf %s "$VLAD_CANARY" | sha256sum; '
        f"i=0; while [ ! -e {quote(str(flag))} ] && [ $i -lt 200 ]; "
        "do sleep 0.05; i=$((i+1)); done",
        {"VLAD_CANARY": canary},
    )
    assert canary not in command
    task = asyncio.create_task(transport.run(command, stdin=stdin))

    async def probe_running() -> bool:
        # base64 so the redactor cannot hide the canary from this check
        listing = await transport.run("ps -eo args | base64 -w0")
        text = base64.b64decode(listing.stdout).decode(errors="replace")
        assert canary not in text
        return probe in text

    try:
        assert await eventually(probe_running), "the command never showed up in ps"
    finally:
        flag.touch()
    result = await task
    assert result.ok
    assert result.stdout.split()[0] == hashlib.sha256(canary.encode()).hexdigest()
    assert canary not in result.stdout + result.stderr


async def test_a_printed_secret_is_redacted(transport: Transport) -> None:
    canary = "canary-" + secrets.token_hex(8)
    command, stdin = with_secrets('echo "pw=$S"; echo "$S" >&2', {"S": canary})
    lines: list[OutputLine] = []
    result = await transport.run(command, stdin=stdin, sink=lines.append)
    assert result.stdout == "pw=***\n" and result.stderr == "***\n"
    assert all(canary not in line.text for line in lines)


async def test_timeout_stops_the_whole_process_group(transport: Transport, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="timed out after 1s"):
        await transport.run(f"sleep 300 & echo $$ $! > {quote(str(pids))}; wait", timeout=1)
    assert time.monotonic() - started < 1 + GRACE + 5
    shell, child = await read_pids(transport, pids)
    assert await eventually(lambda: process_gone(transport, shell))
    assert await eventually(lambda: process_gone(transport, child))


async def test_timeout_kills_a_command_that_ignores_sigterm(
    transport: Transport, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    command = f"trap '' TERM; echo $$ > {quote(str(pids))}; while :; do sleep 0.1; done"
    with pytest.raises(CommandTimeout):
        await transport.run(command, timeout=1)
    (shell,) = await read_pids(transport, pids)
    assert await eventually(lambda: process_gone(transport, shell))


async def test_cancelling_run_kills_the_process(transport: Transport, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    task = asyncio.create_task(transport.run(f"sleep 300 & echo $$ $! > {quote(str(pids))}; wait"))
    shell, child = await read_pids(transport, pids)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await eventually(lambda: process_gone(transport, shell))
    assert await eventually(lambda: process_gone(transport, child))


# -- files and ports ---------------------------------------------------------------------


async def test_file_round_trip(transport: Transport, tmp_path: Path) -> None:
    path = tmp_path / "secret.env"
    path.write_text("old")
    path.chmod(0o644)
    data = b"DATABASE_URL=postgres://x\n\x00\xff binary ok\n"
    await transport.write_file(str(path), data, mode=0o600)
    assert await transport.read_file(str(path)) == data
    st = await transport.stat(str(path))
    assert st is not None
    assert st.size == len(data) and st.mode == 0o600 and not st.is_dir
    assert abs(st.mtime - time.time()) < 60
    await transport.write_file(str(tmp_path / "script.sh"), b"#!/bin/sh\n", mode=0o750)
    assert (tmp_path / "script.sh").stat().st_mode & 0o777 == 0o750
    (tmp_path / "sub").mkdir()
    assert await transport.listdir(str(tmp_path)) == ["script.sh", "secret.env", "sub"]
    sub = await transport.stat(str(tmp_path / "sub"))
    assert sub is not None and sub.is_dir
    assert await transport.stat(str(tmp_path / "missing")) is None


async def test_download_streams_a_large_file_with_progress(
    transport: Transport, tmp_path: Path
) -> None:
    source = tmp_path / "backup.dump"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(payload)
    target = tmp_path / "copy" / "backup.dump"
    target.parent.mkdir()
    seen: list[tuple[int, int]] = []
    await transport.download(str(source), target, progress=lambda d, t: seen.append((d, t)))
    assert target.read_bytes() == payload
    assert target.stat().st_mode & 0o777 == 0o600
    assert seen and seen[-1] == (len(payload), len(payload))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(TransportError):
        await transport.download(str(tmp_path / "missing"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


async def test_forward_reaches_a_tcp_server_on_the_target(transport: Transport) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        endpoint = await transport.forward("127.0.0.1", port)
        assert await transport.forward("127.0.0.1", port) == endpoint  # cached
        for _ in range(2):
            reader, writer = await endpoint.open_connection()
            writer.write(b"ping\n")
            await writer.drain()
            assert await reader.read() == b"echo:ping\n"
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


# -- detached jobs -----------------------------------------------------------------------


async def test_detached_job_streams_its_log_and_exit_status(
    transport: Transport, tmp_path: Path
) -> None:
    canary = "canary-" + secrets.token_hex(8)
    command, stdin = with_secrets(
        'echo start; printf %s "$TOKEN" | sha256sum; cat; echo err >&2; exit 4', {"TOKEN": canary}
    )
    job = await transport.start_detached(command, stdin=stdin, job_root=str(tmp_path))
    job_dir = Path(job.job_dir)
    assert job_dir.parent == tmp_path / "vlad-tui-jobs"
    assert job_dir.stat().st_mode & 0o777 == 0o700
    lines: list[OutputLine] = []
    status = await transport.attach(job, sink=lines.append, poll=0.05, timeout=20)
    assert status == 4
    texts = [line.text for line in lines]
    assert texts == ["start", f"{hashlib.sha256(canary.encode()).hexdigest()}  -", "err"]
    assert job.offset == (job_dir / "log").stat().st_size
    assert sorted(os.listdir(job_dir)) == ["log", "pid", "status"]  # the FIFO is gone
    assert canary not in (job_dir / "log").read_text()


async def test_reattaching_continues_without_repeating(
    transport: Transport, tmp_path: Path
) -> None:
    job = await transport.start_detached(
        "for i in $(seq 1 12); do echo line-$i; sleep 0.05; done; exit 0", job_root=str(tmp_path)
    )
    first: list[OutputLine] = []
    with pytest.raises(CommandTimeout, match="left running"):
        await transport.attach(job, sink=first.append, poll=0.05, timeout=0.25)
    assert 0 < job.offset < 100
    rest: list[OutputLine] = []
    assert await transport.attach(job, sink=rest.append, poll=0.05, timeout=20) == 0
    assert [line.text for line in first + rest] == [f"line-{i}" for i in range(1, 13)]


async def test_a_job_killed_before_writing_its_status_is_reported(
    transport: Transport, tmp_path: Path
) -> None:
    job = await transport.start_detached("echo up; sleep 300", job_root=str(tmp_path))
    pid = int(await transport.read_file(f"{job.job_dir}/pid"))
    lines: list[OutputLine] = []
    attach = asyncio.create_task(transport.attach(job, sink=lines.append, poll=0.02, timeout=20))
    assert await eventually(lambda: _true(bool(lines)))
    await transport.run(f"kill -s KILL -- -{pid}", check=True)
    with pytest.raises(TransportError, match="ended without an exit status"):
        await attach
    assert [line.text for line in lines] == ["up"]


async def _true(value: bool) -> bool:
    return value


# -- SSH only ----------------------------------------------------------------------------


async def test_ssh_reuses_one_connection(ssh: SshTransport, sshd: SshdServer) -> None:
    await ssh.run("true")
    sessions = set(sshd.session_pids())
    await ssh.run("true")
    await ssh.stat("/")
    assert await ssh.read_file(str(sshd.known_hosts)) == sshd.known_hosts.read_bytes()
    assert set(sshd.session_pids()) == sessions
    assert ssh.label == f"{sshd.user}@127.0.0.1:{sshd.port}"


async def test_concurrent_first_calls_share_one_connection(sshd: SshdServer) -> None:
    before = set(sshd.session_pids())
    t = SshTransport(sshd.target())
    try:
        results = await asyncio.gather(*(t.run(f"echo {i}") for i in range(8)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
        assert len(set(sshd.session_pids()) - before) == 1
    finally:
        await t.close()


@pytest.mark.fault(
    "The SSH connection dropped between two commands",
    did="Opened a new connection for the next command and carried on",
    lost=0,
    area="connection",
)
async def test_ssh_reconnects_after_the_connection_dropped(
    ssh: SshTransport, sshd: SshdServer
) -> None:
    assert (await ssh.run("echo one")).stdout == "one\n"
    assert sshd.drop_connections() >= 1
    assert (await ssh.run("echo two")).stdout == "two\n"
    sshd.drop_connections()
    assert await ssh.stat("/") is not None


async def test_a_channel_refused_by_a_connection_just_lost_reconnects(
    ssh: SshTransport, sshd: SshdServer
) -> None:
    # asyncssh drops the socket at once and marks the connection closed a loop turn later; a
    # command sent in between is refused with the code other failures share. It must read as
    # a lost connection (reconnect), not as a failure of the command.
    assert (await ssh.run("echo one")).stdout == "one\n"
    conn = ssh._conn
    assert conn is not None
    conn.abort()
    assert not conn.is_closed()  # the window this test is about
    assert (await ssh.run("echo two")).stdout == "two\n"
    assert ssh._conn is not conn


async def test_ssh_connection_lost_mid_command(ssh: SshTransport, sshd: SshdServer) -> None:
    lines: list[OutputLine] = []
    task = asyncio.create_task(ssh.run("echo started $$; sleep 30", sink=lines.append))
    assert await eventually(lambda: _true(bool(lines)))
    sshd.drop_connections()
    with pytest.raises(ConnectionLost, match="connection lost while running `echo started"):
        await task
    assert (await ssh.run("echo back")).stdout == "back\n"
    # Without a connection nobody could stop it: it is still running (hence detached jobs).
    pid = int(lines[0].text.split()[1])
    assert not await process_gone(ssh, pid)
    await ssh.run(f"kill -s KILL -- -$(ps -o pgid= -p {pid} | tr -d ' ')", check=True)
    assert await eventually(lambda: process_gone(ssh, pid))


@pytest.mark.fault(
    "The SSH connection dropped while a detached command ran on the server",
    did="The command kept running; after reconnecting vlad-tui re-attached and read the rest of "
    "its output, every line once, and its real exit status",
    lost=0,
    area="connection",
)
async def test_detached_job_survives_a_dropped_connection(
    ssh: SshTransport, sshd: SshdServer, tmp_path: Path
) -> None:
    job = await ssh.start_detached(
        "for i in $(seq 1 30); do echo line-$i; sleep 0.05; done; exit 7", job_root=str(tmp_path)
    )
    seen: list[OutputLine] = []
    with pytest.raises(CommandTimeout):
        await ssh.attach(job, sink=seen.append, poll=0.05, timeout=0.4)
    assert seen, "no lines before the drop"
    assert sshd.drop_connections() >= 1
    await ssh.run("true")  # reconnects
    assert await ssh.attach(job, sink=seen.append, poll=0.05, timeout=20) == 7
    assert [line.text for line in seen] == [f"line-{i}" for i in range(1, 31)]


async def test_attach_rides_over_a_drop(
    ssh: SshTransport, sshd: SshdServer, tmp_path: Path
) -> None:
    job = await ssh.start_detached(
        "for i in $(seq 1 30); do echo line-$i; sleep 0.05; done", job_root=str(tmp_path)
    )
    seen: list[OutputLine] = []

    def sink(line: OutputLine) -> None:
        seen.append(line)
        if line.text == "line-5":
            sshd.drop_connections()

    assert await ssh.attach(job, sink=sink, poll=0.05, timeout=20) == 0
    assert [line.text for line in seen] == [f"line-{i}" for i in range(1, 31)]


async def test_forward_is_restored_after_a_reconnect(ssh: SshTransport, sshd: SshdServer) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        endpoint = await ssh.forward("127.0.0.1", port)
        assert endpoint.path is not None and endpoint.path.endswith(f"/.s.PGSQL.{port}")
        sshd.drop_connections()
        await ssh.run("true")
        again = await ssh.forward("127.0.0.1", port)
        assert again == endpoint  # the same socket path
        reader, writer = await again.open_connection()
        assert await reader.read() == b"hi\n"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_unknown_host_key_shows_the_fingerprint(sshd: SshdServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    for known_hosts in (empty, tmp_path / "does-not-exist"):
        t = SshTransport(sshd.target(known_hosts=known_hosts))
        with pytest.raises(HostKeyUnknown) as info:
            await t.run("true")
        message = str(info.value)
        assert sshd.host_fingerprint.startswith("SHA256:")
        assert sshd.host_fingerprint in message
        assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known_hosts}" in message
        assert "\n" not in message
        await t.close()


async def test_default_known_hosts_is_used_and_never_disabled(
    sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # Even a user config that turns checking off does not make us trust an unknown key.
    (home / ".ssh" / "config").write_text("Host *\n  UserKnownHostsFile none\n")
    monkeypatch.setenv("HOME", str(home))
    t = SshTransport(sshd.target(known_hosts=None))
    with pytest.raises(HostKeyUnknown, match=re.escape(sshd.host_fingerprint)):
        await t.connect()
    (home / ".ssh" / "config").unlink()
    (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts.read_text())
    assert (await t.run("echo ok")).stdout == "ok\n"
    await t.close()


@pytest.mark.fault(
    "The server's host key changed (known_hosts holds another key)",
    did="Refused to connect, said the key CHANGED and showed the fingerprint the server offered; "
    "nothing ran on the server",
    lost=0,
    area="host keys",
)
async def test_changed_host_key_is_refused(sshd: SshdServer, tmp_path: Path) -> None:
    other = sshd.make_key(f"other_host_{secrets.token_hex(3)}")
    public = Path(f"{other}.pub").read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {public[0]} {public[1]}\n")
    t = SshTransport(sshd.target(known_hosts=known_hosts))
    with pytest.raises(HostKeyChanged) as info:
        await t.connect()
    assert sshd.host_fingerprint in str(info.value)
    assert "CHANGED" in str(info.value)
    await t.close()


async def test_wrong_key_is_an_authentication_failure(sshd: SshdServer) -> None:
    wrong = sshd.make_key(f"wrong_user_{secrets.token_hex(3)}")
    t = SshTransport(sshd.target(identity_file=wrong))
    with pytest.raises(AuthenticationFailed, match="authentication failed") as info:
        await t.run("true")
    assert f"{sshd.user}@127.0.0.1:{sshd.port}" in str(info.value)
    await t.close()


async def test_closed_port_is_unreachable(sshd: SshdServer) -> None:
    port = free_port()
    t = SshTransport(sshd.target(port=port))
    with pytest.raises(Unreachable, match=f"127.0.0.1:{port}: connection refused"):
        await t.run("true")
    await t.close()


async def test_unresolvable_host_is_unreachable(sshd: SshdServer) -> None:
    t = SshTransport(sshd.target(host="no-such-host.invalid"))
    with pytest.raises(Unreachable, match=r"no-such-host\.invalid:.*cannot resolve"):
        await t.connect()
    await t.close()


async def test_a_silent_server_is_a_connect_timeout(sshd: SshdServer) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never says a word of SSH

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t = SshTransport(sshd.target(port=port, connect_timeout=0.5))
    try:
        started = time.monotonic()
        with pytest.raises(Unreachable, match=f"127.0.0.1:{port}: no SSH answer within 0.5s"):
            await t.connect()
        assert time.monotonic() - started < 5
    finally:
        await t.close()
        server.close()
        await server.wait_closed()
