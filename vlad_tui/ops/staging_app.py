"""Phase 2 on the server: the app's commands against the staging database, a staging instance.

Every command runs in ``app_dir`` with ``DATABASE_URL`` pointing at the staging database. The
URL carries the password, so it reaches the remote shell through stdin
(:func:`~vlad_tui.transport.shell.with_secrets`), never the command line: Prisma (and the sample
backend's runner) read ``DATABASE_URL`` from the environment before ``.env``, so the app's
production ``.env`` is not used.

The staging instance runs under pm2 with its own name (``target.staging_name``) and port
(``target.staging_port``), ``PORT`` and ``DATABASE_URL`` in its environment; it is reached for
health and smoke checks through the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import Pm2NotRunning, VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops import health as health_ops
from vlad_tui.ops.pm2 import Pm2Process, pm2_command, pm2_list
from vlad_tui.transport.base import CommandResult, Transport
from vlad_tui.transport.shell import quote, with_secrets

#: Default limits (seconds): a migration or a build can be slow on a busy server.
COMMAND_TIMEOUT = 1800.0
START_TIMEOUT = 120.0
HEALTH_TIMEOUT = 60.0
ERROR_LOG_LINES = 20


class StagingError(VladError):
    """A staging command failed, or the staging instance did not come up."""


def in_app_dir(target: Target, command: str) -> str:
    """``command`` run by ``sh -c`` in ``app_dir`` (the configured command kept verbatim)."""
    return f"cd {quote(target.app_dir)} || exit 1; sh -c {quote(command)}"


async def run_in_app(
    target: Target,
    transport: Transport,
    command: str,
    url: DatabaseUrl,
    *,
    sink: Sink | None = None,
    timeout: float | None = COMMAND_TIMEOUT,
) -> CommandResult:
    """Run ``command`` in ``app_dir`` with ``DATABASE_URL=url`` (through stdin); its result.

    Output streams to ``sink``; a non-zero exit is returned, not raised.
    """
    wrapped, stdin = with_secrets(in_app_dir(target, command), {"DATABASE_URL": url.to_url()})
    if sink is not None:
        sink(OutputLine(f"$ cd {quote(target.app_dir)} && {command}   (DATABASE_URL → {url})"))
    return await transport.run(wrapped, stdin=stdin, sink=sink, timeout=timeout)


def _failed(what: str, command: str, result: CommandResult) -> StagingError:
    return StagingError(f"{what} `{command}` failed {result.failure()}")


#: The configured commands Phase 2 runs in app_dir, by name (``Target.<name>_command``).
APP_COMMANDS = ("migrate", "generate", "build")


async def run_configured(
    what: str,
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    *,
    sink: Sink | None = None,
    timeout: float | None = COMMAND_TIMEOUT,
) -> CommandResult:
    """Run ``target.<what>_command`` (migrate, generate, build) against ``url``.

    Raises :class:`StagingError` naming the command and its last error line on failure.
    """
    if what not in APP_COMMANDS:
        raise ValueError(f"unknown app command {what!r}")
    command = getattr(target, f"{what}_command")
    result = await run_in_app(target, transport, command, url, sink=sink, timeout=timeout)
    if not result.ok:
        raise _failed(what, command, result)
    return result


def staging_health_url(target: Target) -> str:
    """``target.health_url`` with the staging port: the staging instance's health endpoint."""
    parts = urlsplit(target.health_url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{target.staging_port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/health", parts.query, ""))


def staging_base_url(target: Target) -> str:
    """``scheme://host:staging_port`` of the staging instance (for smoke checks)."""
    parts = urlsplit(staging_health_url(target))
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


#: A staging instance restarted this many times while we wait is crash-looping.
CRASH_RESTARTS = 3


def _check_name(target: Target) -> str:
    name = target.staging_name
    if name == target.pm2_name:
        raise StagingError(
            f"the staging instance's pm2 name is production's ({name}): set staging_pm2_name"
        )
    return name


def _check_port(target: Target) -> None:
    # pm2 cluster workers share listening ports through the daemon: a staging instance on
    # production's port would join production's round-robin and serve its traffic.
    parts = urlsplit(target.health_url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return
    if port == target.staging_port:
        raise StagingError(
            f"staging_port {target.staging_port} is production's port (health_url): the "
            "staging instance would serve production's traffic; choose another staging_port"
        )


def start_command(target: Target) -> str:
    """The shell text (after the secrets prologue) that (re)starts the staging instance.

    ``pm2 delete`` first: an instance left over from an aborted run would make ``pm2 start``
    refuse ("already launched") or keep its old environment.
    """
    name = _check_name(target)
    _check_port(target)
    script, *args = shlex.split(target.start_command)
    start = f"start {quote(script)} --name {quote(name)} -i 1 --update-env"
    if args:
        start += " -- " + " ".join(quote(a) for a in args if a != "--")
    return (
        f"cd {quote(target.app_dir)} || exit 1; "
        f"PORT={int(target.staging_port)}; export PORT; "
        f"{pm2_command(target, 'delete ' + quote(name))} >/dev/null 2>&1; "
        f"{pm2_command(target, start)}"
    )


def stop_command(target: Target) -> str:
    """``pm2 delete <staging name>``."""
    return pm2_command(target, f"delete {quote(_check_name(target))}")


async def staging_processes(target: Target, transport: Transport) -> list[Pm2Process]:
    """The staging instance's pm2 processes (empty when pm2 or the instance is not running)."""
    name = _check_name(target)
    try:
        procs = await pm2_list(target, transport)
    except Pm2NotRunning:
        return []
    return [p for p in procs if p.name == name]


#: Variables of production's ``.env`` the staging instance never takes from it.
OWN_VARIABLES = frozenset({"DATABASE_URL", "PORT"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_prologue(env: Mapping[str, str]) -> tuple[str, str, list[str]]:
    """Shell reading each variable of ``env`` from stdin and exporting it: ``(prologue,
    stdin, skipped names)``. Values never reach argv; values with a newline are skipped.
    (Only secret-looking values are taught to the redactor, by :func:`redact.add_env`: a
    ``NODE_ENV=production`` must not hide the word everywhere.)"""
    prologue, lines, skipped = [], [], []
    for name, value in env.items():
        if not _ENV_NAME.match(name) or any(c in value for c in "\r\n\0"):
            skipped.append(name)
            continue
        prologue.append(f"IFS= read -r {name}; export {name}; ")
        lines.append(value + "\n")
    return "".join(prologue), "".join(lines), skipped


async def start_staging(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    *,
    env: Mapping[str, str] | None = None,
    sink: Sink | None = None,
    timeout: float = START_TIMEOUT,
    health_timeout: float = HEALTH_TIMEOUT,
) -> health_ops.HealthResult:
    """Start the staging instance under pm2 and wait until its health endpoint answers.

    ``env`` (e.g. production's ``.env`` read by vlad-tui), ``PORT`` and ``DATABASE_URL`` are in
    its environment, every value through stdin. Raises :class:`StagingError` when pm2 fails,
    the instance errors, or health never answers.
    """
    command = start_command(target)
    extra = {k: v for k, v in (env or {}).items() if k not in OWN_VARIABLES}
    redact.add_env(extra)
    prologue, extra_stdin, skipped = env_prologue(extra)
    wrapped, stdin = with_secrets(command, {"DATABASE_URL": url.to_url()})
    wrapped, stdin = prologue + wrapped, extra_stdin + stdin
    if sink is not None:
        sink(OutputLine(f"$ {command}   (DATABASE_URL → {url})"))
        if extra:
            passed = sorted(set(extra) - set(skipped))
            sink(OutputLine(f"environment through stdin: {', '.join(passed) or 'nothing'}"))
        if skipped:
            sink(OutputLine(f"not passed (multi-line values): {', '.join(skipped)}", "stderr"))
    result = await transport.run(wrapped, stdin=stdin, sink=sink, timeout=timeout)
    if not result.ok:
        raise _failed("pm2", f"start {target.staging_name}", result)
    return await wait_healthy(target, transport, sink=sink, timeout=health_timeout)


async def wait_healthy(
    target: Target,
    transport: Transport,
    *,
    sink: Sink | None = None,
    timeout: float = HEALTH_TIMEOUT,
    interval: float = 0.5,
) -> health_ops.HealthResult:
    """Poll the staging health URL until it answers below 400; fail fast (with the tail of its
    error log) if pm2 reports the instance errored, stopped, gone or crash-looping."""
    url = staging_health_url(target)
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        result = await health_ops.check_health(target, transport, url=url, timeout=5.0)
        if result.ok:
            if sink is not None:
                sink(OutputLine(result.describe()))
            return result
        polls += 1
        problem = None
        if polls % 4 == 0:
            problem = _crash(await staging_processes(target, transport))
        if problem is None and time.monotonic() >= deadline:
            problem = f"not healthy within {timeout:g} s"
        if problem is not None:
            await _error_log_tail(target, transport, sink)
            raise StagingError(
                f"the staging instance {target.staging_name} {problem}: {result.describe()} "
                f"(pm2 logs {target.staging_name})"
            )
        await asyncio.sleep(interval)


def _crash(procs: list[Pm2Process]) -> str | None:
    if not procs:
        return "is not in pm2's list"
    bad = sorted({p.status for p in procs if p.status in ("errored", "stopped")})
    if bad:
        return f"is {', '.join(bad)}"
    restarts = max(p.restarts for p in procs)
    if restarts >= CRASH_RESTARTS:
        return f"keeps crashing ({restarts} restarts)"
    return None


async def _error_log_tail(target: Target, transport: Transport, sink: Sink | None) -> None:
    """The last lines of the staging instance's error log, to the sink (best effort)."""
    if sink is None:
        return
    name = quote(target.staging_name)
    command = pm2_command(target, f"logs {name} --err --lines {ERROR_LOG_LINES} --nostream --raw")
    with contextlib.suppress(VladError):
        await transport.run(command, sink=sink, timeout=30.0)


async def stop_staging(target: Target, transport: Transport, *, sink: Sink | None = None) -> bool:
    """``pm2 delete`` the staging instance; ``False`` (no error) when it was not running."""
    name = _check_name(target)
    if not await staging_processes(target, transport):
        if sink is not None:
            sink(OutputLine(f"no staging instance {name} in pm2: nothing to stop"))
        return False
    command = stop_command(target)
    if sink is not None:
        sink(OutputLine(f"$ {command}"))
    result = await transport.run(command, sink=sink, timeout=60.0)
    if not result.ok:
        raise _failed("pm2", f"delete {name}", result)
    return True
