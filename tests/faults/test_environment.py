"""Faults of the environment: a full disk where backups go, a wrong database password, the
database or the pm2 daemon down, the app directory gone.

One production world for the module (tests/rig/world.py). Each fault is injected through a
copy of the production target (another ``.env``, ``PM2_HOME`` or ``app_dir``) or a small tmpfs
mounted for the test, so production itself stays as it was, which each test checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.services import free_port, missing
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, fingerprints
from vlad_tui.config import Config, Project, Target, dump_config
from vlad_tui.journal import Run
from vlad_tui.runbook.engine import Engine
from vlad_tui.transport import SshTransport

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with build_world(pg, pm2, sshd, tmp_path_factory.mktemp("envfaults")) as built:
        yield built


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root, as in CI)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        missing("a tmpfs mount", f"mount -t tmpfs refused: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path, leave: int = 0) -> Path:
    """Write a filler file into ``path`` until the filesystem has at most ``leave`` bytes free."""
    filler = path / "filler.bin"
    chunk = b"\0" * 65536
    with open(filler, "wb") as f:
        while True:
            free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[: max(4096, min(len(chunk), free - leave))])
                f.flush()
            except OSError:
                break
    return filler


def engine_for(world: World, target: Target, run: Run, sink: Any = None) -> Engine:
    return Engine(
        Config(world.config.path, world.config.project, {target.name: target}),
        target,
        SshTransport(target),
        run,
        confirm=world.operator.confirm,
        sink=sink or world.operator.events.append,
        journal=world.journal,
    )


def starts(world: World, run: Run, step: str) -> int:
    events = world.journal.load(run.run_id).events
    return sum(1 for e in events if e["kind"] == "step_started" and e.get("step") == step)


def vlad_check(tmp: Path, target: Target) -> subprocess.CompletedProcess[str]:
    """``vlad-tui check`` as the operator runs it, with a config holding only ``target``."""
    config = tmp / "config.toml"
    config.write_text(dump_config([target], Project()))
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
        "XDG_STATE_HOME": str(tmp / "xdg-state"),
        "XDG_DATA_HOME": str(tmp / "xdg-data"),
    }
    env.pop("VLAD_TUI_CONFIG", None)
    argv = [sys.executable, "-m", "vlad_tui", "--config", str(config), "check"]
    return subprocess.run(
        [*argv, "--target", target.name, "--no-monitor"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.fault(
    "The backup disk fills up during the backup",
    did="Stopped the backup, removed the partial file, named the directory and the space "
    "needed; the backup ran again once space was freed.",
    lost=0,
)
async def test_a_disk_that_fills_up_during_the_dump(world: World, tmp_path: Path) -> None:
    before = await fingerprints(world)
    with tmpfs(tmp_path / "small-disk", "16m") as disk:
        target = dataclasses.replace(world.target, backup_dir=str(disk))
        run = world.journal.start_run(target.name, operator="ana@bastion")
        filled: list[Path] = []

        def sink(event: Any) -> None:
            # The dump starts right after this line (the preflight saw enough room): another
            # writer takes the disk's space now.
            text = getattr(getattr(event, "line", None), "text", "")
            if text.startswith("pg_dump -F") and not filled:
                filled.append(fill(disk))
            world.operator.events.append(event)

        engine = engine_for(world, target, run, sink)
        try:
            assert await engine.run_step("p1.connectivity") == "ok"
            assert await engine.run_step("p1.backup") == "failed"
            assert filled, "the dump never started"
            error = engine.error("p1.backup") or ""
            assert f"the disk of {disk} filled up during the dump" in error, error
            assert "No space left on device" in error and "the partial file was removed" in error
            assert "is needed there (database " in error and "was free when it started" in error
            assert "free some space or point backup_dir at a bigger disk" in error
            # Nothing left that looks like a backup, or half of one.
            assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"]
            assert not world.artifacts("backup", "p1.backup")
        finally:
            await engine.transport.close()
            run.close()
        record = world.journal.load(run.run_id)
        [finished] = [e for e in record.events if e["kind"] == "step_finished"
                      and e["step"] == "p1.backup"]  # fmt: skip
        assert finished["status"] == "failed" and str(disk) in finished["error"]

        # Space freed: the run resumes and the backup is taken once, in full.
        filled[0].unlink()
        again = world.journal.open_run(run.run_id)
        resumed = Engine.resume(
            Config(world.config.path, world.config.project, {target.name: target}),
            target,
            SshTransport(target),
            again,
            world.journal.load(run.run_id),
            confirm=world.operator.confirm,
            sink=world.operator.events.append,
            journal=world.journal,
        )
        try:
            assert resumed.statuses["p1.backup"] == "failed"
            assert await resumed.run_step("p1.backup") == "ok", resumed.error("p1.backup")
            assert await resumed.run_step("p1.verify_backup") == "ok"
        finally:
            await resumed.transport.close()
            again.close()
        [backup] = [p for p in disk.iterdir()]
        assert backup.name.startswith("backup_produccion_") and backup.suffix == ".dump"
        assert starts(world, run, "p1.backup") == 2
    assert await fingerprints(world) == before
    assert world.builds() == {"production-v1"}


@pytest.mark.fault(
    "The local backup copy's disk is full",
    did="Refused the copy before writing, named the local directory and the space needed; "
    "the backup on the server stays verified.",
    lost=0,
)
async def test_a_full_local_copy_disk_is_refused(world: World, tmp_path: Path) -> None:
    before = await fingerprints(world)
    run = world.journal.start_run(world.target.name, operator="ana@bastion")
    engine = engine_for(world, world.target, run)
    try:
        assert await engine.run_step("p1.connectivity") == "ok"
        assert await engine.run_step("p1.backup") == "ok"
        assert await engine.run_step("p1.verify_backup") == "ok"
        with tmpfs(tmp_path / "local-copies", "64k") as local:
            fill(local, leave=4096)
            status = await engine.run_step("p1.offbox", params={"local_dir": str(local)})
            assert status == "failed"
            error = engine.error("p1.offbox") or ""
            assert "not enough space for backup_produccion_" in error, error
            assert f"in {local} on this machine" in error and "needed (the backup's size)" in error
            assert "set local_backup_dir to a bigger disk" in error
            assert sorted(p.name for p in local.iterdir()) == ["filler.bin"]
        # With room, the same step copies it (sha256 checked).
        roomy = tmp_path / "roomy"
        assert await engine.run_step("p1.offbox", params={"local_dir": str(roomy)}) == "ok"
        assert [p.name for p in roomy.iterdir() if p.name.startswith("backup_produccion_")]
    finally:
        await engine.transport.close()
        run.close()
    assert starts(world, run, "p1.offbox") == 2
    assert await fingerprints(world) == before


def _dead_pm2_home(pm2: Pm2, home: Path) -> int:
    """A ``PM2_HOME`` whose daemon was SIGKILLed (OOM-killer style): its socket and pid file
    stay behind. Returns the dead daemon's pid."""
    home.mkdir()
    env = {**os.environ, "PM2_HOME": str(home)}
    subprocess.run([str(pm2.bin), "ping"], env=env, check=True, capture_output=True)
    pid = int((home / "pm2.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


CHECKS = "The connectivity and server steps failed with"
CASES = {
    # case: (the fault, what vlad-tui did, the text of the one line that says why)
    "password": (
        "Wrong database password",
        f"{CHECKS} one line naming the server and the user whose password was refused; "
        "`vlad-tui check` exited 1 with that line.",
        'password authentication failed for user "vlad"',
    ),
    "database_down": (
        "The database unreachable (its port closed)",
        f"{CHECKS} one line saying the server cannot reach PostgreSQL at its host and port; "
        "`vlad-tui check` exited 1 with that line.",
        "unreachable from production",
    ),
    "pm2_never_started": (
        "The pm2 daemon not running",
        f"{CHECKS} one line saying pm2 is not running there; `vlad-tui check` exited 1 with "
        "it; no pm2 daemon was started.",
        "pm2 is not running on production (no pm2 daemon in",
    ),
    "pm2_died": (
        "The pm2 daemon killed (its socket and pid file left behind)",
        "Said pm2 is not running (the pid in pm2.pid is gone) instead of starting an empty "
        "daemon and reporting production down; `vlad-tui check` exited 1 with that line.",
        "pm2 is not running on production (no pm2 daemon in",
    ),
    "app_dir_missing": (
        "The app directory missing",
        f"{CHECKS} one line naming the missing app_dir; `vlad-tui check` exited 1 with it.",
        "does not exist on production",
    ),
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.fault(fault, did=did, lost=0), id=case)
        for case, (fault, did, _) in CASES.items()
    ],
)
async def test_the_environment_fault_is_one_line(world: World, tmp_path: Path, case: str) -> None:
    before = await fingerprints(world)
    url = world.pg.url(world.production)
    change: dict[str, Any] = {}
    dead_pid = None
    if case == "password":
        env = tmp_path / "wrong.env"
        bad = world.pg.url(world.production, password="not-the-password")
        env.write_text(f'DATABASE_URL="{bad}"\n')
        change["database"] = f"dotenv:{env}"
    elif case == "database_down":
        env = tmp_path / "down.env"
        env.write_text(f'DATABASE_URL="{url.replace(f":{world.pg.port}/", f":{free_port()}/")}"\n')
        change["database"] = f"dotenv:{env}"
    elif case == "pm2_never_started":
        (tmp_path / "pm2-home").mkdir()
        change["pm2_home"] = str(tmp_path / "pm2-home")
    elif case == "pm2_died":
        dead_pid = _dead_pm2_home(world.pm2, tmp_path / "pm2-home")
        change["pm2_home"] = str(tmp_path / "pm2-home")
    else:
        change["app_dir"] = str(tmp_path / "backend-vlad-moved")
    target = dataclasses.replace(world.target, **change)
    *_, says = CASES[case]

    run = world.journal.start_run(target.name, operator="ana@bastion")
    engine = engine_for(world, target, run)
    try:
        connectivity = await engine.run_step("p1.connectivity")
        facts = await engine.run_step("p1.facts")
    finally:
        await engine.transport.close()
        run.close()
    failed = {"p1.facts"} | ({"p1.connectivity"} if not case.startswith("pm2") else set())
    assert {s for s, st in (("p1.connectivity", connectivity), ("p1.facts", facts))
            if st == "failed"} == failed  # fmt: skip
    for step in failed:
        error = engine.error(step) or ""
        assert says in error or (case == "app_dir_missing" and "not found on production" in error)
        assert "Traceback" not in error and "\n" not in error
    assert says in (engine.error("p1.facts") or "")
    record = world.journal.load(run.run_id)
    ends = {e["step"]: e["status"] for e in record.events if e["kind"] == "step_finished"}
    assert ends == {"p1.connectivity": connectivity, "p1.facts": facts}

    result = vlad_check(tmp_path, target)
    both = result.stdout + result.stderr
    assert result.returncode == 1, both
    assert "Traceback" not in both and result.stderr == ""
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("PROBLEM")]
    assert len(problems) == 1 and says in problems[0], problems
    if case == "pm2_died":
        assert "it died: pid" in problems[0]
        assert int((tmp_path / "pm2-home" / "pm2.pid").read_text()) == dead_pid
        assert not _alive(dead_pid)
    if case == "pm2_never_started":
        assert not (tmp_path / "pm2-home" / "pm2.pid").exists()
        assert "vlad-tui did not start one" in problems[0]
    if case == "pm2_died" or case == "pm2_never_started":
        # No new daemon under that PM2_HOME: its pid file names no live process (the killed
        # daemon may linger as a zombie, which `kill -0` alone would call alive).
        pid_file = tmp_path / "pm2-home" / "pm2.pid"
        assert not pid_file.exists() or not _alive(int(pid_file.read_text()))
    assert await fingerprints(world) == before
    assert world.builds() == {"production-v1"}
