"""``~/.ssh/config`` is honoured: a ``Host`` alias of the loopback sshd, real OpenSSH server.

The target names only the alias (and, for the test, ``ssh_config`` instead of ``~/.ssh/config``):
HostName, Port, User, IdentityFile, UserKnownHostsFile and ProxyJump all come from the file,
and the host key is still verified, against the file's known_hosts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.errors import HostKeyUnknown, TransportError, Unreachable
from vlad_tui.transport import CommandResult, SshTransport

pytestmark = pytest.mark.integration


def _host(alias: str, sshd: SshdServer, known_hosts: Path, *extra: str) -> str:
    lines = [
        f"Host {alias}",
        "    HostName 127.0.0.1",
        f"    Port {sshd.port}",
        f"    User {sshd.user}",
        f"    IdentityFile {sshd.identity_file}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {known_hosts}",
        *(f"    {line}" for line in extra),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def ssh_config(sshd: SshdServer, tmp_path: Path) -> Path:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    path = tmp_path / "ssh_config"
    path.write_text(
        _host("vlad-prod", sshd, sshd.known_hosts)
        + _host("vlad-stranger", sshd, empty)
        + _host("vlad-jumped", sshd, sshd.known_hosts, "ProxyJump vlad-prod")
    )
    path.chmod(0o600)
    return path


@pytest.fixture
async def opened() -> AsyncIterator[list[SshTransport]]:
    transports: list[SshTransport] = []
    yield transports
    for transport in transports:
        await transport.close()


def _target(alias: str, ssh_config: Path) -> Target:
    return Target(name="production", host=alias, ssh_config=ssh_config, connect_timeout=5.0)


async def test_a_host_alias_supplies_hostname_port_user_and_key(
    sshd: SshdServer, ssh_config: Path, opened: list[SshTransport]
) -> None:
    target = _target("vlad-prod", ssh_config)
    assert (target.port, target.user, target.identity_file, target.known_hosts) == (None,) * 4
    transport = SshTransport(target)
    opened.append(transport)
    assert transport.label == "vlad-prod"
    result = await transport.run("id -un; echo $SSH_CONNECTION", check=True)
    user, connection = result.stdout.splitlines()
    assert user == sshd.user
    assert connection.split()[2:] == ["127.0.0.1", str(sshd.port)]  # server address and port


async def test_the_alias_host_key_is_verified_against_its_known_hosts(
    sshd: SshdServer, ssh_config: Path, opened: list[SshTransport]
) -> None:
    transport = SshTransport(_target("vlad-stranger", ssh_config))
    opened.append(transport)
    with pytest.raises(HostKeyUnknown) as info:
        await transport.connect()
    message = str(info.value)
    assert message.startswith(f"vlad-stranger (127.0.0.1:{sshd.port}): unknown host key ")
    assert sshd.host_fingerprint in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> " in message
    assert "empty_known_hosts" in message


async def test_proxyjump_from_the_config_is_followed(
    sshd: SshdServer, ssh_config: Path, opened: list[SshTransport]
) -> None:
    direct = SshTransport(_target("vlad-prod", ssh_config))
    jumped = SshTransport(_target("vlad-jumped", ssh_config))
    opened += [direct, jumped]
    assert _client_is_this_process(await direct.run("echo $SSH_CONNECTION", check=True))
    # Through the jump host, the TCP client of the final session is the jump host's sshd.
    assert not _client_is_this_process(await jumped.run("echo $SSH_CONNECTION", check=True))


def _client_is_this_process(result: CommandResult) -> bool:
    """Whether the session's TCP client end (``$SSH_CONNECTION``) is a socket of ours."""
    _, client_port, _, server_port = result.stdout.split()
    wanted = f":{int(client_port):04X}"
    remote = f":{int(server_port):04X}"
    ours = {
        link[len("socket:[") : -1]
        for fd in os.listdir("/proc/self/fd")
        if (link := _readlink(f"/proc/self/fd/{fd}")).startswith("socket:[")
    }
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[2].endswith(remote):
                return fields[9] in ours
    raise AssertionError(f"no TCP connection from port {client_port} to {server_port}")


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


async def test_a_target_port_overrides_the_config(
    sshd: SshdServer, ssh_config: Path, opened: list[SshTransport]
) -> None:
    transport = SshTransport(replace(_target("vlad-prod", ssh_config), port=1))
    opened.append(transport)
    assert transport.label == "vlad-prod:1"
    with pytest.raises(Unreachable, match=r"vlad-prod \(127\.0\.0\.1:1\): connection refused"):
        await transport.connect()


async def test_a_missing_ssh_config_is_one_clear_line(tmp_path: Path) -> None:
    transport = SshTransport(_target("vlad-prod", tmp_path / "no-such-config"))
    with pytest.raises(TransportError, match=r"^vlad-prod: cannot load SSH settings: .*no-such"):
        await transport.connect()
