"""``vlad-tui demo``: a local rehearsal sandbox built from real parts.

Inside one directory: a PostgreSQL cluster holding a generated ``peludosclick`` database, the
sample backend (``.env`` with ``DATABASE_URL`` read through ``dotenv:`` like production), pm2
running it in cluster mode on a free port, a config with ``production`` and ``staging`` targets
on ``host = "local"`` (or through a loopback OpenSSH sshd with ``ssh=True``), and the demo's
own run journal. ``teardown`` stops every process it started and removes the directory.
Setup runs before the TUI's event loop, so it may block.

Like the plan's server, pm2 runs the build in ``app/dist`` (revision 1, build id
:data:`FIRST_BUILD`) while ``app`` already holds the next revision, pulled but not built: a new
version in ``package.json`` and the pending migrations. Phase 1 → 2 → 3 builds it as a release
beside production and deploys it; ``GET /build`` and ``GET /version`` show which one serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from vlad_tui.config import Contact, Project, Target, dump_config
from vlad_tui.demo import install_backend
from vlad_tui.demo import sshd as loopback_sshd
from vlad_tui.demo.cluster import PgCluster, find_bin_dir
from vlad_tui.demo.pm2 import Pm2, find_pm2, install_pm2
from vlad_tui.errors import VladError

DATABASE = "peludosclick"
APP_NAME = "backend-vlad"
#: The build id production runs before the rehearsal deploys the next revision.
FIRST_BUILD = "demo-r1"
#: The package version of that build, and of the revision checked out in app/ to deploy.
FIRST_VERSION, NEXT_VERSION = "1.0.0", "1.1.0"
#: Commands for the sample backend (no dependencies, no Prisma CLI).
INSTALL = "npm ci --no-audit --no-fund"
VALIDATE = "test -s prisma/schema.prisma && echo 'schema.prisma present (no Prisma CLI here)'"
#: Extra generated rows per size, on top of the seed's realistic sample.
SIZES = {"small": 0, "medium": 50_000}


class MissingTool(VladError):
    """A tool the sandbox needs is not installed (exit code 2)."""


def default_dir() -> Path:
    """The sandbox's home. As root, PostgreSQL runs as ``postgres``, which cannot enter /root."""
    if os.geteuid() == 0:
        return Path("/var/tmp/vlad-tui-demo")
    return platformdirs.user_data_path("vlad-tui") / "demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SandboxState:
    """What ``setup`` started, saved as ``state.json`` so ``teardown`` can stop it."""

    pg_port: int
    app_port: int
    pm2_bin: str
    size: str
    ssh_port: int | None = None


class Sandbox:
    """One sandbox directory: ``setup()``, ``is_up()``, ``teardown()``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_dir()).expanduser().absolute()

    config_path = property(lambda self: self.root / "config.toml")
    journal_dir = property(lambda self: self.root / "runs")
    #: Off-box copies of backups ("copy the backup off the server"): inside the sandbox too.
    local_backup_dir = property(lambda self: self.root / "local-backups")
    app_dir = property(lambda self: self.root / "app")
    state_file = property(lambda self: self.root / "state.json")

    def state(self) -> SandboxState | None:
        try:
            return SandboxState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _cluster(self, state: SandboxState) -> PgCluster:
        return PgCluster(self.root / "pg", state.pg_port, _require_bin_dir(), password="")

    def _pm2(self, state: SandboxState) -> Pm2:
        return Pm2(Path(state.pm2_bin), self.root / "pm2")

    def is_up(self) -> bool:
        """True when a previous setup's database and app are both running."""
        state = self.state()
        if state is None:
            return False
        try:
            return self._cluster(state).is_running() and _healthy(state.app_port)
        except VladError:
            return False

    def setup(self, size: str = "small", *, ssh: bool = False, progress=print) -> Path:
        """Build (or restart) the sandbox; the path of its config file.

        ``ssh`` adds a loopback OpenSSH server and points the targets through it.
        """
        if size not in SIZES:
            raise VladError(f"unknown size {size!r} (choose from {', '.join(SIZES)})")
        bin_dir = _require_bin_dir()
        if shutil.which("node") is None:
            raise MissingTool("Node.js is missing: install it with `apt-get install nodejs npm`")
        state = self.state()
        if state is not None and (self.root / "pg" / "data").exists():
            return self._restart(state, progress)
        if self.root.exists() and any(self.root.iterdir()):
            raise VladError(f"{self.root} exists and is not a vlad-tui sandbox; choose --dir")
        # Traversable by the postgres user when we are root; nothing secret lives at this level.
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)

        progress(f"sandbox: {self.root}")
        pm2_bin = find_pm2(self.root / "tools" / "node_modules" / ".bin" / "pm2")
        if pm2_bin is None:
            progress("installing pm2 from the npm registry …")
            pm2_bin = install_pm2(self.root / "tools")
        state = SandboxState(_free_port(), _free_port(), str(pm2_bin), size)
        if ssh:
            if not loopback_sshd.available():
                raise MissingTool(
                    "OpenSSH server is missing: install it with `apt-get install openssh-server`"
                )
            state.ssh_port = _free_port()
            loopback_sshd.prepare(self.root / "sshd", state.ssh_port)

        cluster = PgCluster(self.root / "pg", state.pg_port, bin_dir)
        progress(f"PostgreSQL cluster on 127.0.0.1:{state.pg_port} …")
        cluster.init()
        cluster.start()
        progress(f"database {DATABASE} ({size}) …")
        asyncio.run(_create_and_seed(cluster, SIZES[size]))

        install_backend(self.app_dir, port=state.app_port, database_url=cluster.url(DATABASE))
        self._first_revision(progress)
        self._write_staging_env(cluster, state)
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        self.state_file.chmod(0o600)
        self._start_app(state, progress)
        self._start_sshd(state, progress)
        self._write_config(state)
        return self.config_path

    def _sshd_files(self, state: SandboxState) -> loopback_sshd.SshdFiles | None:
        if state.ssh_port is None:
            return None
        return loopback_sshd.SshdFiles(
            self.root / "sshd", "127.0.0.1", state.ssh_port, getpass.getuser()
        )

    def _start_sshd(self, state: SandboxState, progress) -> bool:
        files = self._sshd_files(state)
        if files is not None and not _listening(state.ssh_port):
            progress(f"OpenSSH server on 127.0.0.1:{state.ssh_port} …")
            loopback_sshd.start(files, detach=True)
            return True
        return False

    def _restart(self, state: SandboxState, progress) -> Path:
        """Start what is not running (after a reboot, or stopped in a rehearsal) and say so."""
        restarted = []
        cluster = self._cluster(state)
        if not cluster.is_running():
            progress(f"starting PostgreSQL on 127.0.0.1:{state.pg_port} …")
            cluster.start()
            restarted.append("PostgreSQL (was not running)")
        if not _healthy(state.app_port):
            was = self._app_state(state)
            self._start_app(state, progress)
            restarted.append(f"{APP_NAME} (was {was})")
        if self._start_sshd(state, progress):
            restarted.append("the OpenSSH server (was not running)")
        self._write_config(state)
        if restarted:
            progress(
                f"restarted: {'; '.join(restarted)}. A resumed rehearsal may still show the "
                "steps that stopped them as done (e.g. «Detener la aplicación»): the sandbox "
                "is running again."
            )
        return self.config_path

    def _app_state(self, state: SandboxState) -> str:
        """How pm2 has the app now (``stopped``, ``errored``, …) before it is started again."""
        try:
            procs = [p for p in self._pm2(state).jlist() if p.get("name") == APP_NAME]
        except (VladError, ValueError, OSError):
            return "not answering"
        found = sorted({str(p.get("pm2_env", {}).get("status", "?")) for p in procs})
        return f"{'/'.join(found)} in pm2" if found else "not in pm2"

    def _first_revision(self, progress) -> None:
        """Build revision 1 in app/dist (what pm2 runs), then check out revision 2 in app/."""
        progress(f"building revision {FIRST_VERSION} (build {FIRST_BUILD}) in app/dist …")
        package = self.app_dir / "package.json"
        data = json.loads(package.read_text())
        package.write_text(json.dumps({**data, "version": FIRST_VERSION}, indent=2) + "\n")
        proc = subprocess.run(
            ["node", "scripts/build.js"],
            cwd=self.app_dir,
            env={**os.environ, "BUILD_ID": FIRST_BUILD},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise VladError(f"building the sample backend failed: {proc.stderr.strip()}")
        package.write_text(json.dumps({**data, "version": NEXT_VERSION}, indent=2) + "\n")
        progress(f"app/ holds revision {NEXT_VERSION}, not built yet: the one to deploy")

    def _start_app(self, state: SandboxState, progress) -> None:
        progress(f"{APP_NAME} under pm2 (cluster mode) on 127.0.0.1:{state.app_port} …")
        pm2 = self._pm2(state)
        pm2.delete(APP_NAME)
        if not (self.app_dir / "dist" / "server.js").exists():
            self._first_revision(progress)
        pm2.start_app(APP_NAME, self.app_dir, instances=2, script="dist/server.js")
        _wait_healthy(state.app_port)

    def _write_staging_env(self, cluster: PgCluster, state: SandboxState) -> None:
        url = cluster.url(f"{DATABASE}_staging")
        env = self.app_dir / ".env.staging"
        fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'PORT="{state.app_port + 1}"\nDATABASE_URL="{url}"\n')

    def _write_config(self, state: SandboxState) -> None:
        common: dict[str, object] = {"host": "local"}
        files = self._sshd_files(state)
        if files is not None:
            common = {
                "host": files.host,
                "port": files.port,
                "user": files.user,
                "known_hosts": files.known_hosts,
                "identity_file": files.user_key,
            }
        common |= {
            "app_dir": str(self.app_dir),
            "pm2_bin": state.pm2_bin,
            "pm2_home": str(self.root / "pm2"),
            "backup_dir": str(self.root / "backups"),
        }
        (self.root / "backups").mkdir(exist_ok=True, mode=0o700)
        targets = [
            Target(
                "production",
                pm2_name=APP_NAME,
                database="dotenv:.env",
                health_url=f"http://127.0.0.1:{state.app_port}/health",
                # The sample backend: Prisma's protocol without Prisma (see its scripts/).
                migrate_command="npm run migrate:deploy",
                install_command=INSTALL,
                generate_command="npm run --if-present prisma:generate",
                validate_command=VALIDATE,
                start_command="dist/server.js",
                # Phase 2's staging instance is what the "staging" target below watches.
                staging_port=state.app_port + 1,
                **common,
            ),
            Target(
                "staging",
                pm2_name=f"{APP_NAME}-staging",
                database="dotenv:.env.staging",
                health_url=f"http://127.0.0.1:{state.app_port + 1}/health",
                staging_port=state.app_port + 2,
                **common,
            ),
        ]
        contacts = [
            Contact("Desarrollador principal", "Ana Núñez (demo)", "+34 600 000 001"),
            Contact("DBA", "Íñigo Peña (demo)", "+34 600 000 002"),
        ]
        text = "# vlad-tui demo sandbox: every target runs on this machine.\n"
        project = Project(
            name="backend-vlad (demo)",
            # Everything the rehearsal writes stays in the sandbox and goes with --teardown.
            journal_dir=self.journal_dir,
            local_backup_dir=self.local_backup_dir,
        )
        text += dump_config(targets, project, contacts)
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)

    def teardown(self, *, progress=print) -> None:
        """Stop everything the sandbox started and remove its directory."""
        state = self.state()
        if state is None and not self.root.exists():
            progress(f"no sandbox at {self.root}")
            return
        if state is not None:
            self._pm2(state).kill()
            files = self._sshd_files(state)
            if files is not None and files.pid_file.exists():
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int(files.pid_file.read_text().split()[0]), signal.SIGTERM)
            with contextlib.suppress(VladError):
                self._cluster(state).stop(mode="fast")
        shutil.rmtree(self.root, ignore_errors=True)
        progress(f"removed {self.root}")


async def _create_and_seed(cluster: PgCluster, extra_rows: int) -> None:
    import asyncpg

    from vlad_tui.demo.seed import seed_database

    conn = await asyncpg.connect(cluster.url("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(cluster.url(DATABASE))
    try:
        await seed_database(conn)
        if extra_rows:
            await conn.execute(BULK_SQL, extra_rows)
    finally:
        await conn.close()


#: Bulk rows for bigger sandboxes: plain generated values, same tables and constraints.
BULK_SQL = """
INSERT INTO virgin_medals (medal_string, register_hash, status)
SELECT 'bulk-' || g, md5(g::text), 'VIRGIN' FROM generate_series(1, $1::int) g
"""


def _require_bin_dir() -> Path:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise MissingTool(
            "PostgreSQL server binaries (initdb, pg_ctl) are missing: "
            "install them with `apt-get install postgresql`"
        )
    return bin_dir


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait_healthy(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(port):
            return
        time.sleep(0.2)
    raise VladError(f"the sample app did not answer on 127.0.0.1:{port}/health in {timeout:g}s")
