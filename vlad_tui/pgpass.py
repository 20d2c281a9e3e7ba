"""libpq's password sources for a URL without a password: ``PGPASSWORD``, then the password file.

vlad-tui reaches the database through an SSH-forwarded socket, so libpq-style matching inside
the driver would compare ``~/.pgpass`` with the socket's path instead of the URL's host. The
lookup is done here against the URL as written; the result is learnt by the redactor and sent
to remote tools through stdin like any other password.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = ["lookup", "passfile"]


def passfile(environ: Mapping[str, str] | None = None) -> Path:
    """``PGPASSFILE``, else ``~/.pgpass`` (``HOME`` of ``environ``)."""
    env = os.environ if environ is None else environ
    if env.get("PGPASSFILE"):
        return Path(env["PGPASSFILE"])
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".pgpass"


def _fields(line: str) -> list[str]:
    """A line's ``:``-separated fields, with libpq's ``\\:`` and ``\\\\`` escapes."""
    out, current, escaped = [], [], False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":" and len(out) < 4:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def _matches(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value


def lookup(
    host: str,
    port: int,
    database: str,
    user: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The password libpq would use for these connection parameters, or ``None``.

    ``PGPASSWORD`` wins; otherwise the first matching line of the password file. As libpq
    does, a password file readable by group or others is ignored, and ``localhost`` matches a
    Unix-socket host.
    """
    env = os.environ if environ is None else environ
    if env.get("PGPASSWORD"):
        return env["PGPASSWORD"]
    path = passfile(env)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    hosts = {host, "localhost"} if host.startswith("/") else {host}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _fields(line)
        if len(fields) != 5:
            continue
        h, p, d, u, password = fields
        if (
            (h == "*" or h in hosts)
            and _matches(p, str(port))
            and _matches(d, database)
            and _matches(u, user)
        ):
            return password or None
    return None
