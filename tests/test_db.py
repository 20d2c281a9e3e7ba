"""Database URLs, their resolution, and facts from a real PostgreSQL (locally and over SSH)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.rig.postgres import PgServer, SeededDatabase
from tests.rig.sshd import SshdServer
from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.db import (
    Database,
    DatabaseUrlError,
    parse_database_url,
    qualified,
    resolve_database_url,
    staging_url,
)
from vlad_tui.demo import install_backend
from vlad_tui.demo.seed import CRITICAL_TABLES, applied_migrations
from vlad_tui.errors import ConfigError, DatabaseError, DatabaseMissing
from vlad_tui.transport import open_transport

pytestmark = pytest.mark.integration

# --- URL parsing (pure) -------------------------------------------------------------------------


def test_parse_full_url_with_encoded_password_and_schema() -> None:
    url = parse_database_url(
        "postgresql://deploy:p%40ss%3Aw%2Frd%25x@postgres:6543/peludosclick?schema=public"
    )
    assert (url.host, url.port, url.user, url.database) == (
        "postgres",
        6543,
        "deploy",
        "peludosclick",
    )
    assert url.password == "p@ss:w/rd%x"
    assert url.params == {"schema": "public"}
    assert url.schema == "public"


def test_parse_postgres_scheme_default_port_and_no_password() -> None:
    url = parse_database_url("postgres://app@db.internal/medals")
    assert (url.host, url.port, url.user, url.password, url.database) == (
        "db.internal",
        5432,
        "app",
        "",
        "medals",
    )
    assert url.secret_env() == {}


def test_display_repr_and_safe_env_never_show_the_password() -> None:
    url = parse_database_url("postgresql://u:S3cr%23t@h:5433/db?schema=app&sslmode=disable")
    for text in (url.display(), repr(url), str(url), str(url.safe_env())):
        assert "S3cr#t" not in text and "S3cr%23t" not in text
    assert url.display() == "postgresql://u@h:5433/db?schema=app&sslmode=disable"
    assert url.safe_env() == {"PGHOST": "h", "PGPORT": "5433", "PGUSER": "u", "PGDATABASE": "db"}
    assert url.secret_env() == {"PGPASSWORD": "S3cr#t"}
    # The full URL round-trips (for a child's environment only).
    assert parse_database_url(url.to_url()) == url


def test_with_database_and_staging_url() -> None:
    url = parse_database_url("postgresql://u:pw@h/peludosclick?schema=public")
    assert url.with_database("other").database == "other"
    assert url.with_database("other").password == "pw"
    assert staging_url(Target("prod"), url).database == "peludosclick_staging"
    assert staging_url(Target("prod", staging_database="pc_stg"), url).database == "pc_stg"


@pytest.mark.parametrize(
    "junk",
    [
        "mysql://u:hunter2secret@h/db",
        "hunter2secret",
        "postgresql://u:hunter2secret@h:notaport/db",
        "postgresql://u:hunter2secret@h:5432/",
        "postgresql://u:hunter2/secret@h/db",
    ],
)
def test_junk_urls_raise_without_echoing_the_password(junk: str) -> None:
    with pytest.raises(DatabaseUrlError) as info:
        parse_database_url(junk)
    assert isinstance(info.value, ConfigError)
    assert "hunter2" not in str(info.value)


def test_qualified_quotes_identifiers() -> None:
    assert qualified("users") == '"public"."users"'
    assert qualified('we"ird', "app") == '"app"."we""ird"'
    assert qualified("audit.events") == '"audit"."events"'


# --- resolving where the URL comes from --------------------------------------------------------


def _local_target(app_dir: Path, **kw: object) -> Target:
    return Target("local", host="local", app_dir=str(app_dir), **kw)  # type: ignore[arg-type]


async def test_resolve_from_dotenv_registers_the_secret(tmp_path: Path) -> None:
    password = "Dotenv-canary-7f3a@:/%"
    url = f"postgresql://vlad:{quote(password, safe='')}@postgres:5432/peludosclick?schema=public"
    (tmp_path / ".env").write_text(
        f'NODE_ENV=production\nDATABASE_URL="{url}"\nJWT_SECRET=jwt-x1\n'
    )
    async with open_transport(_local_target(tmp_path)) as transport:
        resolved = await resolve_database_url(_local_target(tmp_path), transport)
    assert resolved.password == password and resolved.host == "postgres"
    scrubbed = redact.scrub(f"pw={password} url={url} jwt=jwt-x1")
    assert password not in scrubbed and quote(password, safe="") not in scrubbed
    assert "jwt-x1" not in scrubbed


async def test_resolve_from_env_and_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLAD_TEST_DB", "postgresql://a:envpw-91@h1:1111/d1")
    async with open_transport(_local_target(tmp_path)) as transport:
        from_env = await resolve_database_url(
            _local_target(tmp_path, database="env:VLAD_TEST_DB"), transport
        )
        literal = await resolve_database_url(
            _local_target(tmp_path, database="postgresql://b@h2/d2"), transport
        )
    assert (from_env.host, from_env.port, from_env.password) == ("h1", 1111, "envpw-91")
    assert "envpw-91" not in redact.scrub("envpw-91")
    assert (literal.host, literal.user, literal.database) == ("h2", "b", "d2")


async def test_resolve_errors_are_clear_and_secret_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLAD_UNSET_VAR", raising=False)
    async with open_transport(_local_target(tmp_path)) as transport:
        with pytest.raises(ConfigError, match=r"\.env not found"):
            await resolve_database_url(_local_target(tmp_path), transport)
        (tmp_path / ".env").write_text("PORT=3000\n")
        with pytest.raises(ConfigError, match="DATABASE_URL is not set in"):
            await resolve_database_url(_local_target(tmp_path), transport)
        (tmp_path / ".env").write_text("DATABASE_URL=mysql://root:leaky-pw-55@db/x\n")
        with pytest.raises(ConfigError) as info:
            await resolve_database_url(_local_target(tmp_path), transport)
        assert "not a PostgreSQL URL" in str(info.value) and "leaky-pw-55" not in str(info.value)
        assert "targets.local.database" in str(info.value)
        with pytest.raises(ConfigError, match="VLAD_UNSET_VAR is not set"):
            await resolve_database_url(
                _local_target(tmp_path, database="env:VLAD_UNSET_VAR"), transport
            )


# --- real PostgreSQL ----------------------------------------------------------------------------


def _pg_target(tmp_path: Path, url: str) -> Target:
    return _local_target(tmp_path, database=url)


async def test_facts_and_row_counts_match_the_seed(
    tmp_path: Path, pg: PgServer, peludosclick: SeededDatabase
) -> None:
    target = _pg_target(tmp_path, peludosclick.url)
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        async with Database(target, transport, url) as db:
            version = await db.ping()
            assert version.startswith("PostgreSQL ")
            assert (await db.server_version()).split(".")[0].isdigit()
            assert await db.database_size() > 1_000_000
            conns = await db.connections()
            assert conns["total"] >= 1 and conns["by_state"].get("active", 0) >= 1
            assert conns["max_connections"] >= conns["total"]
            counts = await db.row_counts([*CRITICAL_TABLES, "no_such_table"])
            assert counts == {**peludosclick.counts, "no_such_table": None}
            assert await db.table_exists("medals") and not await db.table_exists("nope")
            rows = await db.prisma_migrations()
            sample = await db.connection.fetchrow(
                "select count(*) filter (where phonenumber is null) as no_phone,"
                " count(*) filter (where first_name ~ '[áéíóúñÁÉÍÓÚÑ]') as accented,"
                " (select count(*) from medals m join users u on u.id = m.owner_id) as owned"
                " from users"
            )
    assert sample["no_phone"] > 0 and sample["accented"] > 0
    assert sample["owned"] == peludosclick.counts["medals"]  # foreign keys hold
    assert rows is not None
    expected = applied_migrations()  # the seed leaves the two newest folders pending
    assert [r["migration_name"] for r in rows] == [m.name for m in expected]
    assert [r["checksum"] for r in rows] == [m.checksum for m in expected]
    assert all(r["finished_at"] and r["rolled_back_at"] is None for r in rows)


async def test_facts_are_read_only_and_missing_tables_are_none(
    tmp_path: Path, pg: PgServer
) -> None:
    url = await pg.create_database("vlad_empty")
    target = _pg_target(tmp_path, url)
    try:
        async with (
            open_transport(target) as transport,
            Database(target, transport, parse_database_url(url)) as db,
        ):
            assert await db.row_counts(["users", "medals"]) == {"users": None, "medals": None}
            assert await db.prisma_migrations() is None
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await db.connection.execute("create table users (id int)")
    finally:
        await pg.drop_database("vlad_empty")


async def test_wrong_password_is_one_clear_line_without_the_password(
    tmp_path: Path, pg: PgServer, peludosclick: SeededDatabase
) -> None:
    wrong = "Wrong-canary-123@:/"
    url = parse_database_url(pg.url("peludosclick", password=wrong))
    target = _pg_target(tmp_path, peludosclick.url)
    async with open_transport(target) as transport:
        with pytest.raises(DatabaseError) as info:
            await Database(target, transport, url).connect()
    message = str(info.value)
    assert f'password authentication failed for user "{pg.user}"' in message
    assert "\n" not in message
    assert wrong not in message and quote(wrong, safe="") not in message
    assert pg.password not in message


async def test_unknown_database_and_unreachable_server(tmp_path: Path, pg: PgServer) -> None:
    target = _pg_target(tmp_path, pg.url("postgres"))
    async with open_transport(target) as transport:
        with pytest.raises(DatabaseMissing, match='database "no_such_db" does not exist'):
            await Database(target, transport, parse_database_url(pg.url("no_such_db"))).connect()
        closed = dataclasses.replace(parse_database_url(pg.url("postgres")), port=1)
        with pytest.raises(DatabaseError, match="unreachable: Connection refused") as info:
            await Database(target, transport, closed).connect()
        assert not isinstance(info.value, DatabaseMissing)
    assert pg.password not in str(info.value)


async def test_over_ssh_the_dotenv_is_read_remotely_and_the_db_reached_through_a_forward(
    tmp_path: Path, sshd: SshdServer, pg: PgServer, peludosclick: SeededDatabase
) -> None:
    app_dir = tmp_path / "app"
    # "localhost" in the .env is resolved by the server end of the tunnel, as on production.
    server_side = peludosclick.url.replace("@127.0.0.1:", "@localhost:")
    install_backend(app_dir, port=3335, database_url=server_side)
    target = sshd.target("production", app_dir=str(app_dir), database="dotenv:.env")
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        assert url.host == "localhost" and url.password == pg.password
        async with Database(target, transport, url) as db:
            assert (await db.ping()).startswith("PostgreSQL")
            counts = await db.row_counts(CRITICAL_TABLES)
            addr = await db.connection.fetchval("select inet_client_addr()::text")
    assert counts == peludosclick.counts
    assert addr is not None  # a TCP client (the sshd end of the forward), not a socket
    assert pg.password not in redact.scrub(f"leak? {pg.password}")


async def test_over_ssh_an_unreachable_database_is_one_clear_line(
    sshd: SshdServer, pg: PgServer
) -> None:
    target = sshd.target("production")
    url = dataclasses.replace(parse_database_url(pg.url("postgres")), host="127.0.0.1", port=1)
    async with open_transport(target) as transport:
        with pytest.raises(DatabaseError) as info:
            await Database(target, transport, url).connect()
    assert str(info.value).startswith("PostgreSQL 127.0.0.1:1: unreachable from production")
    assert pg.password not in str(info.value)
