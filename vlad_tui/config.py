"""TOML configuration: targets, project settings, contacts, secret references.

:func:`resolve_config_path` finds the file (``--config`` > ``$VLAD_TUI_CONFIG`` > the platform
default), :func:`load_config` reads and validates it, :func:`write_template` writes a commented
starting point. Bad input only ever raises :class:`~vlad_tui.errors.ConfigError`, whose message
names the file, the dotted key and (when known) the line.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import stat
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from vlad_tui import paths, redact
from vlad_tui.errors import ConfigError

LOCAL_HOST = "local"
DEFAULT_CRITICAL_TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")
ENV_VAR = "VLAD_TUI_CONFIG"
DEFAULT_DATABASE_VARIABLE = "DATABASE_URL"
BACKUP_FORMATS = ("custom", "directory", "plain")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_BACKUP_JOBS = 64


@dataclass(frozen=True)
class DatabaseRef:
    """Where a target's database URL comes from.

    ``dotenv``: ``value`` is a path on the target (relative to ``app_dir`` unless absolute)
    of a ``.env`` file, ``variable`` the key to read (``DATABASE_URL``, or ``PATH#VAR``).
    ``env``: ``value`` is a variable of the local environment.
    ``url``: ``value`` is the URL itself.
    """

    kind: Literal["dotenv", "env", "url"]
    value: str
    variable: str = DEFAULT_DATABASE_VARIABLE

    @property
    def has_password(self) -> bool:
        """True for a literal URL that carries a password."""
        return self.kind == "url" and bool(redact.url_password(self.value))

    def dotenv_path(self, app_dir: str) -> str:
        """The ``.env`` path on the target (``dotenv`` references only)."""
        if self.kind != "dotenv":
            raise ValueError(f"not a dotenv reference: {self.kind}")
        if self.value.startswith("/"):
            return self.value
        return f"{app_dir.rstrip('/')}/{self.value}"


def parse_database_ref(value: str) -> DatabaseRef:
    """Parse a ``database`` setting; raise ``ValueError`` (with an operator message) if bad."""
    value = value.strip()
    if value.startswith("dotenv:"):
        path, _, variable = value[len("dotenv:") :].partition("#")
        path, variable = path.strip(), variable.strip() or DEFAULT_DATABASE_VARIABLE
        if not path:
            raise ValueError('"dotenv:" needs a path, e.g. "dotenv:.env"')
        if not _ENV_NAME.fullmatch(variable):
            raise ValueError(f'"{variable}" is not a valid variable name (in "dotenv:PATH#VAR")')
        return DatabaseRef("dotenv", path, variable)
    if value.startswith("env:"):
        name = value[len("env:") :].strip()
        if not _ENV_NAME.fullmatch(name):
            raise ValueError('"env:" needs a variable name, e.g. "env:DATABASE_URL"')
        return DatabaseRef("env", name, name)
    if value.startswith(("postgres://", "postgresql://")):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError("the database URL is malformed (check host and port)") from None
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError("the database URL has no host")
        return DatabaseRef("url", value)
    raise ValueError(
        'expected "dotenv:PATH" (the app\'s .env on the target), "env:VAR" (a local environment '
        'variable) or a "postgresql://" URL'
    )


@dataclass(frozen=True)
class SmokeCheck:
    """One automated smoke check: ``method path`` must answer ``expect`` (an HTTP status)."""

    method: str = "GET"
    path: str = "/health"
    expect: int = 200

    def describe(self) -> str:
        return f"{self.method} {self.path} → {self.expect}"


DEFAULT_SMOKE_CHECKS: tuple[SmokeCheck, ...] = (SmokeCheck(),)


@dataclass(frozen=True)
class Target:
    """One place vlad-tui deploys to (``[targets.NAME]``)."""

    name: str
    #: An SSH host name or a ``Host`` alias of the SSH config, or ``local``.
    host: str = LOCAL_HOST
    #: Unset: the SSH config's ``User`` (or the login name).
    user: str | None = None
    #: Unset: the SSH config's ``Port`` (or 22).
    port: int | None = None
    known_hosts: Path | None = None
    identity_file: Path | None = None
    #: The OpenSSH client config to read instead of ``~/.ssh/config``.
    ssh_config: Path | None = None
    app_dir: str = "/srv/backend-vlad"
    pm2_name: str = "backend-vlad"
    pm2_bin: str = "pm2"
    pm2_home: str | None = None
    health_url: str = "http://127.0.0.1:3335/health"
    backup_dir: str = "/var/backups/backend-vlad"
    #: Where detached jobs (restores, migrations) keep their output and exit status on the
    #: server: ``<jobs_dir>/vlad-tui-jobs/<job id>``.
    jobs_dir: str = "/tmp"
    #: ``dotenv:PATH`` (relative to app_dir), ``env:VAR``, or a URL without a password
    #: (or with one, only when the config file is private).
    database: str = "dotenv:.env"
    staging_database: str | None = None
    connect_timeout: float = 10.0
    #: Commands run in ``app_dir`` (through the target's shell, DATABASE_URL via stdin).
    migrate_command: str = "npx prisma migrate deploy"
    #: Installs the dependencies of a release (run in the release's directory).
    install_command: str = "npm ci"
    generate_command: str = "npx prisma generate"
    build_command: str = "npm run build"
    #: Checks the release's Prisma schema before Phase 3 migrates (run in the release).
    validate_command: str = "npx --no-install prisma validate"
    #: What pm2 starts for the staging instance (relative to ``app_dir``), plus its arguments.
    start_command: str = "dist/main.js"
    #: Optional, e.g. ``npx prisma migrate status``; unset: only the direct table read.
    prisma_status_command: str | None = None
    #: pm2 name of the staging instance; default ``<pm2_name>-staging``.
    staging_pm2_name: str | None = None
    staging_port: int = 3336
    backup_format: Literal["custom", "directory", "plain"] = "custom"
    backup_jobs: int = 2
    smoke_checks: tuple[SmokeCheck, ...] = DEFAULT_SMOKE_CHECKS
    #: Where releases are built beside production; default ``<app_dir>/../<name>-releases``.
    releases_dir: str | None = None
    #: Releases kept on the server (the running and the previous one are never removed).
    keep_releases: int = 5

    @property
    def is_local(self) -> bool:
        return self.host == LOCAL_HOST

    @property
    def ssh_label(self) -> str:
        """``user@host:port`` with what is set; unset parts come from the SSH config."""
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}" + (f":{self.port}" if self.port is not None else "")

    @property
    def staging_name(self) -> str:
        """The staging instance's pm2 name (``staging_pm2_name`` or ``<pm2_name>-staging``)."""
        return self.staging_pm2_name or f"{self.pm2_name}-staging"

    @property
    def releases_path(self) -> str:
        """``releases_dir``, or ``<parent of app_dir>/<basename of app_dir>-releases``."""
        if self.releases_dir:
            return self.releases_dir
        parent, _, base = self.app_dir.rstrip("/").rpartition("/")
        return f"{parent}/{base or 'app'}-releases"

    @property
    def database_ref(self) -> DatabaseRef:
        """The parsed ``database`` setting (validated by :func:`load_config`)."""
        return parse_database_ref(self.database)


@dataclass(frozen=True)
class Contact:
    role: str
    name: str
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class Project:
    name: str = "backend-vlad"
    critical_tables: tuple[str, ...] = DEFAULT_CRITICAL_TABLES
    backup_max_age_hours: float = 24.0
    #: Job directories on the server that nothing used for this many days are removed.
    jobs_keep_days: float = 7.0
    #: The run journal's root; ``None``: the user state dir (``paths.runs_dir()``).
    journal_dir: Path | None = None
    #: Where off-box copies of backups go on this machine; ``None``: ``paths.backups_dir()``.
    local_backup_dir: Path | None = None


@dataclass(frozen=True)
class Levels:
    """A metric's warning and critical levels (``warning < critical``)."""

    warning: float
    critical: float


@dataclass(frozen=True)
class MonitorConfig:
    """``[monitor]``: sampling and the thresholds of Phase 4 and the daily checks.

    ``latency_ms`` (p95), ``error_rate`` (error log lines per minute), ``memory_mb`` (the
    largest worker's RSS) and ``restarts`` are measured against the baseline: the levels are
    what the metric may rise *over* the baseline (restarts: since it). Without a baseline the
    first three compare the value itself; ``connections_share`` (of ``max_connections``) and
    ``non_2xx_rate`` (share of probes not answering as expected) are always absolute.
    """

    interval: float = 2.0
    retention_days: float = 30.0
    latency_ms: Levels = Levels(300.0, 1000.0)
    error_rate: Levels = Levels(5.0, 30.0)
    memory_mb: Levels = Levels(150.0, 400.0)
    connections_share: Levels = Levels(0.7, 0.9)
    restarts: Levels = Levels(1.0, 3.0)
    non_2xx_rate: Levels = Levels(0.05, 0.25)


MONITOR_LEVELS = (
    "latency_ms",
    "error_rate",
    "memory_mb",
    "connections_share",
    "restarts",
    "non_2xx_rate",
)


@dataclass(frozen=True)
class Config:
    path: Path
    project: Project = field(default_factory=Project)
    targets: dict[str, Target] = field(default_factory=dict)
    contacts: tuple[Contact, ...] = ()
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @property
    def journal_dir(self) -> Path:
        """Where runs are journaled: ``[project] journal_dir``, else the user state dir."""
        return self.project.journal_dir or paths.runs_dir()

    @property
    def local_backup_dir(self) -> Path:
        """Where off-box backup copies go: ``[project] local_backup_dir``, else user data."""
        return self.project.local_backup_dir or paths.backups_dir()

    def target(self, name: str | None = None) -> Target:
        """The target called ``name``; without a name, the only one.

        Raises :class:`ConfigError` for an unknown name (with a hint) or when a name is needed.
        """
        if name is None:
            if len(self.targets) == 1:
                return next(iter(self.targets.values()))
            raise ConfigError(
                f"several targets ({', '.join(self.targets)}); choose one with --target",
                file=str(self.path),
                key="targets",
            )
        try:
            return self.targets[name]
        except KeyError:
            raise ConfigError(
                f"no target {_quoted(name)}{_did_you_mean(name, self.targets)}"
                f" (configured: {', '.join(self.targets) or 'none'})",
                file=str(self.path),
                key="targets",
            ) from None


# --- locating the file ------------------------------------------------------------------------


def resolve_config_path(explicit: Path | str | None = None) -> Path:
    """The config file to use: ``explicit`` > ``$VLAD_TUI_CONFIG`` > the platform default."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return paths.config_file()


# --- loading ---------------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_TABLE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}")
_DB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}")
_SAFE_TOKEN = re.compile(r"[^\s@'\"`;|&$<>\\]+")
_TOML_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")

_TOP_KEYS = ("project", "targets", "contacts", "monitor")
_MONITOR_KEYS = ("interval", "retention_days", *MONITOR_LEVELS)
_LEVEL_KEYS = ("warning", "critical")
_PROJECT_KEYS = (
    "name",
    "critical_tables",
    "backup_max_age_hours",
    "jobs_keep_days",
    "journal_dir",
    "local_backup_dir",
)
_TARGET_KEYS = (
    "host",
    "user",
    "port",
    "known_hosts",
    "identity_file",
    "ssh_config",
    "app_dir",
    "pm2_name",
    "pm2_bin",
    "pm2_home",
    "health_url",
    "backup_dir",
    "jobs_dir",
    "database",
    "staging_database",
    "connect_timeout",
    "migrate_command",
    "install_command",
    "generate_command",
    "build_command",
    "validate_command",
    "start_command",
    "prisma_status_command",
    "staging_pm2_name",
    "staging_port",
    "backup_format",
    "backup_jobs",
    "smoke_checks",
    "releases_dir",
    "keep_releases",
)
_CONTACT_KEYS = ("role", "name", "phone", "email")
_SMOKE_KEYS = ("method", "path", "expect")
_COMMAND_KEYS = (
    "migrate_command",
    "install_command",
    "generate_command",
    "build_command",
    "validate_command",
    "start_command",
)
#: The running release and the previous one are always kept.
MIN_KEEP_RELEASES = 2

_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def load_config(path: Path | str) -> Config:
    """Read and validate the configuration file at ``path``.

    A literal database password is accepted only when the file is private (no group/other
    permission bits); it is then taught to :mod:`vlad_tui.redact`.
    """
    path = Path(path).expanduser()
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(path, text, err) from None
    return _Validator(path, text).config(data)


def _read(path: Path) -> str:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "no configuration file here; create one with `vlad-tui init` "
            f"(or pass --config PATH, or set {ENV_VAR})",
            file=file,
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", file=file) from None
    except PermissionError:
        raise ConfigError("permission denied reading the configuration file", file=file) from None
    except OSError as err:
        raise ConfigError(
            f"cannot read the configuration file: {err.strerror}", file=file
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", file=file, line=line) from None


def _syntax_error(path: Path, text: str, err: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(err)
    line: int | None = None
    if match := _TOML_LINE.search(message):
        line, column = int(match[1]), int(match[2])
        message = f"{message[: match.start()]} (column {column})"
    elif match := _TOML_END.search(message):
        line = max(1, len(_lines_of(text)))
        message = f"{message[: match.start()]} (at end of file)"
    key = _enclosing_table(text, line) if line else ""
    return ConfigError(f"invalid TOML: {message}", file=str(path), key=key, line=line)


_KEY_PART = re.compile(r"""[ \t]*(?:([A-Za-z0-9_-]+)|("(?:[^"\\\n]|\\.)*")|('[^'\n]*'))[ \t]*""")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_text(part: str) -> str:
    """One part of a dotted key as the messages show it: bare, else a quoted TOML string
    (so ``""``, ``"a.b"`` and ``"a]b"`` stay visible and unambiguous)."""
    return part if _BARE_KEY.fullmatch(part) else _quoted(part)


def _quoted(value: str) -> str:
    """A value from the file, quoted on one line (quotes and anything unprintable escaped)."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _lines_of(text: str) -> list[str]:
    """The file's lines as TOML counts them: only ``\\n`` ends one (``str.splitlines`` also
    splits at U+0085, U+2028 and U+2029, which TOML allows inside strings and comments)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _key_part(token: str) -> str:
    if token.startswith('"'):
        try:  # TOML's own escapes (\u00e9, \"): let tomllib decode them
            return next(iter(tomllib.loads(f"{token} = 0")))
        except (tomllib.TOMLDecodeError, StopIteration):
            return token[1:-1]
    return token.strip("'")


def _parse_key(raw: str, pos: int) -> tuple[str, int] | None:
    """The dotted key (bare, "basic" and 'literal' parts) at ``raw[pos:]`` and where it ends."""
    parts: list[str] = []
    while match := _KEY_PART.match(raw, pos):
        parts.append(key_text(_key_part(match[1] or match[2] or match[3])))
        pos = match.end()
        if not raw.startswith(".", pos):
            return ".".join(parts), pos
        pos += 1
    return None


def _line_key(raw: str) -> tuple[str, str] | None:
    """``("array" | "table" | "key", dotted key)`` of a header or ``key = value`` line."""
    stripped = raw.lstrip()
    offset = len(raw) - len(stripped)
    for opener, closer, kind in (("[[", "]]", "array"), ("[", "]", "table"), ("", "=", "key")):
        if not stripped.startswith(opener):
            continue
        parsed = _parse_key(raw, offset + len(opener))
        if parsed is not None and raw.startswith(closer, parsed[1]):
            return kind, parsed[0]
        if opener:
            return None
    return None


def _enclosing_table(text: str, line: int) -> str:
    """The table header in force before ``line`` (best effort, for syntax errors)."""
    name = ""
    for raw in _lines_of(text)[: line - 1]:
        found = _line_key(raw)
        if found is not None and found[0] != "key":
            name = found[1]
    return name


def _key_lines(text: str) -> dict[str, int]:
    """Map dotted keys (``targets.production.port``, ``contacts[1].name``) to line numbers."""
    found: dict[str, int] = {}
    section = ""
    counts: dict[str, int] = {}
    for number, raw in enumerate(_lines_of(text), 1):
        line_key = _line_key(raw)
        if line_key is None:
            continue
        kind, name = line_key
        if kind == "array":
            counts[name] = counts.get(name, 0) + 1
            section = f"{name}[{counts[name]}]"
            found.setdefault(name, number)
            found.setdefault(section, number)
        elif kind == "table":
            section = name
            found.setdefault(section, number)
        else:
            found.setdefault(f"{section}.{name}" if section else name, number)
    return found


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _type_name(value: Any) -> str:
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            return name
    return "a date/time" if value is not None else "nothing"


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self._lines: dict[str, int] | None = None

    # errors

    def check_pm2_name(self, key: str, value: str) -> None:
        """pm2 would read a name starting with "-" as an option; a name is one line."""
        if not value.strip() or value.startswith("-") or "\n" in value or "\r" in value:
            raise self.fail(key, 'must be one line that does not start with "-" (a pm2 name)')

    def fail(self, key: str, message: str) -> ConfigError:
        if self._lines is None:
            self._lines = _key_lines(self.text)
        line = None
        probe = key
        while probe:
            if probe in self._lines:
                line = self._lines[probe]
                break
            # An inline array of tables has no header per entry: try the array's own key.
            unindexed = re.sub(r"\[\d+\]$", "", probe)
            if unindexed != probe and unindexed in self._lines:
                line = self._lines[unindexed]
                break
            probe = probe.rpartition(".")[0]
        return ConfigError(message, file=str(self.path), key=key, line=line)

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                dotted = f"{prefix}.{key_text(key)}" if prefix else key_text(key)
                hint = _did_you_mean(key, allowed) or f"; known keys: {', '.join(allowed)}"
                raise self.fail(dotted, f"unknown key {_quoted(key)}{hint}")

    # typed getters (``None`` when absent and not required)

    def get(
        self, table: Mapping[str, Any], key: str, prefix: str, kind: type, *, required: bool = False
    ) -> Any:
        dotted = f"{prefix}.{key}"
        if key not in table:
            if required:
                raise self.fail(dotted, f"missing required key {_quoted(key)}")
            return None
        value = table[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            expected = dict(_TOML_TYPES)[kind]
            raise self.fail(dotted, f"expected {expected}, got {_type_name(value)}")
        return value

    def text_value(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        *,
        required: bool = False,
        allow_empty: bool = False,
    ) -> str | None:
        value = self.get(table, key, prefix, str, required=required)
        if value is not None and not allow_empty and not value.strip():
            raise self.fail(f"{prefix}.{key}", "must not be empty")
        return value

    def positive(self, table: Mapping[str, Any], key: str, prefix: str) -> float | None:
        value = self.get(table, key, prefix, float)
        if value is not None and not value > 0:
            raise self.fail(f"{prefix}.{key}", "must be greater than 0")
        return None if value is None else float(value)

    # sections

    def config(self, data: dict[str, Any]) -> Config:
        self.check_keys(data, _TOP_KEYS, "")
        project = Project()
        if "project" in data:
            if not isinstance(data["project"], dict):
                raise self.fail("project", f"expected a table, got {_type_name(data['project'])}")
            project = self.project(data["project"])
        targets_table = data.get("targets")
        if targets_table is not None and not isinstance(targets_table, dict):
            raise self.fail("targets", f"expected a table, got {_type_name(targets_table)}")
        if not targets_table:
            raise self.fail(
                "targets",
                "no targets defined; add a [targets.production] table (`vlad-tui init` writes "
                "an example)",
            )
        targets = {name: self.target(name, table) for name, table in targets_table.items()}
        contacts: tuple[Contact, ...] = ()
        if "contacts" in data:
            raw = data["contacts"]
            if not isinstance(raw, list):
                raise self.fail("contacts", f"expected [[contacts]] entries, got {_type_name(raw)}")
            contacts = tuple(self.contact(i, entry) for i, entry in enumerate(raw, 1))
        monitor = MonitorConfig()
        if "monitor" in data:
            if not isinstance(data["monitor"], dict):
                raise self.fail("monitor", f"expected a table, got {_type_name(data['monitor'])}")
            monitor = self.monitor(data["monitor"])
        return Config(
            path=self.path, project=project, targets=targets, contacts=contacts, monitor=monitor
        )

    def monitor(self, table: dict[str, Any]) -> MonitorConfig:
        self.check_keys(table, _MONITOR_KEYS, "monitor")
        kwargs: dict[str, Any] = {}
        for key in ("interval", "retention_days"):
            value = self.positive(table, key, "monitor")
            if value is not None:
                kwargs[key] = value
        defaults = MonitorConfig()
        for key in MONITOR_LEVELS:
            raw = self.get(table, key, "monitor", dict)
            if raw is None:
                continue
            prefix = f"monitor.{key}"
            self.check_keys(raw, _LEVEL_KEYS, prefix)
            default: Levels = getattr(defaults, key)
            warning = self.positive(raw, "warning", prefix)
            critical = self.positive(raw, "critical", prefix)
            levels = Levels(
                default.warning if warning is None else warning,
                default.critical if critical is None else critical,
            )
            if not levels.warning < levels.critical:
                raise self.fail(prefix, "warning must be below critical")
            if key in ("connections_share", "non_2xx_rate") and levels.critical > 1:
                raise self.fail(f"{prefix}.critical", "is a share: at most 1")
            kwargs[key] = levels
        return MonitorConfig(**kwargs)

    def project(self, table: dict[str, Any]) -> Project:
        self.check_keys(table, _PROJECT_KEYS, "project")
        kwargs: dict[str, Any] = {}
        name = self.text_value(table, "name", "project")
        if name is not None:
            kwargs["name"] = name
        tables = self.get(table, "critical_tables", "project", list)
        if tables is not None:
            for i, item in enumerate(tables):
                if not isinstance(item, str) or not _TABLE_NAME.fullmatch(item):
                    shown = _quoted(item) if isinstance(item, str) else _type_name(item)
                    raise self.fail(
                        "project.critical_tables",
                        f"item {i + 1} ({shown}) is not a table name (letters, digits, _; "
                        "optionally schema.table)",
                    )
            kwargs["critical_tables"] = tuple(tables)
        max_age = self.positive(table, "backup_max_age_hours", "project")
        if max_age is not None:
            kwargs["backup_max_age_hours"] = max_age
        keep = self.positive(table, "jobs_keep_days", "project")
        if keep is not None:
            kwargs["jobs_keep_days"] = keep
        for key in ("journal_dir", "local_backup_dir"):
            directory = self.text_value(table, key, "project")
            if directory is not None:
                kwargs[key] = self.local_dir(directory)
        return Project(**kwargs)

    def local_dir(self, text: str) -> Path:
        """A directory on this machine: ``~`` expanded, relative to the config file's dir."""
        path = Path(text.strip()).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()

    def target(self, name: str, table: Any) -> Target:
        prefix = f"targets.{key_text(name)}"
        if not isinstance(table, dict):
            raise self.fail(prefix, f"expected a table [{prefix}], got {_type_name(table)}")
        if not _TARGET_NAME.fullmatch(name):
            raise self.fail(prefix, "target names use letters, digits, - and _ only")
        self.check_keys(table, _TARGET_KEYS, prefix)
        kw: dict[str, Any] = {"name": name}

        host = self.text_value(table, "host", prefix)
        if host is not None:
            host = host.strip()
            if "@" in host:
                raise self.fail(f"{prefix}.host", 'put the user name in "user", not in "host"')
            if host.startswith("-") or not _SAFE_TOKEN.fullmatch(host):
                raise self.fail(f"{prefix}.host", "not a valid host name")
            kw["host"] = host
        local = kw.get("host", LOCAL_HOST) == LOCAL_HOST

        user = self.text_value(table, "user", prefix)
        if user is not None:
            if user.startswith("-") or not _SAFE_TOKEN.fullmatch(user):
                raise self.fail(f"{prefix}.user", "not a valid user name")
            kw["user"] = user

        port = self.get(table, "port", prefix, int)
        if port is not None:
            if not 1 <= port <= 65535:
                raise self.fail(f"{prefix}.port", f"port {port} is out of range (1-65535)")
            kw["port"] = port

        for key in ("known_hosts", "identity_file", "ssh_config"):
            value = self.text_value(table, key, prefix)
            if value is not None:
                kw[key] = Path(value).expanduser()
        if local and "ssh_config" in kw:
            raise self.fail(f"{prefix}.ssh_config", 'a "local" target does not use SSH')

        for key in ("app_dir", "backup_dir", "jobs_dir", "releases_dir"):
            value = self.text_value(table, key, prefix)
            if value is not None:
                if local:
                    value = os.path.expanduser(value)
                if not value.startswith("/"):
                    raise self.fail(
                        f"{prefix}.{key}",
                        "use an absolute path (~ is not expanded on the server)",
                    )
                kw[key] = value.rstrip("/") or "/"

        for key in ("pm2_name", "pm2_bin"):
            value = self.text_value(table, key, prefix)
            if value is not None:
                if key == "pm2_name":
                    self.check_pm2_name(f"{prefix}.{key}", value)
                kw[key] = value
        pm2_home = self.text_value(table, "pm2_home", prefix)
        if pm2_home is not None:
            kw["pm2_home"] = os.path.expanduser(pm2_home) if local else pm2_home

        health_url = self.text_value(table, "health_url", prefix)
        if health_url is not None:
            try:
                parts = urlsplit(health_url)
                parts.port  # noqa: B018 - validates the port
            except ValueError:
                raise self.fail(f"{prefix}.health_url", "not a valid URL") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.fail(
                    f"{prefix}.health_url",
                    'expected an http(s) URL, e.g. "http://127.0.0.1:3335/health"',
                )
            redact.add_url(health_url)
            kw["health_url"] = health_url

        database = self.text_value(table, "database", prefix)
        if database is not None:
            try:
                ref = parse_database_ref(database)
            except ValueError as err:
                raise self.fail(f"{prefix}.database", str(err)) from None
            if ref.has_password:
                self.require_private(f"{prefix}.database")
                redact.add_url(ref.value)
            kw["database"] = database.strip()

        staging = self.text_value(table, "staging_database", prefix)
        if staging is not None:
            if not _DB_NAME.fullmatch(staging):
                raise self.fail(
                    f"{prefix}.staging_database",
                    "expected a database name (letters, digits, _, -; at most 63)",
                )
            kw["staging_database"] = staging

        self.check_releases(kw, table, prefix)
        timeout = self.positive(table, "connect_timeout", prefix)
        if timeout is not None:
            kw["connect_timeout"] = timeout
        kw.update(
            self.deploy_settings(
                table,
                prefix,
                kw.get("pm2_name", Target.pm2_name),
                kw.get("health_url", Target.health_url),
            )
        )
        return Target(**kw)

    def check_releases(self, kw: dict[str, Any], table: Mapping[str, Any], prefix: str) -> None:
        """``releases_dir`` outside ``app_dir`` (production's tree is never written);
        ``keep_releases`` at least the running and the previous release."""
        releases = kw.get("releases_dir")
        if releases is not None:
            app = kw.get("app_dir", Target.app_dir)
            if releases == app or releases.startswith(app.rstrip("/") + "/") or releases == "/":
                raise self.fail(
                    f"{prefix}.releases_dir",
                    f"must be outside app_dir ({_quoted(app)}): releases are built beside "
                    "production, never inside it",
                )
        keep = self.get(table, "keep_releases", prefix, int)
        if keep is not None:
            if keep < MIN_KEEP_RELEASES:
                raise self.fail(
                    f"{prefix}.keep_releases",
                    f"must be at least {MIN_KEEP_RELEASES} (the running release and the "
                    "previous one, for a code rollback)",
                )
            kw["keep_releases"] = keep

    def command(self, table: Mapping[str, Any], key: str, prefix: str) -> str | None:
        value = self.text_value(table, key, prefix)
        if value is None:
            return None
        if any(c in value for c in "\n\r\0"):
            raise self.fail(f"{prefix}.{key}", "must be a single line")
        return value.strip()

    def deploy_settings(
        self, table: Mapping[str, Any], prefix: str, pm2_name: str, health_url: str
    ) -> dict[str, Any]:
        """The Phase 1-2 keys: commands, the staging instance, backups, smoke checks."""
        kw: dict[str, Any] = {}
        for key in (*_COMMAND_KEYS, "prisma_status_command"):
            value = self.command(table, key, prefix)
            if value is not None:
                kw[key] = value
        if "start_command" in kw:
            try:
                words = shlex.split(kw["start_command"])
            except ValueError as err:
                raise self.fail(f"{prefix}.start_command", f"cannot be split: {err}") from None
            if not words:
                raise self.fail(f"{prefix}.start_command", "must not be empty")
        staging_name = self.text_value(table, "staging_pm2_name", prefix)
        if staging_name is not None:
            if staging_name == pm2_name:
                raise self.fail(
                    f"{prefix}.staging_pm2_name",
                    f"must differ from pm2_name ({_quoted(pm2_name)}): stopping the staging "
                    "instance would stop production",
                )
            self.check_pm2_name(f"{prefix}.staging_pm2_name", staging_name)
            kw["staging_pm2_name"] = staging_name
        port = self.get(table, "staging_port", prefix, int)
        if port is not None:
            if not 1 <= port <= 65535:
                raise self.fail(f"{prefix}.staging_port", f"port {port} is out of range (1-65535)")
            kw["staging_port"] = port
        parts = urlsplit(health_url)
        app_port = parts.port or (443 if parts.scheme == "https" else 80)
        if kw.get("staging_port", Target.staging_port) == app_port:
            raise self.fail(
                f"{prefix}.staging_port",
                f"the staging instance cannot use the app's port {app_port} (health_url): pm2 "
                "would send production traffic to it; choose another staging_port",
            )
        fmt = self.text_value(table, "backup_format", prefix)
        if fmt is not None:
            if fmt not in BACKUP_FORMATS:
                hint = _did_you_mean(fmt, BACKUP_FORMATS)
                raise self.fail(
                    f"{prefix}.backup_format",
                    f"unknown format {_quoted(fmt)}{hint} (custom, directory or plain)",
                )
            kw["backup_format"] = fmt
        jobs = self.get(table, "backup_jobs", prefix, int)
        if jobs is not None:
            if not 1 <= jobs <= MAX_BACKUP_JOBS:
                raise self.fail(
                    f"{prefix}.backup_jobs", f"expected 1 to {MAX_BACKUP_JOBS} parallel jobs"
                )
            kw["backup_jobs"] = jobs
        checks = self.get(table, "smoke_checks", prefix, list)
        if checks is not None:
            kw["smoke_checks"] = tuple(
                self.smoke_check(f"{prefix}.smoke_checks[{i}]", entry)
                for i, entry in enumerate(checks, 1)
            )
        return kw

    def smoke_check(self, prefix: str, entry: Any) -> SmokeCheck:
        if not isinstance(entry, dict):
            raise self.fail(
                prefix,
                f'expected a table like {{ method = "GET", path = "/health", expect = 200 }}, '
                f"got {_type_name(entry)}",
            )
        self.check_keys(entry, _SMOKE_KEYS, prefix)
        method = (self.text_value(entry, "method", prefix) or "GET").strip().upper()
        if method not in HTTP_METHODS:
            raise self.fail(
                f"{prefix}.method",
                f"unknown HTTP method {_quoted(method)}{_did_you_mean(method, HTTP_METHODS)}",
            )
        path = self.text_value(entry, "path", prefix, required=True) or ""
        if not path.startswith("/") or any(c.isspace() or c in "\0#" for c in path):
            raise self.fail(f"{prefix}.path", 'expected a path like "/health" (no spaces)')
        expect = self.get(entry, "expect", prefix, int)
        if expect is not None and not 100 <= expect <= 599:
            raise self.fail(f"{prefix}.expect", f"{expect} is not an HTTP status (100-599)")
        return SmokeCheck(method, path, 200 if expect is None else expect)

    def require_private(self, key: str) -> None:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            mode = 0o777
        if mode & 0o077:
            fix = f"chmod 600 {shlex.quote(str(self.path))}"
            raise self.fail(
                key,
                f"the URL contains a password but the file is readable by others "
                f"(mode {mode:04o}); run `{fix}`, or keep the password out of "
                'the file: database = "env:VAR" or "dotenv:.env" (or PGPASSWORD / ~/.pgpass)',
            )

    def contact(self, index: int, entry: Any) -> Contact:
        prefix = f"contacts[{index}]"
        if not isinstance(entry, dict):
            raise self.fail(prefix, f"expected a [[contacts]] table, got {_type_name(entry)}")
        self.check_keys(entry, _CONTACT_KEYS, prefix)
        return Contact(
            role=self.text_value(entry, "role", prefix, required=True) or "",
            name=self.text_value(entry, "name", prefix, required=True) or "",
            phone=self.text_value(entry, "phone", prefix, allow_empty=True) or "",
            email=self.text_value(entry, "email", prefix, allow_empty=True) or "",
        )


# --- the template ----------------------------------------------------------------------------

_TEMPLATE = """\
# vlad-tui configuration (TOML). `vlad-tui init` wrote this file; edit it, then run
#   vlad-tui check --target production
#
# Secrets never belong here. The database password is read, at run time, from one of:
#   database = "dotenv:.env"      DATABASE_URL in <app_dir>/.env on the target (read over SFTP,
#                                 the Prisma convention); "dotenv:PATH#VAR" picks another key
#   database = "env:VAR"          a variable of the environment vlad-tui runs in
#   database = "postgresql://user@host:5432/db"
#                                 a URL without a password: libpq's PGPASSWORD or ~/.pgpass
# A URL *with* a password is refused unless this file is private (chmod 600).

[project]
name = "backend-vlad"
# Tables whose row counts are snapshotted before and compared after each deploy.
critical_tables = ["users", "medals", "virgin_medals", "partners", "medal_fronts"]
# A backup older than this (hours) does not count as "fresh" for a deploy or a rollback.
backup_max_age_hours = 24
# Long commands that change a database (restores, migrations) run detached on the server, so a
# dropped connection does not stop them and vlad-tui re-attaches; each keeps its output and exit
# status in a directory under the target's jobs_dir. Those nothing used for this many days are
# removed when the next job starts.
jobs_keep_days = 7
# Where this machine keeps the run journal and the off-box copies of backups (relative paths
# are relative to this file). Default: the user's state and data directories.
# journal_dir = "~/.local/state/vlad-tui/runs"
# local_backup_dir = "~/.local/share/vlad-tui/backups"

[targets.production]
# SSH host (or a Host alias from ~/.ssh/config), or "local" when vlad-tui runs on the server.
host = "prod.example.com"
# SSH user and port; leave them out to use ~/.ssh/config (User, Port), else your login name
# and 22. HostName, IdentityFile, ProxyJump and UserKnownHostsFile come from there too.
user = "deploy"
# port = 22
# Host keys are always verified: against this file if set, else ~/.ssh/config's
# UserKnownHostsFile, else ~/.ssh/known_hosts.
# known_hosts = "~/.ssh/known_hosts"
# Optional: a private key file. ssh-agent and ~/.ssh/config are honoured otherwise.
# identity_file = "~/.ssh/id_ed25519"
# Optional: another OpenSSH client config to read instead of ~/.ssh/config.
# ssh_config = "~/.ssh/config"
# Where backend-vlad is checked out on the server (absolute path).
app_dir = "/srv/backend-vlad"
# The pm2 process name, the pm2 binary and (optionally) PM2_HOME on the server.
pm2_name = "backend-vlad"
pm2_bin = "pm2"
# pm2_home = "/home/deploy/.pm2"
# Checked after every deploy and during monitoring (as seen from the server).
health_url = "http://127.0.0.1:3335/health"
# Where backups are written on the server.
backup_dir = "/var/backups/backend-vlad"
# Where detached jobs keep their output and exit status on the server (<jobs_dir>/vlad-tui-jobs;
# a directory that survives a reboot lets vlad-tui tell how a job ended even after one).
# jobs_dir = "/tmp"
# See the top of this file. Never a password here.
database = "dotenv:.env"
# The staging copy restored from the backup; default "<database name>_staging".
# staging_database = "peludosclick_staging"
# Seconds to wait for SSH and PostgreSQL connections.
connect_timeout = 10
# Backups (Phase 1 and 3): pg_dump format "custom" (-Fc), "directory" (-Fd, dumped and restored
# with backup_jobs parallel jobs) or "plain" (SQL; cannot be listed or restored in parallel).
backup_format = "custom"
backup_jobs = 2
# Commands run in app_dir on the server. For staging (Phase 2) DATABASE_URL points at the
# staging database; it reaches the command through stdin, never the command line.
migrate_command = "npx prisma migrate deploy"
generate_command = "npx prisma generate"
build_command = "npm run build"
# Releases: each deploy's code is copied from app_dir (what is checked out there: git HEAD or the
# working tree; node_modules, dist, .env and .git left out) into <releases_dir>/<release id>,
# where install_command, generate_command and build_command run; production's app_dir is never
# written. pm2 then runs <release>/<start_command> from the release, whose .env is a link to
# app_dir's. Default releases_dir: next to app_dir, "<app_dir>-releases".
install_command = "npm ci"
# Phase 3 checks the release's schema with it before migrating (DATABASE_URL → production).
validate_command = "npx --no-install prisma validate"
# releases_dir = "/srv/backend-vlad-releases"
# Releases to keep (at least 2: the running and the previous one); the deploy names older ones
# for the palette's "Remove an old release" (nothing is removed automatically).
keep_releases = 5
# Optional: also show Prisma's own status (the migration table is always read directly).
# prisma_status_command = "npx prisma migrate status"
# The staging instance pm2 runs in Phase 2: the script (relative to app_dir) and arguments,
# its pm2 name (default "<pm2_name>-staging") and its port (PORT in its environment).
start_command = "dist/main.js"
# staging_pm2_name = "backend-vlad-staging"
staging_port = 3336
# HTTP smoke checks against the staging instance (Phase 2) and the app (Phase 4), health first.
smoke_checks = [
    { method = "GET", path = "/health", expect = 200 },
]

# Careful on a shared server: production's Phase 2 starts (and later deletes) a pm2 process named
# "<pm2_name>-staging" on staging_port (here "backend-vlad-staging" on 3336), the names below.
# Give this target's app, or production's staging_pm2_name/staging_port, other values if this
# is a separate long-running deployment.
[targets.staging]
host = "prod.example.com"
user = "deploy"
app_dir = "/srv/backend-vlad-staging"
pm2_name = "backend-vlad-staging"
health_url = "http://127.0.0.1:3336/health"
backup_dir = "/var/backups/backend-vlad-staging"
database = "dotenv:.env"
# Its own Phase 2 instance needs a port of its own (3336 is its app's).
staging_port = 3337

# Phase 4 monitoring and the daily checks (`vlad-tui check`, from cron on days 2-7). Every sample
# is recorded beside the journal for retention_days. Each threshold has a warning and a critical
# level; latency_ms (p95), error_rate (error log lines per minute), memory_mb (largest worker)
# and restarts count what the metric rose over the pre-deploy baseline (restarts: since it).
[monitor]
interval = 2
retention_days = 30
latency_ms = { warning = 300, critical = 1000 }
error_rate = { warning = 5, critical = 30 }
memory_mb = { warning = 150, critical = 400 }
restarts = { warning = 1, critical = 3 }
# Shares, always absolute: connections of max_connections, probes not answering as expected.
connections_share = { warning = 0.7, critical = 0.9 }
non_2xx_rate = { warning = 0.05, critical = 0.25 }

# Emergency contacts, shown in the app (repeat the block for each person).
[[contacts]]
role = "Lead developer"
name = "Name Surname"
phone = "+00 000 000 000"
email = "lead@example.com"

[[contacts]]
role = "DevOps"
name = "Name Surname"
phone = ""

[[contacts]]
role = "DBA"
name = "Name Surname"
phone = ""

[[contacts]]
role = "Support"
name = "Name Surname"
phone = ""
"""


def render_template() -> str:
    """A commented configuration template (production and staging targets, contacts)."""
    return _TEMPLATE


def write_template(path: Path | str, force: bool = False) -> Path:
    """Write :func:`render_template` to ``path`` (mode 0600); refuse to overwrite without force.

    A missing parent directory is created private (0700); an existing one is left alone.
    """
    path = Path(path).expanduser()
    file = str(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError("already exists; use --force to overwrite it", file=file)
    if path.is_dir():
        raise ConfigError("is a directory, not a configuration file", file=file)
    try:
        if not path.parent.exists():
            paths.ensure_private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(render_template())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise ConfigError(
            f"cannot write the configuration file: {err.strerror}", file=file
        ) from None
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, SmokeCheck):
        inner = ", ".join(
            f"{f.name} = {_toml_value(getattr(value, f.name))}" for f in fields(value)
        )
        return "{ " + inner + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML string


def dump_config(
    targets: Iterable[Target], project: Project | None = None, contacts: Iterable[Contact] = ()
) -> str:
    """TOML text for these targets: the inverse of :func:`load_config` (defaults left out)."""
    lines: list[str] = []
    if project is not None:
        lines.append("[project]")
        lines += [
            f"{f.name} = {_toml_value(getattr(project, f.name))}"
            for f in fields(project)
            if getattr(project, f.name) is not None
        ]
    for target in targets:
        lines.append(f"\n[targets.{target.name}]")
        for f in fields(target):
            value = getattr(target, f.name)
            if f.name != "name" and value is not None and value != f.default:
                lines.append(f"{f.name} = {_toml_value(value)}")
    for contact in contacts:
        lines.append("\n[[contacts]]")
        lines += [f"{f.name} = {_toml_value(getattr(contact, f.name))}" for f in fields(contact)]
    return "\n".join(lines) + "\n"
