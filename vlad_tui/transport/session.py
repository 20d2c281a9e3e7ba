"""A long-lived POSIX shell on the target that runs many small commands, one at a time.

Every ``transport.run`` starts the target user's login shell, and whatever its rc files do
(``pyenv init``, ``nvm``, …) costs CPU on the server each time. A sampler that runs one small
command every two seconds opens one :class:`ShellSession` instead: ``/bin/sh`` reading commands
on its stdin. Each command's output (stderr merged into stdout) ends at a random end marker
followed by its exit status. Only for short read-only commands: a command that times out
closes the session (the next use opens a new one), and no process group is killed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

from vlad_tui.errors import CommandTimeout, ConnectionLost


class _Reader(Protocol):
    async def readuntil(self, separator: bytes) -> bytes: ...


class ShellSession:
    """``/bin/sh`` on the target fed through ``write``; read back through ``reader``."""

    def __init__(
        self,
        label: str,
        write: Callable[[bytes], None],
        reader: _Reader,
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.label = label
        self._write = write
        self._reader = reader
        self._close = close
        self._lock = asyncio.Lock()
        self.closed = False

    async def run(self, command: str, *, timeout: float) -> tuple[int, str]:
        """``(exit status, output)`` of ``command`` (stderr merged into the output)."""
        if self.closed:
            raise ConnectionLost(f"{self.label}: the shell session is closed")
        token = f"@@vlad-tui-end-{secrets.token_hex(8)}"
        script = f"{{ {command}\n}} 2>&1 </dev/null; printf '\\n{token} %s\\n' \"$?\"\n"
        async with self._lock:
            try:
                self._write(script.encode())
                async with asyncio.timeout(timeout):
                    data = await self._reader.readuntil(f"\n{token} ".encode())
                    status = await self._reader.readuntil(b"\n")
            except TimeoutError:
                await self.close()
                raise CommandTimeout(
                    f"{self.label}: a command of the shell session timed out after {timeout:g}s"
                ) from None
            except (OSError, EOFError, asyncio.IncompleteReadError, ConnectionError) as exc:
                await self.close()
                raise ConnectionLost(f"{self.label}: the shell session ended ({exc})") from None
            except BaseException:
                await self.close()  # cancelled half-way: its output would come next time
                raise
        text = data[: -len(token) - 2].decode("utf-8", errors="replace")
        try:
            return int(status.strip()), text
        except ValueError:
            return -1, text

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self._close()
