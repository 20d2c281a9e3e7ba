"""Where the written plan (``deploy-plan.es.md``) is wrong, and what vlad-tui does instead.

Shown from the command palette ("Why not …?") so an operator who knows the plan can see why a
familiar command is missing. Data only; design.md §2 is the longer version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deviation:
    plan: str  # what the written plan says to run
    problem: str  # what goes wrong
    instead: str  # what vlad-tui does


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "npx prisma migrate reset --force (rollback)",  # text for the operator, never sent
        "drops the schema and re-applies every migration: on production it destroys all data, "
        "including the backup just restored",
        "never sent to a target; the rollback restores a verified backup into a new database "
        "and swaps by renaming, keeping the failed database",
    ),
    Deviation(
        "psql < backup.sql into the live database",
        "collides with existing objects and leaves a half-restored database",
        "restore into a new database with pg_restore -j, verify it, then swap by rename "
        "(app stopped, sessions terminated)",
    ),
    Deviation(
        "npx prisma db pull --force (connectivity check)",
        "overwrites prisma/schema.prisma on the server",
        "a read-only check: connect, select 1, server version",
    ),
    Deviation(
        "pg_dump … > backup.sql (plain SQL)",
        "cannot be listed, restored selectively or in parallel",
        "pg_dump -Fc by default (or -Fd -j N), verified with sha256 and pg_restore --list",
    ),
    Deviation(
        "the password in the document and on command lines",
        "visible in ps, shell history, logs",
        "secrets come from env:, dotenv: or ~/.pgpass, reach commands through stdin, "
        "and are scrubbed from every screen, log, journal and report",
    ),
    Deviation(
        "pm2 restart in fork mode",
        "drops requests while the app boots",
        "pm2 reload in cluster mode is offered; restart asks for a typed confirmation",
    ),
    Deviation(
        "long commands over a plain SSH session",
        "a dropped connection kills migrate deploy or a restore half-way",
        "long destructive commands run detached on the server and are re-attached",
    ),
    Deviation(
        "nothing stops two engineers deploying at once",
        "two deploys interleave migrations and restarts",
        "a deploy lock on the server (holder, run id, reason); a stale lock is broken only "
        "after a confirmation",
    ),
)


def render() -> str:
    """The deviations as plain text for a read-only screen."""
    blocks = [
        f"Plan:     {d.plan}\nProblem:  {d.problem}\nvlad-tui: {d.instead}" for d in DEVIATIONS
    ]
    return "Where vlad-tui departs from the written plan, and why\n\n" + "\n\n".join(blocks)
