"""The configuration's model: targets, project settings, contacts, monitoring thresholds.

Each TOML table's keys are the fields of its dataclass (see the ``*_KEYS`` tuples below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from vlad_tui import paths, redact
from vlad_tui.config.messages import did_you_mean, quoted
from vlad_tui.errors import ConfigError

LOCAL_HOST = "local"
DEFAULT_CRITICAL_TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")
DEFAULT_DATABASE_VARIABLE = "DATABASE_URL"
BACKUP_FORMATS = ("custom", "directory", "plain")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_BACKUP_JOBS = 64
#: The running release and the previous one are always kept.
MIN_KEEP_RELEASES = 2

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


#: The ``[monitor]`` keys that take ``{ warning = …, critical = … }``.
MONITOR_LEVELS = tuple(f.name for f in fields(MonitorConfig) if isinstance(f.default, Levels))


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
                f"no target {quoted(name)}{did_you_mean(name, self.targets)}"
                f" (configured: {', '.join(self.targets) or 'none'})",
                file=str(self.path),
                key="targets",
            ) from None


# --- the keys of each table: the fields of its dataclass ---------------------------------------


def field_names(cls: Any, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The field names of dataclass ``cls`` in declaration order, less ``without``."""
    return tuple(f.name for f in fields(cls) if f.name not in without)


#: ``path`` is where the file is, not a key in it.
TOP_KEYS = field_names(Config, without=("path",))
PROJECT_KEYS = field_names(Project)
#: ``name`` is the table's own name (``[targets.NAME]``), not a key in it.
TARGET_KEYS = field_names(Target, without=("name",))
SMOKE_KEYS = field_names(SmokeCheck)
CONTACT_KEYS = field_names(Contact)
MONITOR_KEYS = field_names(MonitorConfig)
LEVEL_KEYS = field_names(Levels)
