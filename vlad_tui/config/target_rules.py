"""Reading one ``[targets.NAME]`` table into a :class:`~vlad_tui.config.model.Target`.

:data:`TARGET_RULES` holds one rule per key (a test checks it against the dataclass's fields),
in the order the keys are checked: a rule may compare its key with those checked before it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vlad_tui import redact
from vlad_tui.config.messages import did_you_mean, key_text, quoted, type_name
from vlad_tui.config.model import (
    BACKUP_FORMATS,
    HTTP_METHODS,
    LOCAL_HOST,
    MAX_BACKUP_JOBS,
    MIN_KEEP_RELEASES,
    SMOKE_KEYS,
    TARGET_KEYS,
    SmokeCheck,
    Target,
    parse_database_ref,
)
from vlad_tui.config.reader import TableReader
from vlad_tui.errors import ConfigError

_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_DB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}")
_SAFE_TOKEN = re.compile(r"[^\s@'\"`;|&$<>\\]+")
_DEFAULTS = {f.name: f.default for f in fields(Target)}


class TargetReader:
    """One target's table being read: what :data:`TARGET_RULES` read so far is in ``values``."""

    def __init__(self, reader: TableReader, name: str, table: Mapping[str, Any]) -> None:
        self.reader = reader
        self.table = table
        self.prefix = f"targets.{key_text(name)}"
        self.values: dict[str, Any] = {"name": name}

    @property
    def local(self) -> bool:
        """Whether the target is this machine (as far as ``host`` has been read)."""
        return self.current("host") == LOCAL_HOST

    def current(self, key: str) -> Any:
        """``key`` as read so far, else its default."""
        return self.values.get(key, _DEFAULTS[key])

    def dotted(self, key: str) -> str:
        """``targets.NAME.key``."""
        return f"{self.prefix}.{key}"

    def fail(self, key: str, message: str) -> ConfigError:
        """The error about this target's ``key``."""
        return self.reader.fail(self.dotted(key), message)

    def get(self, key: str, kind: type) -> Any:
        """``key``, which must be a ``kind`` (see :meth:`TableReader.get`); ``None`` if absent."""
        return self.reader.get(self.table, key, self.prefix, kind)

    def text(self, key: str) -> str | None:
        """``key``, which must be a non-blank string; ``None`` if absent."""
        return self.reader.text_value(self.table, key, self.prefix)


#: Reads ``key`` from the target's table: its value, or ``None`` for the default.
Rule = Callable[[TargetReader, str], Any]


def read_target(reader: TableReader, name: str, table: Any) -> Target:
    """The target ``[targets.NAME]``, every key checked by its rule."""
    prefix = f"targets.{key_text(name)}"
    if not isinstance(table, dict):
        raise reader.fail(prefix, f"expected a table [{prefix}], got {type_name(table)}")
    if not _TARGET_NAME.fullmatch(name):
        raise reader.fail(prefix, "target names use letters, digits, - and _ only")
    reader.check_keys(table, TARGET_KEYS, prefix)
    target = TargetReader(reader, name, table)
    for key, rule in TARGET_RULES.items():
        value = rule(target, key)
        if value is not None:
            target.values[key] = value
    return Target(**target.values)


# --- rules: the SSH connection ------------------------------------------------------------------


def _host(t: TargetReader, key: str) -> str | None:
    host = t.text(key)
    if host is None:
        return None
    host = host.strip()
    if "@" in host:
        raise t.fail(key, 'put the user name in "user", not in "host"')
    if host.startswith("-") or not _SAFE_TOKEN.fullmatch(host):
        raise t.fail(key, "not a valid host name")
    return host


def _user(t: TargetReader, key: str) -> str | None:
    user = t.text(key)
    if user is not None and (user.startswith("-") or not _SAFE_TOKEN.fullmatch(user)):
        raise t.fail(key, "not a valid user name")
    return user


def _port(t: TargetReader, key: str) -> int | None:
    port = t.get(key, int)
    if port is not None and not 1 <= port <= 65535:
        raise t.fail(key, f"port {port} is out of range (1-65535)")
    return port


def _local_file(t: TargetReader, key: str) -> Path | None:
    value = t.text(key)
    return None if value is None else Path(value).expanduser()


def _ssh_config(t: TargetReader, key: str) -> Path | None:
    path = _local_file(t, key)
    if path is not None and t.local:
        raise t.fail(key, 'a "local" target does not use SSH')
    return path


def _connect_timeout(t: TargetReader, key: str) -> float | None:
    return t.reader.positive(t.table, key, t.prefix)


# --- rules: the server ---------------------------------------------------------------------------


def _server_dir(t: TargetReader, key: str) -> str | None:
    value = t.text(key)
    if value is None:
        return None
    if t.local:
        value = os.path.expanduser(value)
    if not value.startswith("/"):
        raise t.fail(key, "use an absolute path (~ is not expanded on the server)")
    return value.rstrip("/") or "/"


def _text(t: TargetReader, key: str) -> str | None:
    return t.text(key)


def _pm2_name(t: TargetReader, key: str) -> str | None:
    value = t.text(key)
    if value is not None:
        t.reader.check_pm2_name(t.dotted(key), value)
    return value


def _pm2_home(t: TargetReader, key: str) -> str | None:
    value = t.text(key)
    if value is not None and t.local:
        return os.path.expanduser(value)
    return value


def _health_url(t: TargetReader, key: str) -> str | None:
    url = t.text(key)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise t.fail(key, "not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.fail(key, 'expected an http(s) URL, e.g. "http://127.0.0.1:3335/health"')
    redact.add_url(url)
    return url


def _database(t: TargetReader, key: str) -> str | None:
    database = t.text(key)
    if database is None:
        return None
    try:
        ref = parse_database_ref(database)
    except ValueError as err:
        raise t.fail(key, str(err)) from None
    if ref.has_password:
        t.reader.require_private(t.dotted(key))
        redact.add_url(ref.value)
    return database.strip()


def _staging_database(t: TargetReader, key: str) -> str | None:
    name = t.text(key)
    if name is not None and not _DB_NAME.fullmatch(name):
        raise t.fail(key, "expected a database name (letters, digits, _, -; at most 63)")
    return name


# --- rules: releases, commands and the staging instance ------------------------------------------


def _releases_dir(t: TargetReader, key: str) -> str | None:
    """Outside ``app_dir``: production's tree is never written."""
    releases = _server_dir(t, key)
    if releases is not None:
        app = t.current("app_dir")
        if releases == app or releases.startswith(app.rstrip("/") + "/") or releases == "/":
            raise t.fail(
                key,
                f"must be outside app_dir ({quoted(app)}): releases are built beside "
                "production, never inside it",
            )
    return releases


def _keep_releases(t: TargetReader, key: str) -> int | None:
    keep = t.get(key, int)
    if keep is not None and keep < MIN_KEEP_RELEASES:
        raise t.fail(
            key,
            f"must be at least {MIN_KEEP_RELEASES} (the running release and the "
            "previous one, for a code rollback)",
        )
    return keep


def _command(t: TargetReader, key: str) -> str | None:
    return t.reader.command(t.table, key, t.prefix)


def _start_command(t: TargetReader, key: str) -> str | None:
    value = _command(t, key)
    if value is not None:
        try:
            words = shlex.split(value)
        except ValueError as err:
            raise t.fail(key, f"cannot be split: {err}") from None
        if not words:
            raise t.fail(key, "must not be empty")
    return value


def _staging_pm2_name(t: TargetReader, key: str) -> str | None:
    name = t.text(key)
    if name is not None:
        pm2_name = t.current("pm2_name")
        if name == pm2_name:
            raise t.fail(
                key,
                f"must differ from pm2_name ({quoted(pm2_name)}): stopping the staging "
                "instance would stop production",
            )
        t.reader.check_pm2_name(t.dotted(key), name)
    return name


def _staging_port(t: TargetReader, key: str) -> int | None:
    """Checked even when unset: the default may be the app's own port."""
    port = _port(t, key)
    parts = urlsplit(t.current("health_url"))
    app_port = parts.port or (443 if parts.scheme == "https" else 80)
    if (t.current(key) if port is None else port) == app_port:
        raise t.fail(
            key,
            f"the staging instance cannot use the app's port {app_port} (health_url): pm2 "
            "would send production traffic to it; choose another staging_port",
        )
    return port


def _backup_format(t: TargetReader, key: str) -> str | None:
    fmt = t.text(key)
    if fmt is not None and fmt not in BACKUP_FORMATS:
        hint = did_you_mean(fmt, BACKUP_FORMATS)
        raise t.fail(key, f"unknown format {quoted(fmt)}{hint} (custom, directory or plain)")
    return fmt


def _backup_jobs(t: TargetReader, key: str) -> int | None:
    jobs = t.get(key, int)
    if jobs is not None and not 1 <= jobs <= MAX_BACKUP_JOBS:
        raise t.fail(key, f"expected 1 to {MAX_BACKUP_JOBS} parallel jobs")
    return jobs


def _smoke_checks(t: TargetReader, key: str) -> tuple[SmokeCheck, ...] | None:
    checks = t.get(key, list)
    if checks is None:
        return None
    return tuple(
        _smoke_check(t.reader, f"{t.dotted(key)}[{i}]", entry) for i, entry in enumerate(checks, 1)
    )


def _smoke_check(reader: TableReader, prefix: str, entry: Any) -> SmokeCheck:
    if not isinstance(entry, dict):
        raise reader.fail(
            prefix,
            f'expected a table like {{ method = "GET", path = "/health", expect = 200 }}, '
            f"got {type_name(entry)}",
        )
    reader.check_keys(entry, SMOKE_KEYS, prefix)
    method = (reader.text_value(entry, "method", prefix) or "GET").strip().upper()
    if method not in HTTP_METHODS:
        raise reader.fail(
            f"{prefix}.method",
            f"unknown HTTP method {quoted(method)}{did_you_mean(method, HTTP_METHODS)}",
        )
    path = reader.text_value(entry, "path", prefix, required=True) or ""
    if not path.startswith("/") or any(c.isspace() or c in "\0#" for c in path):
        raise reader.fail(f"{prefix}.path", 'expected a path like "/health" (no spaces)')
    expect = reader.get(entry, "expect", prefix, int)
    if expect is not None and not 100 <= expect <= 599:
        raise reader.fail(f"{prefix}.expect", f"{expect} is not an HTTP status (100-599)")
    return SmokeCheck(method, path, 200 if expect is None else expect)


#: One rule per :class:`Target` key, in the order they are checked.
TARGET_RULES: dict[str, Rule] = {
    "host": _host,
    "user": _user,
    "port": _port,
    "known_hosts": _local_file,
    "identity_file": _local_file,
    "ssh_config": _ssh_config,
    "app_dir": _server_dir,
    "backup_dir": _server_dir,
    "jobs_dir": _server_dir,
    "pm2_name": _pm2_name,
    "pm2_bin": _text,
    "pm2_home": _pm2_home,
    "health_url": _health_url,
    "database": _database,
    "staging_database": _staging_database,
    "releases_dir": _releases_dir,
    "keep_releases": _keep_releases,
    "connect_timeout": _connect_timeout,
    "migrate_command": _command,
    "install_command": _command,
    "generate_command": _command,
    "build_command": _command,
    "validate_command": _command,
    "start_command": _start_command,
    "prisma_status_command": _command,
    "staging_pm2_name": _staging_pm2_name,
    "staging_port": _staging_port,
    "backup_format": _backup_format,
    "backup_jobs": _backup_jobs,
    "smoke_checks": _smoke_checks,
}
