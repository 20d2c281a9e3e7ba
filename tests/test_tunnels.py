"""Private tunnels: another local user cannot reach production's database through vlad-tui.

Real sshd on loopback, real PostgreSQL, and a real second user (``nobody``, via ``runuser``):
while a transport holds a database forward, ``psql`` run as that user fails on the tunnel's
socket with "Permission denied", although the same user reaches a TCP port on loopback (which
is what the tunnel used to be); vlad-tui itself queries through it; no TCP listener appears.
And TLS still reaches a database that insists on it (a cluster with ``hostssl`` only), with
``sslmode`` checks as libpq's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer
from tests.rig.services import free_port, missing
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import Database, parse_database_url
from vlad_tui.demo.cluster import PgCluster, find_bin_dir
from vlad_tui.errors import DatabaseError
from vlad_tui.transport import LocalTransport, SshTransport
from vlad_tui.transport.tunnels import PrivateSockets

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


def _own_unix_listeners() -> list[Path]:
    """Paths of the Unix sockets this process listens on (``/proc/net/unix``, flag 0x10000)."""
    ours = _own_socket_inodes()
    found = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        listening = len(fields) > 7 and int(fields[3], 16) & 0x10000 and fields[6] in ours
        if listening and fields[7].startswith("/"):
            found.append(Path(fields[7]))
    return found


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
def runtime_dir() -> Iterator[Path]:
    """A short private directory, as ``XDG_RUNTIME_DIR`` (socket paths must stay short)."""
    path = Path(tempfile.mkdtemp(prefix="vt-run-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_private_sockets_live_in_a_0700_directory_removed_on_close(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_dir
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    sockets = PrivateSockets()
    db = sockets.path_for("postgres", 5432)
    app = sockets.path_for("127.0.0.1", 3335)
    assert sockets.path_for("postgres", 5432) == db  # stable per destination
    assert Path(db).name == ".s.PGSQL.5432" and Path(db).parent != Path(app).parent
    root = sockets.root
    assert root is not None and Path(root).parent == runtime
    for d in (Path(root), Path(db).parent, Path(app).parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    sockets.close()
    assert not Path(root).exists()


def test_a_runtime_dir_open_to_others_or_too_long_is_not_used(
    runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_dir.chmod(0o777)
    long = tmp_path / ("x" * 80)
    long.mkdir(mode=0o700)
    for shared in (runtime_dir, long):
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
        sockets = PrivateSockets()
        path = sockets.path_for("postgres", 5432)
        try:
            assert not path.startswith(str(shared)) and len(path) <= 100
            assert stat.S_IMODE(Path(path).parent.parent.stat().st_mode) == 0o700
        finally:
            sockets.close()


@pytest.fixture
def other_user() -> str:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        missing(f"a second local user ({OTHER_USER})", "run the tests as root, with runuser")
    return OTHER_USER


@pytest.mark.integration
@pytest.mark.fault(
    "Another local user tries to reach the database through vlad-tui's running tunnel",
    did="Permission denied: the tunnel is a Unix socket in a 0700 directory of vlad-tui's user, no "
    "TCP port is opened, and the directory goes with the connection",
    lost=0,
)
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

            # The tunnel's socket, and any other this process listens on (the TLS relay's).
            sockets = _own_unix_listeners()
            assert endpoint.path in map(str, sockets)
            for path in sockets:
                through = f"host={path.parent} port={url.port} user={pg.user} dbname=postgres"
                code, out = await _psql_as(other_user, psql, through, pg.password)
                assert code != 0
                assert "Permission denied" in out, out
            assert await db.connection.fetchval("select 1") == 1  # vlad-tui itself still can
    finally:
        await transport.close()
    assert not private.exists()  # the socket directory went with the transport


@pytest.mark.integration
async def test_a_local_target_connects_directly_and_opens_no_listener(pg: PgServer) -> None:
    url = parse_database_url(pg.url("postgres"))
    listeners_before = _own_tcp_listeners()
    async with LocalTransport() as transport:
        endpoint = await transport.forward(url.host, url.port)
        assert (endpoint.host, endpoint.port, endpoint.path) == (url.host, url.port, None)
        async with Database(Target(name="local"), transport, url) as db:
            assert (await db.ping()).startswith("PostgreSQL")
            assert _own_tcp_listeners() == listeners_before


# --- TLS to a database that refuses plain text -------------------------------------------------


@dataclass(frozen=True)
class TlsCluster:
    cluster: PgCluster
    ca: Path  # signed the server's certificate (SAN DNS:localhost only)
    other_ca: Path  # trusted by nobody here

    def url(self, host: str, sslmode: str | None) -> str:
        url = self.cluster.url().replace("@127.0.0.1:", f"@{host}:")
        return url + (f"?sslmode={sslmode}" if sslmode else "")


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _make_ca(work: Path, name: str) -> None:
    subject = f"/CN={name}"
    _openssl("req", "-x509", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", subject, cwd=work)  # fmt: skip


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsCluster]:
    bin_dir = find_bin_dir()
    if bin_dir is None or shutil.which("openssl") is None:
        missing("PostgreSQL server binaries and openssl", "apt-get install postgresql openssl")
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="vlad-pg-tls-"))
    root.chmod(0o755)
    certs = root / "certs"
    certs.mkdir()
    _make_ca(certs, "ca")
    _make_ca(certs, "other-ca")
    _openssl("req", *_EC_KEY, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=certs)  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
             cwd=certs)  # fmt: skip
    cluster = PgCluster(root=root / "cluster", port=free_port(), bin_dir=bin_dir)
    try:
        cluster.init()
        for name in ("server.crt", "server.key"):
            shutil.copy(certs / name, cluster.data_dir / name)
            (cluster.data_dir / name).chmod(0o600)
            shutil.chown(cluster.data_dir / name, *_owner(cluster.data_dir))
        with (cluster.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        (cluster.data_dir / "pg_hba.conf").write_text(
            "local all all scram-sha-256\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        cluster.start()
        yield TlsCluster(cluster, certs / "ca.crt", certs / "other-ca.crt")
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


async def _query_ssl(sshd: SshdServer, url: str) -> bool:
    target = sshd.target("production")
    database = parse_database_url(url)
    async with SshTransport(target) as transport, Database(target, transport, database) as db:
        query = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
        return bool(await db.connection.fetchval(query))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("host", "sslmode"),
    [("127.0.0.1", None), ("127.0.0.1", "prefer"), ("127.0.0.1", "require"),
     ("127.0.0.1", "verify-ca"), ("localhost", "verify-full")],
)  # fmt: skip
async def test_tls_reaches_a_database_that_requires_it_through_the_tunnel(
    sshd: SshdServer, tls_pg: TlsCluster, monkeypatch: pytest.MonkeyPatch, host: str,
    sslmode: str | None,
) -> None:  # fmt: skip
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_pg.ca))
    assert await _query_ssl(sshd, tls_pg.url(host, sslmode)) is True


@pytest.mark.integration
async def test_tls_checks_fail_clearly(
    sshd: SshdServer, tls_pg: TlsCluster, pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_pg.other_ca))
    with pytest.raises(
        DatabaseError, match=r"TLS: certificate not trusted: unable to get local issuer"
    ):
        await _query_ssl(sshd, tls_pg.url("localhost", "verify-full"))
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_pg.ca))
    with pytest.raises(DatabaseError, match=r"TLS: certificate not trusted: .*mismatch"):
        await _query_ssl(sshd, tls_pg.url("127.0.0.1", "verify-full"))  # cert names localhost
    with pytest.raises(DatabaseError, match=r"no pg_hba\.conf entry|rejects connection"):
        await _query_ssl(sshd, tls_pg.url("127.0.0.1", "disable"))  # the server wants TLS
    plain_only = pg.url("postgres") + "?sslmode=require"
    with pytest.raises(
        DatabaseError, match=r"TLS: the server does not accept SSL connections \(sslmode=require"
    ):
        await _query_ssl(sshd, plain_only)
    assert await _query_ssl(sshd, pg.url("postgres")) is False  # prefer: plain when declined
