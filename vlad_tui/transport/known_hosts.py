"""Trusting a host key: the line OpenSSH and asyncssh read, appended to a known_hosts file.

Only ever called after an operator compared the fingerprint and said yes (the TUI's host-key
modal); nothing here turns host key checking off. A new file is created 0600 (its directory
0700, as ``~/.ssh`` is); an existing file keeps its mode and its lines.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ALGORITHM = re.compile(r"(ssh|ecdsa|sk)-[A-Za-z0-9@._-]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_HOST = re.compile(r"[^\s,#\[\]]+")


def entry(host: str, port: int, public_key: str) -> str:
    """The known_hosts line for ``public_key`` (``"ssh-ed25519 AAAA…"``) at ``host:port``.

    Port 22 is written bare (``host``), any other as ``[host]:port``, as OpenSSH does.
    Raises ValueError for a host or key that cannot be one well-formed line.
    """
    if not _HOST.fullmatch(host):
        raise ValueError(f"not a host name for known_hosts: {host!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    words = public_key.split()
    if (
        len(words) < 2
        or not _ALGORITHM.fullmatch(words[0])
        or not _BASE64.fullmatch(words[1])
        or "\n" in public_key
    ):
        raise ValueError("not an OpenSSH public key")
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {words[0]} {words[1]}"


def append(path: Path | str, host: str, port: int, public_key: str) -> Path:
    """Append ``host:port``'s key to the known_hosts file at ``path`` (``~`` expanded).

    Durable when it returns (fsync'd). Raises ValueError for a malformed key, OSError when the
    file cannot be written.
    """
    line = entry(host, port, public_key)
    file = Path(path).expanduser()
    if not file.parent.exists():
        file.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        # A last line without its newline would be joined to ours.
        lead = b""
        if size and os.pread(fd, 1, size - 1) != b"\n":
            lead = b"\n"
        os.write(fd, lead + line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return file
