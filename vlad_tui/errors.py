"""Errors that carry a one-line, operator-facing message.

Every error raised by the core subclasses :class:`VladError`; the CLI and the TUI print
``str(error)`` and never a traceback. Where a caller decides on what happened, a subclass says
it (:class:`SwapUndone`, :class:`NewWorkersRemoved`, ...): the message is only for people.
"""

from __future__ import annotations

from vlad_tui import redact


class VladError(Exception):
    """Base class: ``str(err)`` is one clear line for the operator."""


class ConfigError(VladError):
    """The configuration file is missing, malformed or invalid.

    ``file``, ``key`` and ``line`` (when known) are part of the message.
    """

    def __init__(self, message: str, *, file: str = "", key: str = "", line: int | None = None):
        self.file = file
        self.key = key
        self.line = line
        where = file
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        parts = [p for p in (where, f"[{key}]" if key else "") if p]
        super().__init__(f"{' '.join(parts)}: {message}" if parts else message)


class TransportError(VladError):
    """Running a command or reaching the target failed."""


class HostKeyUnknown(TransportError):
    """The server's host key is not in known_hosts; never accepted silently.

    Carries what an operator needs to decide (``host``, ``port``, ``algorithm``,
    ``fingerprint``) and what trusting it writes: ``public_key`` (OpenSSH format, empty when
    the key could not be read) to ``known_hosts``.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        port: int = 22,
        algorithm: str = "",
        fingerprint: str = "",
        public_key: str = "",
        known_hosts: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.algorithm = algorithm
        self.fingerprint = fingerprint
        self.public_key = public_key
        self.known_hosts = known_hosts
        super().__init__(message)


class HostKeyChanged(TransportError):
    """The server's host key differs from the one in known_hosts (never connected).

    ``expected``: the fingerprints known_hosts holds for the host; ``offered``: the server's.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        port: int = 22,
        expected: tuple[str, ...] = (),
        offered: str = "",
        known_hosts: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.expected = expected
        self.offered = offered
        self.known_hosts = known_hosts
        super().__init__(message)


class AuthenticationFailed(TransportError):
    """The SSH server rejected every credential offered."""


class Unreachable(TransportError):
    """The host could not be reached (DNS, refused, no route)."""


class CommandTimeout(TransportError):
    """A command ran longer than its timeout and was stopped."""


class CommandFailed(TransportError):
    """A command run with ``check=True`` exited with a non-zero status (or a signal)."""

    def __init__(self, message: str, *, exit_status: int | None = None, stderr: str = ""):
        self.exit_status = exit_status
        self.stderr = stderr
        super().__init__(message)


class ConnectionLost(TransportError):
    """The connection dropped while a command was running."""


class DatabaseError(VladError):
    """PostgreSQL could not be reached or a query failed."""


class DatabaseMissing(DatabaseError):
    """The database the URL names does not exist (on a server that answered)."""


class Pm2Error(VladError):
    """pm2 is missing on the target, failed, or printed something unreadable."""


class Pm2NotRunning(Pm2Error):
    """No pm2 daemon runs for the app's user (vlad-tui never starts one: it would list no
    processes)."""


class ReleaseError(VladError):
    """A release could not be built, checked, switched to or pruned."""


class NewWorkersRemoved(ReleaseError):
    """A switch started the new release's workers beside the old ones; they did not come up
    (or the caller's check refused them) and were deleted again: the old workers keep serving,
    production is unchanged."""


class RollbackError(VladError):
    """A rollback step was refused or failed; the message says what to fix, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(redact.scrub(" ".join(message.split())))


class SwapUndone(RollbackError):
    """The database swap failed part way and was undone: production is as it was, and the next
    attempt starts afresh."""


class StepBusy(VladError):
    """A step that changes the target was asked to start while another change runs."""
