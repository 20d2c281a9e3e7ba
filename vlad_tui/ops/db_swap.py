"""The swap by rename that makes a restored database production, and its recovery.

:func:`plan_swap` / :func:`swap`: block connections, stop the app, terminate the remaining
sessions, rename production to ``<db>_failed_<ts>`` and the restored one to ``<db>``, allow
connections, start the app: downtime is seconds at any size. :func:`resume_swap` completes or
undoes a swap interrupted between the two renames from the names that exist. Everything runs
connected to the maintenance database. UI-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl, quote_ident
from vlad_tui.errors import DatabaseError, RollbackError, SwapUndone, TransportError, VladError
from vlad_tui.ops.rollback import maintenance_database, pg_error_text, pg_errors
from vlad_tui.ops.staging import MAINTENANCE_DB, SYSTEM_DATABASES
from vlad_tui.transport.base import Transport

#: How long :func:`swap` keeps terminating sessions that hold production open (seconds).
TERMINATE_WAIT = 15.0
#: How long the undo of a failed swap may take on its connection before a new one is used.
UNDO_WAIT = 10.0
#: Seconds one statement of the swap may take: a connection that died silently is noticed
#: then, not after the SSH keepalives give up (a minute, with the app stopped).
STATEMENT_WAIT = 15.0

#: The app's stop/start, as the caller does it (pm2 is the caller's business).
AppAction = Callable[[], Awaitable[object]]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


StepKind = Literal["sql", "stop", "start"]


@dataclass(frozen=True)
class SwapStep:
    """One step of the swap: a statement (``sql``) or the app's stop/start."""

    kind: StepKind
    label: str
    text: str
    #: For the two renames: (old name, new name).
    rename: tuple[str, str] | None = None


@dataclass(frozen=True)
class SwapPlan:
    """The swap's exact steps, for the confirmation; :func:`swap` runs exactly these."""

    database: str
    restore_db: str
    failed_db: str
    steps: list[SwapStep]

    def statements(self) -> list[str]:
        """Every step as shown to the operator (statements verbatim)."""
        return [s.text for s in self.steps]


def _terminate_sql(names: Iterable[str]) -> str:
    listed = ", ".join(_literal(n) for n in names)
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname IN ({listed}) AND pid <> pg_backend_pid()"
    )


AppMode = Literal["restart", "reload", "switch"]


def plan_swap(
    database: str,
    restore_db: str,
    failed_db: str,
    *,
    app: AppMode = "restart",
    stop_label: str = "stop the app",
    start_label: str = "start the app",
) -> SwapPlan:
    """The steps that make ``restore_db`` production and keep production as ``failed_db``.

    ``app``: ``restart`` stops the app before the renames and starts it after; ``reload``
    (only data changes) keeps it running and reloads it after, so every worker reconnects to
    the restored database; ``switch`` (data and code) stops it and, after the renames, starts
    the previous release instead (``start_label`` names those commands): one outage for both.
    """
    names = {database, restore_db, failed_db}
    if len(names) != 3 or names & SYSTEM_DATABASES:
        raise RollbackError(f"refusing a swap between {sorted(names)}")
    db, restored, failed = (quote_ident(n) for n in (database, restore_db, failed_db))
    steps = [
        SwapStep("sql", "block new connections", f"ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    ]
    if app != "reload":
        steps.append(SwapStep("stop", "stop the app", stop_label))
    steps += [
        SwapStep("sql", "terminate the remaining sessions", _terminate_sql([database, restore_db])),
        SwapStep(
            "sql",
            "set production aside",
            f"ALTER DATABASE {db} RENAME TO {failed}",
            (database, failed_db),
        ),
        SwapStep(
            "sql",
            "make the restore production",
            f"ALTER DATABASE {restored} RENAME TO {db}",
            (restore_db, database),
        ),
        SwapStep("sql", "allow connections", f"ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
        SwapStep(
            "sql",
            "keep the failed database readable",
            f"ALTER DATABASE {failed} ALLOW_CONNECTIONS true",
        ),
    ]
    last = {
        "restart": "start the app",
        "reload": "reload the app",
        "switch": "start the previous release",
    }[app]
    steps.append(SwapStep("start", last, start_label))
    return SwapPlan(database, restore_db, failed_db, steps)


@dataclass
class SwapResult:
    """What :func:`swap`/:func:`resume_swap` did: the steps run and the app's downtime."""

    outcome: str
    done: list[str] = field(default_factory=list)
    #: App stopped → up again (seconds), when both happened here.
    downtime: float | None = None
    #: Production's database refusing connections: blocked → allowed again (seconds).
    unavailable: float | None = None


async def _existing(conn: Any, names: Iterable[str]) -> dict[str, bool]:
    """name → ``datallowconn`` for those of ``names`` that exist."""
    rows = await conn.fetch(
        "select datname, datallowconn from pg_database where datname = any($1::text[])",
        list(names),
    )
    return {r[0]: bool(r[1]) for r in rows}


async def _rename(conn: Any, old: str, new: str, wait: float) -> None:
    """Rename ``old`` (terminating its sessions until ``wait`` s have passed; 55006 else)."""
    import asyncpg

    deadline = time.monotonic() + wait
    rename = f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}"
    while True:
        await conn.execute(_terminate_sql([old]), timeout=STATEMENT_WAIT)
        try:
            await conn.execute(rename, timeout=STATEMENT_WAIT)
            return
        except asyncpg.ObjectInUseError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def swap(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    plan: SwapPlan,
    *,
    stop_app: AppAction,
    start_app: AppAction,
    finish_app: AppAction | None = None,
    on_step: Callable[[SwapStep], None] | None = None,
    maintenance_db: str = MAINTENANCE_DB,
    terminate_wait: float = TERMINATE_WAIT,
) -> SwapResult:
    """Run ``plan`` connected to ``maintenance_db``; ``on_step`` before each step (journal it).

    ``start_app`` brings the app back as it was; ``finish_app`` (default ``start_app``) is the
    plan's last step, after the renames (a reload, or the previous release started).
    A failure before the first rename undoes what ran (connections allowed, the app started)
    and raises :class:`RollbackError`: production is unchanged. A failure of the second rename
    renames production back. Interrupted for good (vlad-tui killed) in between:
    :func:`resume_swap`.
    """
    if maintenance_db in (plan.database, plan.restore_db, plan.failed_db):
        raise RollbackError(f"the maintenance database {maintenance_db!r} cannot be swapped")
    result = SwapResult("swapped")
    stopped_at: float | None = None
    blocked_at: float | None = None
    renamed = swapped = False
    try:
        async with maintenance_database(target, transport, url, maintenance_db) as db:
            conn = db.connection
            found = await _existing(conn, [plan.database, plan.restore_db, plan.failed_db])
            if plan.database not in found or plan.restore_db not in found:
                absent = [n for n in (plan.database, plan.restore_db) if n not in found]
                raise RollbackError(f"cannot swap: database {', '.join(absent)} does not exist")
            if plan.failed_db in found:
                raise RollbackError(
                    f"cannot swap: database {plan.failed_db!r} already exists (an interrupted "
                    "swap? resume it)"
                )
            try:
                for step in plan.steps:
                    if on_step is not None:
                        on_step(step)
                    if step.kind == "stop":
                        stopped_at = time.monotonic()
                        await stop_app()
                    elif step.kind == "start":
                        await (finish_app or start_app)()
                        if stopped_at is not None:
                            result.downtime = time.monotonic() - stopped_at
                    elif step.rename is not None:
                        await _rename(conn, *step.rename, terminate_wait)
                        renamed = step.rename == (plan.database, plan.failed_db)
                        swapped = not renamed
                    else:
                        await conn.execute(step.text, timeout=STATEMENT_WAIT)
                        if step.label == "block new connections":
                            blocked_at = time.monotonic()
                        elif step.label == "allow connections" and blocked_at is not None:
                            result.unavailable = time.monotonic() - blocked_at
                    result.done.append(step.text)
            except Exception as exc:  # the app's stop/start fail in their own ways
                # (a cancellation is no failure: resume_swap finds where it stopped)
                failed_step = plan.steps[len(result.done)].label
                why = exc if isinstance(exc, VladError) else pg_error_text(exc)
                if swapped:  # production already is the restored database: no going back here
                    result.outcome = "swapped, unfinished"
                    raise RollbackError(
                        f"the databases were swapped ({plan.database!r} is the restored one, "
                        f"{plan.failed_db!r} the one set aside) but {failed_step!r} failed: "
                        f"{why}; finish it (resume the swap, or start the app)"
                    ) from None
                undone = False
                with contextlib.suppress(TimeoutError):  # a dead connection may never answer
                    undone = await asyncio.wait_for(
                        _undo_partial(conn, plan, renamed, stopped_at, start_app, result),
                        UNDO_WAIT,
                    )
                if not undone:  # that connection died with the step (SSH dropped)?
                    undone = await _undo_again(
                        target, transport, url, plan, start_app, result, maintenance_db
                    )
                if undone:
                    raise SwapUndone(
                        f"swap failed at {failed_step!r}: {why}; production is as it was (undone)"
                    ) from None
                raise RollbackError(
                    f"swap failed at {failed_step!r}: {why}; undoing it failed too: resume the swap"
                ) from None
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"swap: {exc}") from None
    except pg_errors() as exc:
        raise RollbackError(f"swap: {pg_error_text(exc)}") from None
    return result


async def _undo_again(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    plan: SwapPlan,
    start_app: AppAction,
    result: SwapResult,
    maintenance_db: str,
) -> bool:
    """Undo from the names that exist now, over a new connection (:func:`resume_swap`)."""
    try:
        again = await resume_swap(
            target, transport, url, plan, start_app=start_app, action="undo",
            maintenance_db=maintenance_db,
        )  # fmt: skip
    except VladError:
        return False
    result.done += again.done
    result.outcome = "undone"
    return True


async def _undo_partial(
    conn: Any,
    plan: SwapPlan,
    renamed: bool,
    stopped_at: float | None,
    start_app: AppAction,
    result: SwapResult,
) -> bool:
    """Put production back as it was after a failed step; whether every part succeeded."""
    db = quote_ident(plan.database)
    ok = True
    parts: list[tuple[str, Callable[[], Awaitable[object]]]] = []
    if renamed:
        parts.append(
            (
                f"undo: ALTER DATABASE {quote_ident(plan.failed_db)} RENAME TO {db}",
                lambda: _rename(conn, plan.failed_db, plan.database, TERMINATE_WAIT),
            )
        )
    statement = f"ALTER DATABASE {db} ALLOW_CONNECTIONS true"
    parts.append((f"undo: {statement}", lambda: conn.execute(statement)))
    if stopped_at is not None:
        parts.append(("undo: start the app", start_app))
    for text, part in parts:
        try:
            await part()
            result.done.append(text)
        except Exception:
            ok = False
    result.outcome = "undone" if ok else "undo failed"
    return ok


async def resume_swap(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    plan: SwapPlan,
    *,
    start_app: AppAction,
    finish_app: AppAction | None = None,
    action: Literal["complete", "undo"] = "complete",
    maintenance_db: str = MAINTENANCE_DB,
) -> SwapResult:
    """Finish a swap interrupted by a crash, from the names that exist now.

    The app is brought up with ``finish_app`` (default ``start_app``) when the restore ends up
    production, else with ``start_app`` (as it was).

    Between the two renames (production's name free, ``restore_db`` and ``failed_db`` there):
    ``complete`` renames the restore to production's name, ``undo`` renames the failed one
    back. Before the first rename: production is unchanged, its connections are allowed again.
    After the second: the swap is complete (``undo`` then refuses: going back is a new swap).
    A lone database of the three gets production's name. Connections are allowed and the app
    started in every outcome. Production is never left without a database of its name.
    """
    result = SwapResult("")
    names = [plan.database, plan.restore_db, plan.failed_db]
    try:
        async with maintenance_database(target, transport, url, maintenance_db) as handle:
            conn = handle.connection
            found = await _existing(conn, names)
            have = tuple(n in found for n in names)

            async def rename(old: str, new: str) -> None:
                await _rename(conn, old, new, TERMINATE_WAIT)
                result.done.append(
                    f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}"
                )

            if have == (False, True, True):
                if action == "complete":
                    await rename(plan.restore_db, plan.database)
                    result.outcome = "completed"
                else:
                    await rename(plan.failed_db, plan.database)
                    result.outcome = "undone"
            elif have == (True, True, False):
                result.outcome = "not swapped: production unchanged"
            elif have == (True, False, True):
                if action == "undo":
                    raise RollbackError(
                        f"the swap had completed: {plan.database!r} is the restored database "
                        f"and {plan.failed_db!r} the one set aside; going back is a new swap"
                    )
                result.outcome = "completed"
            elif have == (False, False, True):
                await rename(plan.failed_db, plan.database)
                result.outcome = "undone"
            elif have == (False, True, False):
                await rename(plan.restore_db, plan.database)
                result.outcome = "completed"
            elif have == (True, False, False):
                result.outcome = "not swapped: production unchanged"
            else:
                raise RollbackError(
                    "cannot tell how the swap ended: databases "
                    f"{', '.join(n for n in names if n in found) or 'none'} of "
                    f"{', '.join(names)} exist; look at them before anything else"
                )
            for name in (plan.database, plan.failed_db):
                if name in await _existing(conn, [name]):
                    statement = f"ALTER DATABASE {quote_ident(name)} ALLOW_CONNECTIONS true"
                    await conn.execute(statement)
                    result.done.append(statement)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"resuming the swap: {exc}") from None
    except RollbackError:
        raise
    except pg_errors() as exc:
        raise RollbackError(f"resuming the swap: {pg_error_text(exc)}") from None
    if result.outcome == "completed":
        await (finish_app or start_app)()
        result.done.append(plan.steps[-1].label)
    else:
        await start_app()
        result.done.append("start the app")
    return result


def describe_plan(plan: SwapPlan) -> Mapping[str, Any]:
    """JSON-ready form of a plan for the journal."""
    return {
        "database": plan.database,
        "restore_db": plan.restore_db,
        "failed_db": plan.failed_db,
        "steps": [{"kind": s.kind, "label": s.label, "text": s.text} for s in plan.steps],
    }


__all__ = [
    "AppAction",
    "AppMode",
    "SwapPlan",
    "SwapResult",
    "SwapStep",
    "describe_plan",
    "plan_swap",
    "resume_swap",
    "swap",
]
