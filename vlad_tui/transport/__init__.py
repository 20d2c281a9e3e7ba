"""Run commands, move files and reach ports on a target: over SSH, or locally.

Use :func:`open_transport` to get the right one for a :class:`~vlad_tui.config.Target`.
"""

from __future__ import annotations

from vlad_tui.config import Target
from vlad_tui.transport.base import CommandResult, DetachedJob, Endpoint, FileStat, Transport
from vlad_tui.transport.local import LocalTransport
from vlad_tui.transport.shell import env_prefix, quote, with_secrets
from vlad_tui.transport.ssh import SshTransport

__all__ = [
    "CommandResult",
    "DetachedJob",
    "Endpoint",
    "FileStat",
    "LocalTransport",
    "SshTransport",
    "Transport",
    "env_prefix",
    "open_transport",
    "quote",
    "with_secrets",
]


def open_transport(target: Target) -> Transport:
    """The transport for ``target`` (local when ``target.is_local``); it connects lazily."""
    if target.is_local:
        return LocalTransport()
    return SshTransport(target)
