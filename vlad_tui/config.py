"""TOML configuration: targets, project settings, contacts, secret references.

(Loading and validation are filled in by load_config; the dataclasses below are the contract
the rest of the package uses.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LOCAL_HOST = "local"
DEFAULT_CRITICAL_TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")


@dataclass(frozen=True)
class Target:
    """One place vlad-tui deploys to (``[targets.NAME]``)."""

    name: str
    host: str = LOCAL_HOST
    user: str | None = None
    port: int = 22
    known_hosts: Path | None = None
    identity_file: Path | None = None
    app_dir: str = "/srv/backend-vlad"
    pm2_name: str = "backend-vlad"
    pm2_bin: str = "pm2"
    pm2_home: str | None = None
    health_url: str = "http://127.0.0.1:3335/health"
    backup_dir: str = "/var/backups/backend-vlad"
    #: ``dotenv:PATH`` (relative to app_dir), ``env:VAR``, or a URL without a password
    #: (or with one, only when the config file is private).
    database: str = "dotenv:.env"
    staging_database: str | None = None
    connect_timeout: float = 10.0

    @property
    def is_local(self) -> bool:
        return self.host == LOCAL_HOST


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


@dataclass(frozen=True)
class Config:
    path: Path
    project: Project = field(default_factory=Project)
    targets: dict[str, Target] = field(default_factory=dict)
    contacts: tuple[Contact, ...] = ()
