"""A canary database password through every way a secret reaches vlad-tui, then a search for it.

One production world for the module (real sshd, PostgreSQL and pm2). The database is reached as
a role whose password is reset per case (``ALTER ROLE``) to a fresh canary, given through
``dotenv:`` (the app's ``.env``), ``env:`` (a variable of vlad-tui's environment), ``~/.pgpass``
(in a private HOME of the test; the URL has no password) or a literal URL in a 0600 config
file. Every case ends with ``vlad-tui check``,
``vlad-tui report`` and a Pilot export of every screen; then the canary is looked for in every
file vlad-tui wrote here and on the server, in the remote ``ps -eo args`` sampled every 50 ms,
in the CLI's output and in the screen exports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tests.rig.operator import Operator
from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, phases_1_and_2
from vlad_tui.config import Config, Project, dump_config, load_config
from vlad_tui.journal import Journal
from vlad_tui.ops.inventory import read_backups
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations.rollback_picker import backup_record, pick_params
from vlad_tui.runbook.rollback_flow import run_rollback
from vlad_tui.transport import SshTransport

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "VLAD_CANARY_DATABASE_URL"
SOURCES = ("dotenv", "env", "pgpass", "literal")
#: A URL that carries a password (``scheme://user:password@``).
URL_WITH_PASSWORD = re.compile(rb"postgres(?:ql)?://[^:@/\s\"']+:[^@/\s\"']+@")


@dataclass
class Module:
    world: World
    role: str
    env_text: str
    root: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Module]:
    root = tmp_path_factory.mktemp("canary")
    role = f"canary_{secrets.token_hex(3)}"
    conn = await pg.connect()
    await conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{secrets.token_hex(8)}'")
    try:
        async with build_world(pg, pm2, sshd, root / "world") as world:
            env_text = (world.app_dir / ".env").read_text()
            try:
                yield Module(world, role, env_text, root)
            finally:
                rows = await conn.fetch(
                    "select datname from pg_database where datname like $1 || '%'",
                    world.production,
                )
                for (name,) in rows:
                    if name not in (world.production, world.staging):  # build_world drops those
                        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.close()


class PsSampler:
    """Samples ``ps -eo args`` (the server is this machine) every ``every`` s in a thread."""

    def __init__(self, needle: str, every: float = 0.05) -> None:
        self.needle = needle
        self.every = every
        self.samples = 0
        self.hits: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.samples += 1
            self.hits += [line for line in out.splitlines() if self.needle in line]
            self._stop.wait(self.every)

    def __enter__(self) -> PsSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Case:
    source: str
    canary: str
    root: Path
    config: Config
    config_path: Path
    journal: Journal
    env: dict[str, str]  # the environment of vlad-tui's CLI calls
    outputs: list[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "vlad_tui", "--config", str(self.config_path), *args],
            capture_output=True, text=True, env=self.env, timeout=120,
        )  # fmt: skip
        self.outputs += [done.stdout, done.stderr]
        return done


def case_config(module: Module, source: str, canary: str) -> Case:
    world, pg = module.world, module.world.pg
    root = module.root / source
    home, state = root / "home", root / "xdg"
    for d in (home, state):
        d.mkdir(parents=True)
    address = f"{pg.host}:{pg.port}/{world.production}"
    with_password = f"postgresql://{module.role}:{canary}@{address}"
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(state / "state"),
        "XDG_DATA_HOME": str(state / "data"),
        "XDG_CONFIG_HOME": str(state / "config"),
    }
    env_file = module.env_text
    if source == "dotenv":
        database = "dotenv:.env"
        env_file = re.sub(r"(?m)^DATABASE_URL=.*$", f"DATABASE_URL={with_password}", env_file)
    elif source == "env":
        database = f"env:{ENV_VAR}"
        env[ENV_VAR] = with_password
    elif source == "pgpass":
        database = f"postgresql://{module.role}@{address}"
        pgpass = home / ".pgpass"
        pgpass.write_text(f"{pg.host}:{pg.port}:*:{module.role}:{canary}\n")
        pgpass.chmod(0o600)
        env["HOME"] = str(home)
    else:
        database = with_password
    (world.app_dir / ".env").write_text(env_file)
    target = dataclasses.replace(world.target, database=database)
    project = Project(journal_dir=root / "runs", local_backup_dir=root / "offbox")
    config_path = root / "config.toml"
    config_path.write_text(dump_config([target], project))
    config_path.chmod(0o600)
    config = load_config(config_path)
    return Case(source, canary, root, config, config_path, Journal(root / "runs"), env, [])


def written_files(case: Case, world: World) -> list[Path]:
    """Every file vlad-tui may have written: here (journal, recordings, off-box copies, XDG
    dirs) and on the server (backups, job directories, releases, the app directory). The two
    sources the operator gave (the app's ``.env``, ``~/.pgpass``, the config) are not vlad-tui's."""
    sources = {world.app_dir / ".env", case.root / "home" / ".pgpass", case.config_path}
    roots = [
        case.root,
        Path(world.target.backup_dir),
        Path(world.target.jobs_dir),
        Path(world.target.releases_path),
        world.app_dir,
    ]
    found = []
    for root in roots:
        for base, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "node_modules"]
            for name in files:
                path = Path(base) / name
                if path not in sources and not path.is_symlink() and path.is_file():
                    found.append(path)
    return found


def text_of(svg: str) -> str:
    """The characters an SVG export shows (entities decoded, no-break spaces as spaces)."""
    return html.unescape(svg).replace("\xa0", " ")


async def screens(case: Case, run_id: str) -> list[str]:
    """An SVG export of every screen of the TUI on this config, connected to the target, with
    the run resumed (its steps, logs and report are on the screens)."""
    from vlad_tui.tui.app import make_app

    app = make_app(case.config, journal=case.journal, resume=run_id, environ={})
    exports: list[str] = []

    async def shown(text: str, within: float) -> str:
        """The export once it shows ``text`` (polled: the report of a whole deploy takes its
        time to lay out on a loaded machine, longer than Pilot's 30 s wait for idle)."""
        deadline = time.monotonic() + within
        while True:
            await asyncio.sleep(0.1)
            export = app.export_screenshot()
            if text in text_of(export) or time.monotonic() > deadline:
                return export

    async with app.run_test(size=(120, 40)):
        # The overview's facts (SSH, the .env, the database): wait until they are shown.
        exports.append(await shown("PostgreSQL 1", 30))
        assert "PostgreSQL 1" in text_of(exports[-1]), "the overview never showed the database"
        for action in ("phase(1)", "phase(2)", "phase(3)", "phase(4)", "rollback"):
            await app.run_action(action)
            await asyncio.sleep(0.8)
            exports.append(app.export_screenshot())
        await app.run_action("help")
        exports.append(await shown("this help", 30))
        app.pop_screen()
        started = time.monotonic()
        await app.run_action("open_report")
        exports.append(await shown("Steps", 120))
        assert "Steps" in text_of(exports[-1]), "the report screen never showed the run's steps"
        print(f"report screen of the {case.source} run shown in {time.monotonic() - started:.1f} s")
        app.pop_screen()
    return exports


def assert_nowhere(
    case: Case, world: World, sampler: PsSampler, exports: list[str], role: str
) -> None:
    needle = case.canary.encode()
    files = written_files(case, world)
    assert any(p.name == "events.jsonl" for p in files), "the journal was written"
    assert [p for p in files if needle in p.read_bytes()] == []
    assert sampler.samples > 20 and sampler.hits == []
    assert [o for o in case.outputs if case.canary in o] == []
    assert len(exports) == 8
    assert [s for s in exports if case.canary in s or case.canary in text_of(s)] == []
    # The screens did show the database (as displayed: its role, without the password).
    shown = case.root.parent / f"screens-{case.source}"
    shown.mkdir()
    for n, svg in enumerate(exports):
        (shown / f"{n}.svg").write_text(svg)
    assert any(role in s for s in exports), shown


async def backup_and_check(case: Case, engine: Engine) -> None:
    for step in ("p1.connectivity", "p1.backup", "p1.verify_backup"):
        assert await engine.run_step(step) == "ok", (step, engine.error(step))


def cli_check_and_report(case: Case, run_id: str) -> None:
    check = case.cli("check", "--target", "production")
    assert "production" in check.stdout, check.stderr
    for fmt in ("md", "json"):
        report = case.cli("report", run_id, "--format", fmt)
        assert report.returncode == 0 and run_id in report.stdout, report.stderr


async def wrong_password(module: Module, case: Case, world: World) -> None:
    """The role's password changed under vlad-tui: the connectivity step fails and says so."""
    conn = await world.pg.connect()
    try:
        await conn.execute(f"ALTER ROLE {module.role} PASSWORD '{secrets.token_hex(8)}'")
        engine = world.engine()
        assert await engine.run_step("p1.connectivity") == "failed"
        assert "password" in (engine.error("p1.connectivity") or "").lower()
    finally:
        await conn.execute(f"ALTER ROLE {module.role} PASSWORD '{case.canary}'")
        await conn.close()


async def rollback_data(world: World, engine: Engine) -> None:
    found = await read_backups(world.target, world.transport, world.journal)
    newest = max((b for b in found.value or [] if b.verified), key=lambda b: b.created_at)
    record = await asyncio.to_thread(backup_record, world.journal, world.target.name, newest.path)
    world.operator.answers = ["production", "production"]
    # The swap waits for the app to answer its health check before it ends, so rb.health
    # never races the reload.
    ok = await run_rollback(engine, pick_params(newest, "data", record=record))
    errors = {s: engine.error(s) for s in engine.statuses if s.startswith("rb.")}
    assert ok, errors
    [swapped] = world.artifacts("rollback_swap")
    assert swapped["outcome"] == "swapped"
    # Production is the backup again: every critical table has the backup's row count.
    [verify] = world.artifacts("rollback_verify")
    assert verify["ok"]
    tables = ((record or {}).get("fingerprints") or {}).get("tables", {})
    assert tables, "the backup carries fingerprints of its snapshot"
    for table, fingerprint in tables.items():
        [(count,)] = await world.fetch(f'select count(*) from "{table}"')
        assert count == fingerprint["count"], table


@pytest.mark.fault(
    "A canary database password given through dotenv:, env:, ~/.pgpass and a literal URL in "
    "a private config file",
    did="the password appears 0 times in every file vlad-tui wrote (journal, step logs, "
    "reports, recordings, backups, job directories), in the server's process list sampled "
    "every 50 ms, in the CLI's output and in screen captures of every screen",
    lost=0,
)
@pytest.mark.parametrize("source", SOURCES)
async def test_the_canary_password_appears_nowhere(
    module: Module, sshd: SshdServer, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dotenv:`` runs the whole deploy: phases 1, 2 and 3, a wrong-password failure, a data
    rollback, ``check`` and ``report``. The others (same code paths once the URL is resolved)
    run the short path that still reads and uses the secret: connectivity, a backup and its
    verification, ``check``, ``report`` and the screens."""
    canary = f"canary-{secrets.token_hex(8)}-Zq9"
    conn = await module.world.pg.connect()
    try:
        await conn.execute(f"ALTER ROLE {module.role} PASSWORD '{canary}'")
    finally:
        await conn.close()
    case = case_config(module, source, canary)
    for name in ("HOME", ENV_VAR):
        if name in case.env and case.env[name] != os.environ.get(name):
            monkeypatch.setenv(name, case.env[name])
    target = case.config.target("production")
    transport = SshTransport(target)
    run = case.journal.start_run("production", operator="ana@bastion")
    world = dataclasses.replace(
        module.world, target=target, config=case.config, journal=case.journal, run=run,
        transport=transport, operator=Operator(),
    )  # fmt: skip
    try:
        with PsSampler(canary) as sampler:
            engine = world.engine()
            if source == "dotenv":
                await phases_1_and_2(world, engine)
                world.operator.answers = ["production", "production"]
                assert await engine.run_phase(3), {
                    s: engine.error(s) for s in engine.statuses if engine.error(s)
                }
                await wrong_password(module, case, world)
                await rollback_data(world, engine)
            else:
                await backup_and_check(case, engine)
            run.close()
            cli_check_and_report(case, run.run_id)
            exports = await screens(case, run.run_id)
    finally:
        run.close()
        await transport.close()
        (module.world.app_dir / ".env").write_text(module.env_text)
    assert_nowhere(case, world, sampler, exports, module.role)


async def test_the_repository_screenshots_carry_no_password() -> None:
    """The SVG screenshots shipped in the repository show no URL with a password in it."""
    shots = sorted((REPO / "screenshots").glob("*.svg"))
    assert shots, "the repository has screenshots"
    assert [p.name for p in shots if URL_WITH_PASSWORD.search(p.read_bytes())] == []
    assert [p.name for p in shots if b"canary-" in p.read_bytes()] == []


async def test_the_sampler_sees_a_secret_put_in_argv() -> None:
    """The ps sampler would catch a password on a command line (the check is not vacuous)."""
    needle = f"canary-{secrets.token_hex(8)}-Zq9"
    with PsSampler(needle) as sampler:
        proc = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.5", needle)
        await proc.wait()
    assert sampler.hits and needle in sampler.hits[0]
