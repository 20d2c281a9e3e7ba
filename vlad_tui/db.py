"""PostgreSQL access: database URLs, where they come from, and read-only facts over asyncpg.

The database host in the app's ``DATABASE_URL`` (e.g. ``postgres`` on a Docker network) usually
resolves only on the server, so :class:`Database` connects through ``transport.forward``: for
remote targets a private Unix socket forwarded over SSH (asyncpg takes its directory as host),
the address itself for local ones. The password is handed to asyncpg in-process; it never
appears in argv, and every message is scrubbed.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import ssl
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from vlad_tui import pgpass, redact
from vlad_tui.config import Target
from vlad_tui.db_tls import TlsRefused, TlsRelay, describe
from vlad_tui.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionLost,
    DatabaseError,
    DatabaseMissing,
    HostKeyChanged,
    HostKeyUnknown,
    TransportError,
    Unreachable,
    VladError,
)
from vlad_tui.transport.base import Transport

if TYPE_CHECKING:
    import asyncpg

SCHEMES = ("postgres", "postgresql")
DEFAULT_PORT = 5432
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``postgres://`` URL. ``repr``/``display`` never show the password."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> str:
        """Prisma's ``?schema=`` (``public`` by default)."""
        return self.params.get("schema") or "public"

    def with_database(self, name: str) -> DatabaseUrl:
        """The same server and credentials, another database."""
        return replace(self, database=name)

    def _netloc(self, password: str | None) -> str:
        userinfo = quote(self.user, safe="")
        if password:
            userinfo += ":" + quote(password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{userinfo}@{host}:{self.port}" if userinfo else f"{host}:{self.port}"

    def _build(self, password: str | None) -> str:
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"postgresql://{self._netloc(password)}/{quote(self.database, safe='')}{query}"

    def display(self) -> str:
        """The URL without the password, for screens, logs and reports."""
        return self._build(None)

    def to_url(self) -> str:
        """The full URL *including the password*: only for a child's environment or stdin."""
        return self._build(self.password)

    def safe_env(self) -> dict[str, str]:
        """libpq variables without the password (fine in a command line)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.database,
        }

    def secret_env(self) -> dict[str, str]:
        """``{"PGPASSWORD": ...}`` (or ``{}``) for ``transport.shell.with_secrets``."""
        return {"PGPASSWORD": self.password} if self.password else {}

    def __str__(self) -> str:
        return self.display()


class DatabaseUrlError(ConfigError):
    """A database URL or reference is invalid; the message never contains the password."""


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse ``postgres://`` / ``postgresql://`` URLs (percent-decoding, default port 5432).

    Query parameters (Prisma's ``schema=public``, ``sslmode``...) are kept in ``params``;
    ``?host=/socket/dir`` (libpq style) is honoured when the URL has no host.
    """
    text = (url or "").strip()
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        shown = scheme if sep and len(scheme) < 20 else "?"
        raise DatabaseUrlError(
            f"not a PostgreSQL URL (expected postgresql://user:password@host:port/db, "
            f"got scheme {shown!r})"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise DatabaseUrlError(
            "malformed PostgreSQL URL (bad host or port; percent-encode special characters "
            "in the password, e.g. @ as %40, / as %2F)"
        ) from None
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    # libpq semantics: a ``?host=`` parameter (often a socket directory) wins over the netloc.
    host = params.pop("host", "") or unquote(parts.hostname or "") or "localhost"
    database = unquote(parts.path.lstrip("/"))
    if "/" in database:
        raise DatabaseUrlError(
            "malformed PostgreSQL URL (a '/' after the database name; percent-encode "
            "special characters in the password)"
        )
    if not database:
        raise DatabaseUrlError("PostgreSQL URL names no database (…/DBNAME)")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if password:
        redact.add_secret(password)
    return DatabaseUrl(
        host=host,
        port=port or DEFAULT_PORT,
        user=user,
        password=password,
        database=database,
        params=params,
    )


def _reference_error(target: Target, message: str) -> DatabaseUrlError:
    return DatabaseUrlError(message, key=f"targets.{target.name}.database")


async def resolve_database_url(target: Target, transport: Transport) -> DatabaseUrl:
    """Turn ``target.database`` into a URL and teach the redactor its secrets.

    ``dotenv:PATH[#VAR]`` reads ``PATH`` (relative to ``app_dir``) on the target and takes
    ``DATABASE_URL`` (or ``VAR``); ``env:VAR`` reads the local environment; a literal
    ``postgresql://`` URL is used as is. A URL without a password takes libpq's
    ``PGPASSWORD`` or the matching line of this machine's ``~/.pgpass`` (``PGPASSFILE``).
    """
    try:
        ref = target.database_ref
    except ValueError as exc:
        raise _reference_error(target, str(exc)) from None
    if ref.kind == "dotenv":
        path = ref.dotenv_path(target.app_dir)
        try:
            data = await transport.read_file(path)
        except FileNotFoundError:
            raise _reference_error(target, f"{path} not found on {target.name}") from None
        except (HostKeyUnknown, HostKeyChanged, AuthenticationFailed, Unreachable, ConnectionLost):
            raise  # the target itself is unreachable: not a problem of the reference
        except (OSError, TransportError) as exc:
            if isinstance(exc, TransportError) and await _missing(transport, path):
                raise _reference_error(target, f"{path} not found on {target.name}") from None
            reason = redact.scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise _reference_error(
                target, f"cannot read {path} on {target.name}: {reason}"
            ) from None
        values = redact.parse_dotenv(data.decode("utf-8", errors="replace"))
        redact.add_env(values)
        raw = values.get(ref.variable, "")
        if not raw.strip():
            raise _reference_error(target, f"{ref.variable} is not set in {path} on {target.name}")
        where = f"{ref.variable} in {path}"
    elif ref.kind == "env":
        raw = os.environ.get(ref.value, "")
        if not raw.strip():
            raise _reference_error(target, f"environment variable {ref.value} is not set")
        where = f"environment variable {ref.value}"
    else:
        raw, where = ref.value, "the configured URL"
    redact.add_url(raw)
    try:
        url = parse_database_url(raw)
    except DatabaseUrlError as exc:
        raise _reference_error(target, f"{where}: {exc}") from None
    if not url.password:
        # libpq's PGPASSWORD / ~/.pgpass, matched against the URL as written (the driver
        # would see only the forwarded socket), learnt, and then sent through stdin.
        found = pgpass.lookup(url.host, url.port, url.database, url.user or getpass.getuser())
        if found:
            redact.add_secret(found)
            url = replace(url, password=found)
    return url


async def _missing(transport: Transport, path: str) -> bool:
    try:
        return await transport.stat(path) is None
    except VladError:
        return False


def staging_url(target: Target, url: DatabaseUrl) -> DatabaseUrl:
    """The staging database beside ``url``: ``target.staging_database`` or ``<db>_staging``."""
    return url.with_database(target.staging_database or f"{url.database}_staging")


def quote_ident(name: str) -> str:
    """A SQL identifier, always double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str, schema: str = "public") -> str:
    """``schema.table`` quoted; ``table`` may already be ``schema.table``."""
    if "." in table:
        schema, table = table.split(".", 1)
    return f"{quote_ident(schema)}.{quote_ident(table)}"


class Database:
    """One asyncpg connection to ``url`` as seen from ``target`` (through ``transport``).

    Read-only by default (``default_transaction_read_only``): facts can never write; pass
    ``read_only=False`` for operations that must (restore, rename). Use as
    ``async with Database(target, transport, url) as db: ...``. PostgreSQL problems raise
    :class:`DatabaseError`; a target that cannot be reached at all raises the transport's
    :class:`TransportError`.
    """

    def __init__(
        self,
        target: Target,
        transport: Transport,
        url: DatabaseUrl,
        *,
        timeout: float | None = None,
        command_timeout: float = 60.0,
        read_only: bool = True,
    ) -> None:
        self.target = target
        self.transport = transport
        self.url = url
        self.timeout = timeout if timeout is not None else target.connect_timeout
        self.command_timeout = command_timeout
        self.read_only = read_only
        self._conn: asyncpg.Connection | None = None
        self._relay: TlsRelay | None = None

    @property
    def connection(self) -> asyncpg.Connection:
        """The open connection (connect first)."""
        if self._conn is None or self._conn.is_closed():
            raise DatabaseError(f"not connected to {self.url.display()}")
        return self._conn

    async def connect(self) -> None:
        """Open the connection (idempotent)."""
        import asyncpg  # here, not at import: the UI starts without loading it

        if self._conn is not None and not self._conn.is_closed():
            return
        url = self.url
        socket_dir = url.host.startswith("/")
        if socket_dir and not self.target.is_local:
            raise DatabaseError(
                f"{url.display()}: a unix-socket host is only reachable on a local target"
            )
        kwargs: dict[str, Any] = {}
        sslmode = url.params.get("sslmode")
        if socket_dir:
            host, port = url.host, url.port
        else:
            endpoint = await self.transport.forward(url.host, url.port)
            if endpoint.path is not None and sslmode != "disable":
                # asyncpg does no TLS on a socket: the relay does it, libpq's default "prefer"
                # when the URL names no sslmode, as asyncpg would over TCP.
                await self._close_relay()
                self._relay = TlsRelay(endpoint, sslmode or "prefer", url.host)
                endpoint = await self._relay.start()
            elif sslmode in _SSL_MODES:
                kwargs["ssl"] = sslmode
            host, port = endpoint.host, endpoint.port
        settings = {"application_name": "vlad-tui"}
        if self.read_only:
            settings["default_transaction_read_only"] = "on"
        try:
            self._conn = await asyncpg.connect(
                host=host,
                port=port,
                user=url.user or None,
                password=url.password or None,
                database=url.database,
                timeout=self.timeout,
                command_timeout=self.command_timeout,
                server_settings=settings,
                **kwargs,
            )
        except Exception as exc:  # CancelledError is a BaseException and passes through
            error = self._relay.error if self._relay is not None else None
            await self._close_relay()
            if isinstance(error, TlsRefused | ssl.SSLError):
                where = f"PostgreSQL {url.host}:{url.port}"
                raise DatabaseError(redact.scrub(f"{where}: TLS: {describe(error)}")) from None
            raise self._error(exc, connecting=True) from None
        except BaseException:
            await self._close_relay()
            raise

    async def _close_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()

    async def close(self) -> None:
        import asyncpg

        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                conn.terminate()
        await self._close_relay()

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _error(self, exc: BaseException, *, connecting: bool = False) -> DatabaseError:
        """One clear, scrubbed line for an asyncpg / OS error."""
        import asyncpg

        url = self.url
        where = f"PostgreSQL {url.host}:{url.port}"
        tunnel_closed = isinstance(
            exc, ConnectionError | asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError
        )
        if connecting and tunnel_closed and not self.target.is_local:
            # asyncssh closes the local end when the server cannot open the forwarded
            # connection; asyncpg then only knows "connection_lost".
            msg = (
                f"{where}: unreachable from {self.target.name} (the SSH server could not "
                "connect to it, or it closed the connection)"
            )
        elif isinstance(exc, asyncpg.InvalidPasswordError):
            msg = f'{where}: password authentication failed for user "{url.user}"'
        elif isinstance(exc, asyncpg.InvalidCatalogNameError):
            return DatabaseMissing(
                redact.scrub(f'{where}: database "{url.database}" does not exist')
            )
        elif isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
            msg = f"{where}: access refused: {_first_line(exc)}"
        elif isinstance(exc, asyncpg.PostgresError):
            msg = f"{where}/{url.database}: {_first_line(exc)}"
        elif isinstance(exc, TimeoutError):
            msg = f"{where}: no answer within {self.timeout:g} s"
        elif isinstance(exc, socket.gaierror):
            msg = f"{where}: unreachable: unknown host {url.host!r}"
        elif isinstance(
            exc, OSError | asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError
        ):
            reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else None
            msg = f"{where}: unreachable: {reason or _first_line(exc) or 'connection closed'}"
        elif isinstance(exc, VladError):
            msg = str(exc)
        else:
            msg = f"{where}: {type(exc).__name__}: {_first_line(exc)}"
        return DatabaseError(redact.scrub(msg))

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        import asyncpg

        try:
            return await self.connection.fetch(query, *args)
        except DatabaseError:
            raise
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise self._error(e) from None

    async def fetch_one(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row of ``query`` (errors as :class:`DatabaseError`)."""
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    async def _value(self, query: str, *args: Any) -> Any:
        rows = await self._fetch(query, *args)
        return rows[0][0] if rows else None

    async def ping(self) -> str:
        """``select 1`` and the server's version string (read-only)."""
        one = await self._value("select 1")
        if one != 1:
            raise DatabaseError(f"{self.url.display()}: unexpected answer to select 1")
        return str(await self._value("select version()"))

    async def server_version(self) -> str:
        """``server_version``, e.g. ``15.8 (Debian 15.8-0+deb12u1)``."""
        return str(await self._value("show server_version"))

    async def database_size(self) -> int:
        """Size of the connected database in bytes."""
        return int(await self._value("select pg_database_size(current_database())"))

    async def connections(self) -> dict[str, Any]:
        """Client connections on the server: ``{by_state, total, max_connections}``."""
        rows = await self._fetch(
            "select coalesce(state, 'unknown') as state, count(*)::int as n "
            "from pg_stat_activity where backend_type = 'client backend' "
            "group by 1 order by 1"
        )
        by_state = {r["state"]: r["n"] for r in rows}
        max_connections = int(await self._value("show max_connections"))
        return {
            "by_state": by_state,
            "total": sum(by_state.values()),
            "max_connections": max_connections,
        }

    async def table_exists(self, table: str) -> bool:
        """Whether ``table`` (in the URL's schema unless qualified) exists."""
        return (
            await self._value("select to_regclass($1)", qualified(table, self.url.schema))
            is not None
        )

    async def row_counts(self, tables: list[str] | tuple[str, ...]) -> dict[str, int | None]:
        """Exact ``count(*)`` per table; ``None`` for a table that does not exist."""
        counts: dict[str, int | None] = {}
        for table in tables:
            name = qualified(table, self.url.schema)
            if await self._value("select to_regclass($1)", name) is None:
                counts[table] = None
            else:
                counts[table] = int(await self._value(f"select count(*) from {name}"))
        return counts

    async def prisma_migrations(self) -> list[dict[str, Any]] | None:
        """Rows of ``_prisma_migrations`` by ``started_at``; ``None`` when there is no table."""
        table = qualified("_prisma_migrations", self.url.schema)
        if await self._value("select to_regclass($1)", table) is None:
            return None
        rows = await self._fetch(
            "select id, checksum, finished_at, migration_name, logs, rolled_back_at, "
            f"started_at, applied_steps_count from {table} "
            "order by started_at, migration_name"
        )
        return [dict(r) for r in rows]

    async def advisory_lock_holders(self, key: int) -> list[dict[str, Any]]:
        """Sessions holding or waiting for the advisory lock ``key`` (one bigint key, as
        ``pg_advisory_lock(key)`` takes it) in this database: pid, user, application, client,
        since when, granted."""
        rows = await self._fetch(
            "select l.pid, l.granted, a.usename, a.application_name, "
            "a.client_addr::text as client_addr, a.backend_start, a.state "
            "from pg_locks l left join pg_stat_activity a on a.pid = l.pid "
            "where l.locktype = 'advisory' and l.objsubid = 1 "
            "and l.classid::bigint = $1 and l.objid::bigint = $2 "
            "and l.database = (select oid from pg_database where datname = current_database()) "
            "order by l.granted desc, l.pid",
            key >> 32,
            key & 0xFFFFFFFF,
        )
        return [dict(r) for r in rows]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
