"""pm2 for the sandbox and the test rig: find it (or install it from npm), drive its daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vlad_tui.errors import VladError

#: The pm2 that the sandbox installs when none is on PATH: the version .tools/package-lock.json
#: pins for the tests (scripts/upgrade-deps.sh moves both; a test keeps them equal).
PM2_VERSION = "6.0.14"
PM2_PACKAGE = f"pm2@{PM2_VERSION}"


def find_pm2(*extra: Path) -> Path | None:
    """pm2 on PATH, else the first existing ``extra`` candidate."""
    on_path = shutil.which("pm2")
    if on_path:
        return Path(on_path)
    return next((p for p in extra if p.exists()), None)


def install_pm2(prefix: Path) -> Path:
    """``npm install --prefix PREFIX pm2`` from the npm registry; the pm2 binary."""
    if shutil.which("npm") is None:
        raise VladError("npm is missing: install Node.js and npm (apt-get install nodejs npm)")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), PM2_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    binary = prefix / "node_modules" / ".bin" / "pm2"
    if done.returncode != 0 or not binary.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise VladError(f"npm install {PM2_PACKAGE} failed: {tail[0]}")
    return binary


@dataclass(frozen=True)
class Pm2:
    """A pm2 binary and its private daemon (``PM2_HOME``)."""

    bin: Path
    home: Path

    @property
    def env(self) -> dict[str, str]:
        # The app reads PORT and DATABASE_URL from its .env; the caller's must not leak in.
        env = {k: v for k, v in os.environ.items() if k not in ("PORT", "DATABASE_URL")}
        env["PM2_HOME"] = str(self.home)
        return env

    def run(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        """Run ``pm2 ARGS`` against this daemon; its stdout."""
        proc = subprocess.run(
            [str(self.bin), *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise VladError(f"pm2 {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def jlist(self) -> list[dict]:
        return json.loads(self.run("jlist"))

    def start_app(
        self,
        name: str,
        app_dir: Path,
        *,
        instances: int | None = None,
        wait_ready: bool = True,
        script: str = "server.js",
    ) -> None:
        """``pm2 start SCRIPT --name NAME`` in ``app_dir`` (cluster mode with ``instances``)."""
        args = ["start", script, "--name", name]
        if instances:
            args += ["-i", str(instances)]
        if wait_ready:
            args += ["--wait-ready", "--listen-timeout", "15000"]
        self.run(*args, cwd=app_dir)

    def delete(self, name: str) -> None:
        self.run("delete", name, check=False)

    def kill(self) -> None:
        self.run("kill", check=False)
