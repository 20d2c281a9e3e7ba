"""Private tunnels: another local user cannot reach production's database through vlad-tui.

Real sshd on loopback, real PostgreSQL, and a real second user (``nobody``, via ``runuser``):
while a transport holds a database forward, ``psql`` run as that user fails on the tunnel's
socket with "Permission denied", although the same user reaches a TCP port on loopback (which
is what the tunnel used to be); vlad-tui itself queries through it; no TCP listener appears.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer
from tests.rig.services import missing
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import Database, parse_database_url
from vlad_tui.transport import LocalTransport, SshTransport

pytestmark = pytest.mark.integration

OTHER_USER = "nobody"


def _listening_tcp_inodes() -> set[str]:
    """Inodes of TCP sockets in LISTEN state (``/proc/net/tcp{,6}``, state ``0A``)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def _own_socket_inodes() -> set[str]:
    """Inodes of the sockets this process holds (other developers' listeners do not count)."""
    found: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(link[len("socket:[") : -1])
    return found


def _own_tcp_listeners() -> set[str]:
    return _listening_tcp_inodes() & _own_socket_inodes()


async def _psql_as(user: str, psql: Path, conninfo: str, password: str) -> tuple[int, str]:
    """Run ``psql -c 'select 1'`` as ``user``; the password goes through the environment."""
    runuser = shutil.which("runuser")
    assert runuser is not None
    proc = await asyncio.create_subprocess_exec(
        runuser,
        "-u",
        user,
        "--",
        str(psql),
        "-X",
        "-w",
        "-tA",
        "-c",
        "select 1",
        conninfo,
        env={"PATH": "/usr/bin:/bin", "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd="/",
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture
def other_user() -> str:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        missing(f"a second local user ({OTHER_USER})", "run the tests as root, with runuser")
    return OTHER_USER


async def test_another_user_cannot_reach_the_database_through_a_running_tunnel(
    sshd: SshdServer, pg: PgServer, other_user: str
) -> None:
    psql = pg.bin_dir / "psql"
    url = parse_database_url(pg.url("postgres"))
    # The control: the other user can reach a database on a loopback TCP port, as it could
    # reach the loopback forward vlad-tui used to open.
    direct = f"host=127.0.0.1 port={pg.port} user={pg.user} dbname=postgres"
    code, out = await _psql_as(other_user, psql, direct, pg.password)
    assert (code, out.strip()) == (0, "1"), out

    listeners_before = _own_tcp_listeners()
    transport = SshTransport(sshd.target("production"))
    try:
        async with Database(sshd.target("production"), transport, url) as db:
            assert (await db.ping()).startswith("PostgreSQL")
            endpoint = await transport.forward(url.host, url.port)
            assert endpoint.path is not None
            socket_dir = Path(endpoint.path).parent
            private = socket_dir.parent
            for d in (socket_dir, private):
                st = d.stat()
                assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
            assert _own_tcp_listeners() == listeners_before  # nothing new listens on TCP

            through = f"host={socket_dir} port={url.port} user={pg.user} dbname=postgres"
            code, out = await _psql_as(other_user, psql, through, pg.password)
            assert code != 0
            assert "Permission denied" in out, out
            assert await db.connection.fetchval("select 1") == 1  # vlad-tui itself still can
    finally:
        await transport.close()
    assert not private.exists()  # the socket directory went with the transport


async def test_a_local_target_connects_directly_and_opens_no_listener(pg: PgServer) -> None:
    url = parse_database_url(pg.url("postgres"))
    listeners_before = _own_tcp_listeners()
    async with LocalTransport() as transport:
        endpoint = await transport.forward(url.host, url.port)
        assert (endpoint.host, endpoint.port, endpoint.path) == (url.host, url.port, None)
        async with Database(Target(name="local"), transport, url) as db:
            assert (await db.ping()).startswith("PostgreSQL")
            assert _own_tcp_listeners() == listeners_before
