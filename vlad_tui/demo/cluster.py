"""A throwaway PostgreSQL cluster from the machine's server binaries (demo and test rig).

``initdb`` refuses to run as root, so under root every server command runs as the
``postgres`` system user (``runuser``) and the cluster directory is handed to it.
Setup happens before any event loop runs, so plain blocking subprocesses are fine here.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from vlad_tui.errors import VladError

SERVER_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl``: PATH first, then the newest Debian layout."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _as_root() -> bool:
    return os.geteuid() == 0


@dataclass
class PgCluster:
    """A cluster under ``root`` listening on 127.0.0.1:``port`` with password auth only."""

    root: Path
    port: int
    bin_dir: Path
    superuser: str = "vlad"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12) + "@:/%")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        user, pw = quote(self.superuser, safe=""), quote(self.password, safe="")
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / args[0]), *args[1:]]
        if _as_root():
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise VladError(f"{args[0]} failed: {' / '.join(tail)}")
        return result

    def _hand_over(self, path: Path) -> None:
        if _as_root():
            pw = pwd.getpwnam(SERVER_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def init(self) -> None:
        """Create the cluster (``initdb`` with scram-sha-256 and the superuser password)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        for path in (self.root, self.socket_dir, pwfile):
            self._hand_over(path)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start the server on 127.0.0.1 only; its socket stays inside the cluster dir."""
        if self.log_file.exists() is False:
            self.log_file.touch()
            self._hand_over(self.log_file)
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.socket_dir} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )

    def is_running(self) -> bool:
        if not self.data_dir.exists():
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False)
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise VladError(f"PostgreSQL on 127.0.0.1:{self.port} did not become ready")
