"""Verified backups against real PostgreSQL, a real sshd and the local transport."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer, SeededDatabase
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import parse_database_url, resolve_database_url
from vlad_tui.demo import install_backend
from vlad_tui.demo.seed import CRITICAL_TABLES
from vlad_tui.events import OutputLine
from vlad_tui.ops.backup import FORMATS, NAME_RE, Backup, BackupError, backup_name
from vlad_tui.ops.backup_digest import local_sha256
from vlad_tui.ops.backup_dump import create_backup
from vlad_tui.ops.backup_list import list_backups
from vlad_tui.ops.backup_offbox import copy_off_box
from vlad_tui.ops.backup_preflight import preflight, version_problem
from vlad_tui.ops.backup_verify import tables_in_listing, tables_in_plain, verify_backup
from vlad_tui.transport import LocalTransport, open_transport

pytestmark = pytest.mark.integration

WHEN = datetime(2025, 3, 14, 9, 26, 53)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A private temp dir the sshd user (the same account) can reach."""
    root = Path(tempfile.mkdtemp(prefix="vlad-backup-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make_target(root: Path, database_url: str, sshd: SshdServer | None = None) -> Target:
    """A target whose app's ``.env`` holds ``database_url`` and whose backups go in ``root``."""
    app_dir = root / "app"
    install_backend(app_dir, port=free_port(), database_url=database_url)
    fields = {
        "app_dir": str(app_dir),
        "backup_dir": str(root / "backups"),
        "database": "dotenv:.env",
    }
    if sshd is not None:
        return sshd.target("production", **fields)
    return Target("production", host="local", **fields)


# --- pure logic ---------------------------------------------------------------------------


def test_names_formats_and_artifact_round_trip() -> None:
    assert backup_name(WHEN, "custom") == "backup_produccion_20250314_092653.dump"
    assert backup_name(WHEN, "directory").endswith("_092653.dir")
    assert backup_name(WHEN, "plain").endswith("_092653.sql")
    assert all(NAME_RE.fullmatch(backup_name(WHEN, f)) for f in FORMATS)
    assert not NAME_RE.fullmatch(backup_name(WHEN, "custom") + ".partial")
    with pytest.raises(ValueError, match="unknown backup format"):
        backup_name(WHEN, "tar")
    backup = Backup(
        path="/b/backup_produccion_20250314_092653.dump",
        format="custom",
        size=42,
        sha256="a" * 64,
        created_at=WHEN.timestamp(),
        database="postgresql://app@db:5432/peludosclick",
        verified=True,
        checks={"exit_status": "ok", "size": "ok", "sha256": "ok", "list": "ok"},
        tables_with_data=["users"],
    )
    data = json.loads(json.dumps(backup.to_artifact()))
    assert {"path", "size", "sha256", "created_at", "verified", "format", "checks"} <= set(data)
    assert Backup.from_artifact(data) == backup
    assert backup.name == "backup_produccion_20250314_092653.dump"


def test_listing_parsers_find_table_data() -> None:
    listing = (
        ";\n; Archive created at 2025-03-14\n;\n"
        "215; 1259 16390 TABLE public users vlad\n"
        "3380; 0 16390 TABLE DATA public users vlad\n"
        "3381; 0 16401 TABLE DATA public Medal Fronts vlad\n"
        "3382; 0 16402 TABLE DATA audit events vlad\n"
    )
    assert tables_in_listing(listing) == {
        ("public", "users"),
        ("public", "Medal"),
        ("audit", "events"),
    }
    plain = (
        "COPY public.users (id, email) FROM stdin;\n"
        'COPY public."Medal" (id) FROM stdin;\n'
        "INSERT INTO audit.events VALUES (1);\n"
        "-- COPY public.fake\n"
    )
    assert tables_in_plain(plain) == {("public", "users"), ("public", "Medal"), ("audit", "events")}


def test_an_older_pg_dump_is_explained() -> None:
    assert version_problem("15.18", 15, "15.18 (Debian)") is None
    assert version_problem("16.2", 15, "15.18") is None
    problem = version_problem("13.4", 15, "15.18 (Debian 15.18-0+deb12u1)", "production")
    assert problem is not None
    assert "pg_dump 13.4 on production is older than the server (PostgreSQL 15.18)" in problem
    assert "refuses to dump a newer server" in problem and "postgresql-client-15" in problem


# --- real PostgreSQL + sshd -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["custom", "directory", "plain"])
async def test_each_format_over_ssh_is_created_private_and_verified(
    fmt: str, workdir: Path, pg: PgServer, peludosclick: SeededDatabase, sshd: SshdServer
) -> None:
    target = make_target(workdir, peludosclick.url, sshd)
    lines: list[OutputLine] = []
    calls: list[tuple[int, int]] = []
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(
            target,
            transport,
            url,
            fmt=fmt,
            jobs=2,
            sink=lines.append,
            progress=lambda done, total: calls.append((done, total)),
            now=WHEN,
        )
        verified = await verify_backup(
            target, transport, backup, CRITICAL_TABLES, sink=lines.append
        )
        listed = await list_backups(target, transport)

    path = Path(backup.path)
    assert path == workdir / "backups" / backup_name(WHEN, fmt)
    assert backup.format == fmt and backup.size > 0 and len(backup.sha256) == 64
    assert backup.created_at == WHEN.timestamp() and not backup.verified
    assert backup.database == url.display() and pg.password not in backup.database
    assert backup.sha256 == local_sha256(path)
    assert stat.S_IMODE((workdir / "backups").stat().st_mode) == 0o700
    if fmt == "directory":
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        files = sorted(p.name for p in path.iterdir())
        assert "toc.dat" in files and len(files) > len(CRITICAL_TABLES)
        assert {stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()} == {0o600}
    else:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(workdir / "backups")) == [path.name]  # no .partial left

    assert verified.verified
    assert verified.checks == {r: "ok" for r in ("exit_status", "size", "sha256", "list")}
    assert verified.tables_with_data == list(CRITICAL_TABLES)
    assert [b.path for b in listed] == [backup.path] and listed[0].size == backup.size

    db_size = calls[0][1]
    assert calls[0] == (0, db_size) and calls[-1] == (backup.size, db_size) and db_size > 0
    text = "\n".join(line.text for line in lines)
    assert "pg_dump: dumping contents of table" in text  # --verbose streamed live
    assert "✓ list: " in text and "✓ sha256: " in text
    assert pg.password not in text


async def test_local_transport_backup_and_off_box_copy(
    workdir: Path, peludosclick: SeededDatabase
) -> None:
    target = make_target(workdir, peludosclick.url)
    local = workdir / "offbox"
    seen: list[tuple[int, int]] = []
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, now=WHEN)
        backup = await verify_backup(target, transport, backup, CRITICAL_TABLES)
        copy = await copy_off_box(
            transport, backup, local, progress=lambda d, t: seen.append((d, t))
        )
    assert backup.verified and backup.format == "custom"
    assert copy == local / backup.name and copy.read_bytes() == Path(backup.path).read_bytes()
    assert stat.S_IMODE(local.stat().st_mode) == 0o700
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert seen[-1] == (backup.size, backup.size)
    assert os.listdir(local) == [copy.name]


@pytest.mark.parametrize("fmt", ["custom", "directory"])
async def test_off_box_copy_over_sftp_checks_sha256(
    fmt: str, workdir: Path, peludosclick: SeededDatabase, sshd: SshdServer
) -> None:
    target = make_target(workdir, peludosclick.url, sshd)
    local = workdir / "offbox"
    seen: list[tuple[int, int]] = []
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, fmt=fmt, now=WHEN)
        copy = await copy_off_box(
            transport, backup, local, progress=lambda d, t: seen.append((d, t))
        )
        assert local_sha256(copy) == backup.sha256
        assert seen and seen[-1][0] == seen[-1][1] > 0
        # A recorded checksum that does not match the copy: refused, nothing kept.
        wrong = Backup.from_artifact({**backup.to_artifact(), "sha256": "0" * 64})
        with pytest.raises(BackupError, match=r"^copy: sha256 of the local copy") as err:
            await copy_off_box(transport, wrong, workdir / "offbox2")
    assert err.value.rung == "copy"
    assert os.listdir(workdir / "offbox2") == []
    assert os.listdir(local) == [backup.name]


async def test_truncated_backup_fails_at_sha256_then_at_list(
    workdir: Path, peludosclick: SeededDatabase
) -> None:
    target = make_target(workdir, peludosclick.url)
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, now=WHEN)
        path = Path(backup.path)
        os.truncate(path, backup.size // 2)
        with pytest.raises(BackupError) as err:
            await verify_backup(target, transport, backup, CRITICAL_TABLES)
        assert err.value.rung == "sha256"
        assert str(err.value).startswith("verification failed at sha256: ")
        assert "changed since it was written" in str(err.value)
        failed = err.value.backup
        assert failed is not None and not failed.verified
        assert failed.checks["exit_status"] == failed.checks["size"] == "ok"
        assert failed.checks["sha256"].startswith(str(path))

        # Truncated inside the table of contents, and the truncated file's sha256 recorded
        # (as if it had been cut before hashing): the pg_restore --list rung catches it.
        os.truncate(path, 200)
        rehashed = Backup.from_artifact({**backup.to_artifact(), "sha256": local_sha256(path)})
        with pytest.raises(BackupError) as err:
            await verify_backup(target, transport, rehashed, CRITICAL_TABLES)
    assert err.value.rung == "list"
    assert str(err.value).startswith("verification failed at list: pg_restore --list failed: ")
    assert err.value.backup is not None and err.value.backup.checks["sha256"] == "ok"


async def test_directory_backup_without_toc_fails_at_size(
    workdir: Path, peludosclick: SeededDatabase
) -> None:
    target = make_target(workdir, peludosclick.url)
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, fmt="directory", now=WHEN)
        (Path(backup.path) / "toc.dat").unlink()
        with pytest.raises(BackupError, match=r"^verification failed at size: .*toc\.dat does"):
            await verify_backup(target, transport, backup, CRITICAL_TABLES)
        not_dumped = Backup.from_artifact({**backup.to_artifact(), "checks": {}})
        with pytest.raises(BackupError, match="at exit_status: pg_dump did not finish"):
            await verify_backup(target, transport, not_dumped, CRITICAL_TABLES)


async def test_critical_table_missing_from_backup_fails_the_list_rung(
    workdir: Path, pg: PgServer, peludosclick: SeededDatabase
) -> None:
    target = make_target(workdir, peludosclick.url)
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, fmt="plain", now=WHEN)
        with pytest.raises(BackupError, match=r"at list: no COPY/INSERT for pets in the backup$"):
            await verify_backup(target, transport, backup, [*CRITICAL_TABLES, "pets"])


async def test_wrong_password_is_one_clear_line_and_leaves_nothing(
    workdir: Path, pg: PgServer, peludosclick: SeededDatabase, sshd: SshdServer
) -> None:
    bad = "Wr0ng@pw:" + "x" * 8
    target = make_target(workdir, pg.url("peludosclick", password=bad), sshd)
    lines: list[OutputLine] = []
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        with pytest.raises(BackupError) as err:
            await create_backup(target, transport, url, sink=lines.append, now=WHEN)
    message = str(err.value)
    assert 'password authentication failed for user "vlad"' in message
    assert "\n" not in message and bad not in message
    assert all(bad not in line.text for line in lines)
    assert not (workdir / "backups").exists() or os.listdir(workdir / "backups") == []


async def test_failing_pg_dump_quotes_its_error_and_removes_the_partial_dump(
    workdir: Path, pg: PgServer, peludosclick: SeededDatabase, sshd: SshdServer
) -> None:
    # A login that may connect but not read "users": preflight passes, pg_dump fails mid-way.
    conn = await pg.connect("peludosclick")
    try:
        await conn.execute("DROP ROLE IF EXISTS backup_reader")
        await conn.execute("CREATE ROLE backup_reader LOGIN PASSWORD 'R3ader!pw'")
        await conn.execute("GRANT SELECT ON partners, medals TO backup_reader")
    finally:
        await conn.close()
    url = parse_database_url(
        f"postgresql://backup_reader:R3ader%21pw@127.0.0.1:{pg.port}/peludosclick"
    )
    target = make_target(workdir, peludosclick.url, sshd)
    try:
        async with open_transport(target) as transport:
            with pytest.raises(BackupError) as err:
                await create_backup(target, transport, url, now=WHEN)
    finally:
        conn = await pg.connect("peludosclick")
        try:
            await conn.execute("REVOKE ALL ON partners, medals FROM backup_reader")
            await conn.execute("DROP ROLE backup_reader")
        finally:
            await conn.close()
    assert err.value.rung == "pg_dump"
    message = str(err.value)
    assert message.startswith("pg_dump failed (exit status 1): pg_dump: error: ")
    assert "permission denied for table" in message and message.endswith("no backup file was kept")
    assert "R3ader!pw" not in message
    assert os.listdir(workdir / "backups") == []


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``path``; yields False when mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(path)], check=False)


async def test_not_enough_free_space_is_refused_before_dumping(
    workdir: Path, peludosclick: SeededDatabase, sshd: SshdServer
) -> None:
    target = make_target(workdir, peludosclick.url, sshd)
    backups = workdir / "backups"
    with small_disk(backups) as mounted:
        async with open_transport(target) as transport:
            url = await resolve_database_url(target, transport)
            info = await preflight(target, transport, url, margin=0.0)
            # Without a tmpfs, the same df-based check is pushed over the real free space.
            reserve = 0 if mounted else info["free_bytes"] + 1
            assert info["database_size"] > 0 and info["free_bytes"] > 0
            if mounted:
                assert info["free_bytes"] <= 2 * 1024 * 1024 < info["database_size"]
            with pytest.raises(BackupError) as err:
                await create_backup(target, transport, url, now=WHEN, reserve_bytes=reserve)
            assert os.listdir(backups) == []
    assert err.value.rung == "preflight"
    assert str(err.value).startswith(
        f"preflight: not enough space for a backup in {backups} on production: "
    )
    assert "MiB free" in str(err.value) and "MiB needed" in str(err.value)


async def test_listing_ignores_partial_and_foreign_files(workdir: Path) -> None:
    backups = workdir / "backups"
    backups.mkdir()
    for name in (
        "backup_produccion_20250101_000000.dump",
        "backup_produccion_20250301_120000.sql",
        "backup_produccion_20250201_000000.dump.partial",
        "notes.txt",
    ):
        (backups / name).write_bytes(b"x" * 10)
    (backups / "backup_produccion_20250215_000000.dir").mkdir()
    (backups / "backup_produccion_20250215_000000.dir" / "toc.dat").write_bytes(b"y" * 5000)
    target = Target("production", host="local", backup_dir=str(backups))
    async with LocalTransport() as transport:
        found = await list_backups(target, transport)
        assert (
            await list_backups(
                Target("production", host="local", backup_dir=str(workdir / "none")), transport
            )
            == []
        )
    assert [(b.name, b.format) for b in found] == [
        ("backup_produccion_20250301_120000.sql", "plain"),
        ("backup_produccion_20250215_000000.dir", "directory"),
        ("backup_produccion_20250101_000000.dump", "custom"),
    ]
    assert found[0].size == 10 and found[1].size >= 5000
    assert found[0].created_at == datetime(2025, 3, 1, 12).timestamp()
    assert not any(b.verified for b in found)


async def test_checksum_without_openssl_is_the_same(workdir: Path) -> None:
    """Servers without openssl hash with coreutils' sha256sum: same digests, both layouts."""
    from vlad_tui.ops.backup_digest import _DIGEST_SCRIPT

    plain_bin = workdir / "bin"
    plain_bin.mkdir()
    for tool in ("sha256sum", "cut", "du", "find", "sort"):
        found = shutil.which(tool)
        assert found is not None
        (plain_bin / tool).symlink_to(found)
    single = workdir / "one.dump"
    single.write_bytes(os.urandom(300_000))
    directory = workdir / "many.dir"
    directory.mkdir()
    for name in ("toc.dat", "3380.dat.gz", "3381.dat.gz", "B.dat"):
        (directory / name).write_bytes(os.urandom(1000) + name.encode())
    async with LocalTransport() as transport:
        for path in (single, directory):
            script = _DIGEST_SCRIPT.format(path=shlex.quote(str(path)))
            with_openssl = await transport.run(script, check=True)
            without = await transport.run(
                f"PATH={shlex.quote(str(plain_bin))}; export PATH\n{script}", check=True
            )
            assert with_openssl.stdout.split()[1] == without.stdout.split()[1]
            assert without.stdout.split()[1] == local_sha256(path)
