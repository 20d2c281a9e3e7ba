"""Every file vlad-tui writes on this machine is 0600 and its directory 0700, whatever the umask.

Writers: the journal (events and step logs), the monitor's recording (SQLite and its WAL
sidecars), off-box backup copies (a chunked copy locally, SFTP over SSH; file and directory
format) and the config template. Reports are printed (``vlad-tui report``), never written.
Each test runs under ``umask 000`` and into directories that already exist with lax modes, so
only vlad-tui's own chmods can make them private.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project, write_template
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal
from vlad_tui.ops.backup import Backup
from vlad_tui.ops.backup_digest import local_sha256
from vlad_tui.ops.backup_offbox import copy_off_box
from vlad_tui.ops.monitor import AppSample, Sample
from vlad_tui.ops.recording import DIR_NAME, Recording
from vlad_tui.transport import LocalTransport, SshTransport


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def assert_private_tree(root: Path) -> list[Path]:
    """Every directory under ``root`` (itself included) 0700, every file 0600; the files."""
    files = []
    assert mode_of(root) == 0o700, root
    for path in root.rglob("*"):
        if path.is_dir():
            assert mode_of(path) == 0o700, path
        else:
            assert mode_of(path) == 0o600, path
            files.append(path)
    return files


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def lax_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_journal_events_and_step_logs(tmp_path: Path) -> None:
    journal = Journal(lax_dir(tmp_path / "runs"))
    run = journal.start_run("production", operator="ana@bastion")
    run.step_started("p1.backup", title="Backup", command="pg_dump -Fc")
    run.step_output("p1.backup", OutputLine("dumping"))
    run.artifact("p1.backup", "backup", path="/var/backups/x.dump")
    run.step_finished("p1.backup", status="ok")
    run.close()
    reopened = journal.open_run(run.run_id, operator="ana@bastion")
    reopened.step_started("p1.verify_backup", title="Verify")
    reopened.step_output("p1.verify_backup", OutputLine("pg_restore --list: 42 entries"))
    reopened.step_finished("p1.verify_backup", status="ok")
    reopened.close()
    files = assert_private_tree(journal.root)
    assert {p.name for p in files} >= {"events.jsonl", "p1.backup.log", "p1.verify_backup.log"}


def test_monitor_recording_and_its_sidecars(tmp_path: Path) -> None:
    root = lax_dir(tmp_path / "runs")
    config = Config(tmp_path / "config.toml", Project(journal_dir=root), {})
    sample = Sample(time.time(), AppSample(True, 5.0, 9.0, 0.0, 10, None), (), None, None, ())
    with Recording.open(config, "production") as recording:
        recording.append(sample, [], run_id="r1")
        # While open, the WAL and shared-memory files exist: private too.
        files = assert_private_tree(root / DIR_NAME)
    assert any(p.suffix == ".sqlite3" for p in files)
    assert any(p.name.endswith("-wal") for p in files)
    assert_private_tree(root / DIR_NAME)


def _backup(source: Path, fmt: str) -> Backup:
    if fmt == "directory":
        source.mkdir()
        for name in ("toc.dat", "3001.dat.gz"):
            (source / name).write_bytes(os.urandom(4096))
            (source / name).chmod(0o644)
    else:
        source.write_bytes(os.urandom(100_000))
        source.chmod(0o644)
    size = sum(p.stat().st_size for p in source.iterdir()) if fmt == "directory" else 100_000
    return Backup(
        path=str(source),
        format=fmt,
        size=size,
        sha256=local_sha256(source),
        created_at=time.time(),
        database="postgresql://vlad@127.0.0.1:5432/peludosclick",
    )


@pytest.mark.parametrize("fmt", ["custom", "directory"])
async def test_off_box_copy_locally(tmp_path: Path, fmt: str) -> None:
    backup = _backup(tmp_path / f"backup_produccion_20250101_000000.{fmt}", fmt)
    local = lax_dir(tmp_path / "offbox")
    async with LocalTransport() as transport:
        copy = await copy_off_box(transport, backup, local)
    assert local_sha256(copy) == backup.sha256
    assert copy == local / backup.name
    files = assert_private_tree(local)
    assert len(files) == (2 if fmt == "directory" else 1)


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["custom", "directory"])
async def test_off_box_copy_over_sftp(tmp_path: Path, sshd: SshdServer, fmt: str) -> None:
    backup = _backup(tmp_path / f"backup_produccion_20250101_000000.{fmt}", fmt)
    local = lax_dir(tmp_path / "offbox")
    async with SshTransport(sshd.target()) as transport:
        copy = await copy_off_box(transport, backup, local)
        # A second copy over an existing one keeps it private (no mode inherited).
        copy = await copy_off_box(transport, backup, local)
    assert local_sha256(copy) == backup.sha256
    assert len(assert_private_tree(local)) == (2 if fmt == "directory" else 1)


def test_config_template(tmp_path: Path) -> None:
    parent = lax_dir(tmp_path / "conf")
    path = write_template(parent / "vlad-tui" / "config.toml")
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
