"""pm2 commands the plan lists as "useful commands": logs, show, restart/reload, stop/start.

The commands are built here (one place, every value quoted) so the confirmation modal shows
exactly what runs. ``pm2 restart`` in fork mode drops requests while the app boots; ``pm2 reload``
in cluster mode keeps serving (design.md §2.6) — the consequence text says so.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.events import Sink
from vlad_tui.ops.pm2 import pm2_command
from vlad_tui.transport.base import CommandResult, Transport

Pm2Action = Literal["restart", "reload", "stop", "start"]
DEFAULT_LOG_LINES = 100
#: Lines of the error stream that count as errors in "No hay errores en los logs".
ERROR_PATTERN = re.compile(r"error|exception|fatal|unhandled|uncaught|panic", re.IGNORECASE)

CONSEQUENCES: dict[str, str] = {
    "restart": (
        "pm2 restarts the app: in fork mode the app stops serving for its boot time (requests "
        "fail meanwhile); reload in cluster mode keeps serving."
    ),
    "reload": (
        "pm2 reloads the app: in cluster mode it replaces instances one by one and keeps "
        "serving; in fork mode it behaves like restart and the app stops serving for its boot "
        "time."
    ),
    "stop": "pm2 stops the app: it stops serving every request until it is started again.",
    "start": "pm2 starts the app: it begins serving requests with the code now on disk.",
}


def logs_command(
    target: Target, lines: int = DEFAULT_LOG_LINES, *, errors_only: bool = False
) -> str:
    """``pm2 logs NAME --lines N --nostream --raw [--err]`` (never follows)."""
    args = f"logs {shlex.quote(target.pm2_name)} --lines {int(lines)} --nostream --raw"
    if errors_only:
        args += " --err"
    return pm2_command(target, args)


def show_command(target: Target) -> str:
    return pm2_command(target, f"show {shlex.quote(target.pm2_name)}")


def action_command(target: Target, action: Pm2Action) -> str:
    """``pm2 restart|reload|stop|start NAME`` (``--update-env`` not used: the .env is read by the
    app itself)."""
    if action not in CONSEQUENCES:
        raise ValueError(f"unknown pm2 action {action!r}")
    return pm2_command(target, f"{action} {shlex.quote(target.pm2_name)}")


def _failure(what: str, target: Target, result: CommandResult) -> VladError:
    reason = result.reason(None)
    if result.exit_status == 127:
        reason = f"{target.pm2_bin} not found ({reason})"
    return VladError(f"{what} failed on {target.name}: {reason}")


async def pm2_logs(
    target: Target,
    transport: Transport,
    *,
    lines: int = DEFAULT_LOG_LINES,
    errors_only: bool = False,
    sink: Sink | None = None,
) -> CommandResult:
    """The last ``lines`` log lines of the app (streamed to ``sink``)."""
    result = await transport.run(
        logs_command(target, lines, errors_only=errors_only), sink=sink, timeout=60
    )
    if not result.ok:
        raise _failure("pm2 logs", target, result)
    return result


async def pm2_show(
    target: Target, transport: Transport, *, sink: Sink | None = None
) -> CommandResult:
    """``pm2 show NAME`` (streamed to ``sink``)."""
    result = await transport.run(show_command(target), sink=sink, timeout=60)
    if not result.ok:
        raise _failure("pm2 show", target, result)
    return result


async def pm2_action(
    target: Target, transport: Transport, action: Pm2Action, *, sink: Sink | None = None
) -> CommandResult:
    """Run ``pm2 ACTION NAME`` (destructive: callers confirm first)."""
    result = await transport.run(action_command(target, action), sink=sink, timeout=120)
    if not result.ok:
        raise _failure(f"pm2 {action}", target, result)
    return result


@dataclass(frozen=True)
class LogErrors:
    """Error lines found in the last lines of the app's error log."""

    scanned: int
    errors: tuple[str, ...]


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: What pm2 itself prints around the log lines: never the app's own output.
_PM2_HEADERS = (
    re.compile(r"^\[TAILING\] Tailing last \d+ lines for \[.*\] process"),
    re.compile(r"^\S.*\.log last \d+ lines:$"),
    re.compile(r"^\[PM2\]"),
)


def is_pm2_header(line: str) -> bool:
    """True for pm2's own lines (``…-error-0.log last 200 lines:``, ``[TAILING] …``)."""
    plain = _ANSI.sub("", line).strip()
    return any(h.search(plain) for h in _PM2_HEADERS)


def app_lines(text: str) -> list[str]:
    """The app's own non-empty log lines in ``pm2 logs`` output (ANSI colour and pm2's
    headers removed)."""
    lines = (_ANSI.sub("", ln).rstrip() for ln in text.splitlines())
    return [ln for ln in lines if ln.strip() and not is_pm2_header(ln)]


def find_errors(text: str) -> LogErrors:
    """The one way error lines are read from ``pm2 logs`` output (pure): the app's lines
    (:func:`app_lines`) matching :data:`ERROR_PATTERN`."""
    lines = app_lines(text)
    return LogErrors(len(lines), tuple(ln for ln in lines if ERROR_PATTERN.search(ln)))


async def read_error_log(target: Target, transport: Transport, lines: int) -> LogErrors:
    """Error lines in the last ``lines`` lines of the app's error log.

    With ``--raw``, pm2 prints the error log's lines on its *stderr* and only its headers on
    stdout (pm2 6): both streams are read.
    """
    result = await pm2_logs(target, transport, lines=lines, errors_only=True)
    return find_errors(f"{result.stdout}\n{result.stderr}")
