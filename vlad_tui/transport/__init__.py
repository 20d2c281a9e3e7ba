"""Run commands, move files and reach ports on a target: over SSH, or locally.

Use :func:`open_transport` to get the right one for a :class:`~vlad_tui.config.Target`. The
implementations are imported on first use (``SshTransport`` pulls in asyncssh, ~150 ms), so
importing :mod:`vlad_tui.transport.base` or this package costs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlad_tui.transport.base import CommandResult, DetachedJob, Endpoint, FileStat, Transport
from vlad_tui.transport.shell import env_prefix, quote, with_secrets

if TYPE_CHECKING:
    from vlad_tui.config import Target
    from vlad_tui.transport.local import LocalTransport
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

_LAZY = {
    "LocalTransport": "vlad_tui.transport.local",
    "SshTransport": "vlad_tui.transport.ssh",
}


def __getattr__(name: str) -> Any:
    """``LocalTransport`` / ``SshTransport`` on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def open_transport(target: Target) -> Transport:
    """The transport for ``target`` (local when ``target.is_local``); it connects lazily.

    Only the transport needed is imported: a local target never loads asyncssh.
    """
    if target.is_local:
        from vlad_tui.transport.local import LocalTransport

        return LocalTransport()
    from vlad_tui.transport.ssh import SshTransport

    return SshTransport(target)
