"""Private tunnel sockets: Unix sockets in a ``0700`` directory only this user can enter.

A loopback TCP port is open to every local user, so on a shared bastion a forward to
production's database or app would be theirs too. A socket inside a directory created by
:func:`tempfile.mkdtemp` (``0700``, owned by us, atomically created) cannot be reached by
anyone else. Each forward gets its own sub-directory holding ``.s.PGSQL.<port>``: the name
libpq and asyncpg look for when given the directory as ``host``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile

#: sun_path holds 108 bytes on Linux (104 on macOS): keep well below.
_MAX_SOCKET_PATH = 100
_LONGEST_TAIL = len("/vlad-tui-xxxxxxxx/99999/.s.PGSQL.65535")


def socket_name(port: int) -> str:
    """The file name asyncpg/libpq expect for ``port`` in a socket directory."""
    return f".s.PGSQL.{port}"


def _base_dir() -> str:
    """Where the private directory goes: the user's runtime dir when it is really theirs."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [runtime] if runtime else []
    candidates += [tempfile.gettempdir(), "/tmp"]
    for base in candidates:
        try:
            st = os.stat(base)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or len(base) + _LONGEST_TAIL > _MAX_SOCKET_PATH:
            continue
        if base == runtime and (st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077):
            continue
        return base
    return "/tmp"


class PrivateSockets:
    """The socket paths of one transport's forwards; the directory is made on first use and
    removed by :meth:`close`. A forward keeps its path across reconnects."""

    def __init__(self) -> None:
        self._root: str | None = None
        self._paths: dict[tuple[str, int], str] = {}
        self._made = 0

    @property
    def root(self) -> str | None:
        """The private directory, once a forward made it."""
        return self._root

    def path_for(self, host: str, port: int) -> str:
        """The socket path for a forward to ``host:port`` (its directory exists, 0700)."""
        key = (host, port)
        path = self._paths.get(key)
        if path is not None and os.path.isdir(os.path.dirname(path)):
            return path
        if self._root is None or not os.path.isdir(self._root):
            self._root = tempfile.mkdtemp(prefix="vlad-tui-", dir=_base_dir())
        self._made += 1
        sub = os.path.join(self._root, str(self._made))
        os.mkdir(sub, 0o700)
        path = os.path.join(sub, socket_name(port))
        self._paths[key] = path
        return path

    @staticmethod
    def clear(path: str) -> None:
        """Remove a socket left by a closed listener, so the path can be listened on again."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def close(self) -> None:
        """Remove the directory and every socket in it."""
        root, self._root = self._root, None
        self._paths.clear()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
