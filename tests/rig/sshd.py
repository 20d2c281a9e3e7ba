"""A real OpenSSH sshd on 127.0.0.1 for integration tests (session-scoped fixture ``sshd``).

Temp host key and user key (``ssh-keygen``), a known_hosts file with the host key, and a
config that only accepts that user key. The client verifies the host key like in production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.rig.services import free_port, missing
from vlad_tui.config import Target

SSHD = "/usr/sbin/sshd"


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
        _keygen(path)
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


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vlad-tui-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {host}:{port}: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running_sshd() -> Iterator[SshdServer]:
    """Start sshd on a free loopback port; stop it and remove its files afterwards."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        missing("OpenSSH sshd", "apt-get install openssh-server")
    if os.geteuid() == 0:
        # Privilege separation directory; Debian creates it in the service unit only.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    work = Path(tempfile.mkdtemp(prefix="vlad-sshd-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        host_key = work / "host_ed25519"
        user_key = work / "user_ed25519"
        _keygen(host_key)
        _keygen(user_key)
        authorized = work / "authorized_keys"
        authorized.write_text((work / "user_ed25519.pub").read_text())
        authorized.chmod(0o600)
        port = free_port()
        host = "127.0.0.1"
        config = work / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {host}:{port}",
                    f"HostKey {host_key}",
                    f"PidFile {work / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "AllowTcpForwarding yes",
                    "MaxSessions 100",
                    "MaxStartups 100:30:200",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        known_hosts = work / "known_hosts"
        host_pub = (work / "host_ed25519.pub").read_text().split()
        known_hosts.write_text(f"[{host}]:{port} {host_pub[0]} {host_pub[1]}\n")
        log = work / "sshd.log"
        with log.open("wb") as log_file:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        _wait_port(host, port, proc, log)
        yield SshdServer(
            host=host,
            port=port,
            user=user,
            known_hosts=known_hosts,
            identity_file=user_key,
            host_fingerprint=_fingerprint(work / "host_ed25519.pub"),
            config_path=config,
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
