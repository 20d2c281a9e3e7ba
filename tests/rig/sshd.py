"""A real OpenSSH sshd on 127.0.0.1 for integration tests (session-scoped fixture ``sshd``).

Temp host key and user key (``ssh-keygen``), a known_hosts file with the host key, and a
config that only accepts that user key. The client verifies the host key like in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.rig.services import free_port, missing
from vlad_tui.config import Target
from vlad_tui.demo import sshd as loopback_sshd


@dataclass(frozen=True)
class SshdServer:
    """A running sshd and what a client needs to log in to it."""

    host: str
    port: int
    user: str
    known_hosts: Path
    identity_file: Path
    host_fingerprint: str
    config_path: Path
    pid: int
    workdir: Path

    def target(self, name: str = "production", **overrides: Any) -> Target:
        """A :class:`Target` for this server; ``overrides`` replace any field."""
        fields: dict[str, Any] = {
            "name": name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "known_hosts": self.known_hosts,
            "identity_file": self.identity_file,
            "connect_timeout": 5.0,
        }
        fields.update(overrides)
        return Target(**fields)

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener)."""
        return _children(self.pid)

    def drop_connections(self) -> int:
        """SIGKILL every per-connection sshd process: clients see their TCP connection drop.

        Commands started with ``setsid`` survive; the rest lose their pipes. Returns how many
        processes were killed.
        """
        killed = 0
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def make_key(self, name: str) -> Path:
        """A new ed25519 key pair in the server's temp dir (not authorized); the private key."""
        path = self.workdir / name
        loopback_sshd.keygen(path)
        return path


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) comes after the ")" closing the command name.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def running_sshd() -> Iterator[SshdServer]:
    """Start sshd on a free loopback port; stop it and remove its files afterwards."""
    if not loopback_sshd.available():
        missing("OpenSSH sshd", "apt-get install openssh-server")
    work = Path(tempfile.mkdtemp(prefix="vlad-sshd-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        files = loopback_sshd.prepare(work, free_port())
        proc = loopback_sshd.start(files)
        yield SshdServer(
            host=files.host,
            port=files.port,
            user=files.user,
            known_hosts=files.known_hosts,
            identity_file=files.user_key,
            host_fingerprint=files.host_fingerprint,
            config_path=files.config,
            pid=proc.pid,
            workdir=work,
        )
    finally:
        if proc is not None:
            leftovers = _children(proc.pid)
            proc.terminate()
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshdServer]:
    """A real OpenSSH server on 127.0.0.1 that accepts :attr:`SshdServer.identity_file`."""
    with running_sshd() as server:
        yield server


__all__ = ["SshdServer", "running_sshd", "sshd"]
