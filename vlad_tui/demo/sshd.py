"""An OpenSSH ``sshd`` on loopback that accepts one generated key (demo ``--ssh`` and tests).

Temp host and user keys (``ssh-keygen``), an ``authorized_keys`` with the user key only, a
known_hosts file holding the host key — the client verifies it like in production — and a
config that allows nothing else. The server logs in as the current user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vlad_tui.errors import VladError

SSHD = "/usr/sbin/sshd"


def available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None


@dataclass(frozen=True)
class SshdFiles:
    """Everything one loopback sshd needs, under ``workdir``."""

    workdir: Path
    host: str
    port: int
    user: str

    host_key = property(lambda self: self.workdir / "host_ed25519")
    user_key = property(lambda self: self.workdir / "user_ed25519")
    known_hosts = property(lambda self: self.workdir / "known_hosts")
    config = property(lambda self: self.workdir / "sshd_config")
    log = property(lambda self: self.workdir / "sshd.log")
    pid_file = property(lambda self: self.workdir / "sshd.pid")

    @property
    def host_fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]


def keygen(path: Path, comment: str = "vlad-tui") -> None:
    """A new ed25519 key pair without a passphrase at ``path`` (+ ``.pub``)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def prepare(workdir: Path, port: int, host: str = "127.0.0.1") -> SshdFiles:
    """Write keys, authorized_keys, known_hosts and sshd_config into ``workdir``."""
    if not available():
        raise VladError(
            "OpenSSH server is missing: install it with `apt-get install openssh-server`"
        )
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = SshdFiles(workdir, host, port, pwd.getpwuid(os.getuid()).pw_name)
    keygen(files.host_key, "vlad-tui-host")
    keygen(files.user_key, "vlad-tui-user")
    authorized = workdir / "authorized_keys"
    authorized.write_text(Path(f"{files.user_key}.pub").read_text())
    authorized.chmod(0o600)
    files.config.write_text(
        "\n".join(
            [
                f"ListenAddress {host}:{port}",
                f"HostKey {files.host_key}",
                f"PidFile {files.pid_file}",
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
    key_type, key = Path(f"{files.host_key}.pub").read_text().split()[:2]
    files.known_hosts.write_text(f"[{host}]:{port} {key_type} {key}\n")
    return files


def start(files: SshdFiles, *, detach: bool = False) -> subprocess.Popen[bytes]:
    """Run ``sshd -D -e`` with ``files``; wait until it listens.

    ``detach`` puts it in its own session so it outlives this process (the demo).
    """
    if os.geteuid() == 0:
        # Privilege separation directory; Debian creates it in the service unit only.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    with files.log.open("ab") as log:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(files.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=detach,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise VladError(f"sshd exited with {proc.returncode}: {files.log.read_text()[-500:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((files.host, files.port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise VladError(f"sshd did not listen on {files.host}:{files.port}")
