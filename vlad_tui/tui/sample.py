"""Recorded, deterministic state for snapshots and screenshots (no network, frozen clock).

``SAMPLE_FACTS`` is what ``read_state(...).to_dict()`` returns for a healthy target;
``sample_events`` replays a phase-1 run half way through. Both are real event/fact shapes fed
through the app's normal paths (``make_app(facts=...)`` and ``VladApp.engine_sink``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlad_tui.config import Config, Contact, Project, Target
from vlad_tui.events import OutputLine
from vlad_tui.runbook.engine import ConfirmRequest
from vlad_tui.runbook.events import (
    ArtifactAdded,
    ChecklistChanged,
    EngineEvent,
    StepOutput,
    StepStatusChanged,
)

#: 2026-11-28 12:00:00 UTC.
NOW = 1_795_867_200.0

SAMPLE_FACTS: dict[str, Any] = {
    "target": "production",
    "transport": "deploy@prod-1.example.com:22",
    "server": {
        "hostname": "prod-1",
        "kernel": "Linux 6.1.0-27-amd64",
        "uptime": "41d3h",
        "load": "0.21 0.18 0.12",
        "disk_free": 48_318_382_080,
    },
    "postgres": {
        "database": "peludosclick",
        "url": "postgresql://vlad@postgres:5432/peludosclick",
        "version": "15.8",
        "size_bytes": 734_003_200,
        "connections": {"total": 9, "max_connections": 100},
    },
    "row_counts": {
        "users": 18_204,
        "medals": 52_113,
        "virgin_medals": 4_000,
        "partners": 37,
        "medal_fronts": 212,
    },
    "pm2": [
        {
            "name": "backend-vlad",
            "pm_id": 0,
            "status": "online",
            "pid": 4242,
            "mode": "cluster",
            "restarts": 2,
            "memory": 162_529_280,
            "cpu": 0.4,
            "uptime": 86_400,
        }
    ],
    "problems": [],
    "ok": True,
    "lock": None,
    "migrations": {"counts": {"applied": 31, "pending": 2, "failed": 0}},
    "backup": {
        "path": "/var/backups/backend-vlad/peludosclick-20261128-0940.dump",
        "created_at": NOW - 2.3 * 3600,
        "size": 96_468_992,
        "verified": True,
    },
}


def sample_config(root: Path) -> Config:
    """A one-target config (``production``) with the plan's emergency contacts."""
    target = Target(
        "production",
        host="prod-1.example.com",
        user="deploy",
        app_dir="/srv/backend-vlad",
        backup_dir="/var/backups/backend-vlad",
    )
    contacts = (
        Contact("Desarrollador principal", "Vlad", "+34 600 000 001", "vlad@example.com"),
        Contact("DevOps", "Marta", "+34 600 000 002"),
        Contact("DBA", "Jordi", email="dba@example.com"),
    )
    return Config(root / "config.toml", Project(), {"production": target}, contacts)


def sample_events() -> list[EngineEvent]:
    """Phase 1 half way: connectivity and facts ok, migrations running with output."""

    def line(offset: float, text: str, stream: str = "stdout") -> OutputLine:
        return OutputLine(text, stream, NOW - 60 + offset)  # type: ignore[arg-type]

    return [
        StepStatusChanged("p1.connectivity", "running", NOW - 60, None, None),
        StepOutput(
            "p1.connectivity", line(0.1, "connecting to postgresql://vlad@postgres/peludosclick")
        ),
        StepOutput("p1.connectivity", line(0.4, "select 1: ok (38 ms including connect)")),
        ArtifactAdded(
            "p1.connectivity",
            "connectivity",
            {
                "database": "postgresql://vlad@postgres:5432/peludosclick",
                "server_version": "15.8",
                "latency": 0.038,
            },
        ),
        StepStatusChanged("p1.connectivity", "ok", NOW - 60, 0.42, None),
        StepStatusChanged("p1.facts", "running", NOW - 50, None, None),
        StepStatusChanged("p1.facts", "ok", NOW - 50, 1.9, None),
        StepStatusChanged("p1.migrations", "running", NOW - 7, None, None),
        StepOutput("p1.migrations", line(53.2, "applied   20240105120000_init")),
        StepOutput("p1.migrations", line(53.3, "applied   20250310090000_virgin_medals")),
        StepOutput("p1.migrations", line(53.5, "pending   20261120100000_medal_fronts_color")),
        StepOutput(
            "p1.migrations",
            line(53.6, "warning: 1 pending migration adds a NOT NULL column", "stderr"),
        ),
        ChecklistChanged("before.team", True, "ana@bastion"),
    ]


def sample_confirm_request() -> ConfirmRequest:
    """What ``pm2 restart`` asks on the sample target."""
    return ConfirmRequest(
        step_id="cmd.pm2_restart",
        title="pm2 restart",
        commands=["PM2_HOME=/home/deploy/.pm2 pm2 restart backend-vlad --update-env"],
        host="deploy@prod-1.example.com:22",
        database="",
        consequence=(
            "Restarts every backend-vlad instance. In fork mode requests fail while the app "
            "boots (about 1.5 s); prefer pm2 reload in cluster mode."
        ),
        expected="production",
    )
