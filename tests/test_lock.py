"""The deploy lock over a real LocalTransport and a real OpenSSH server."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.ops import lock
from vlad_tui.transport import LocalTransport, SshTransport, Transport

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "ssh"])
async def place(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Target, Transport]]:
    backup_dir = tmp_path / "backups" / "backend-vlad"  # created by acquire
    if request.param == "local":
        target = Target("production", app_dir=str(tmp_path), backup_dir=str(backup_dir))
        transport: Transport = LocalTransport()
    else:
        sshd: SshdServer = request.getfixturevalue("sshd")
        target = sshd.target(app_dir=str(tmp_path), backup_dir=str(backup_dir))
        transport = SshTransport(target)
    try:
        yield target, transport
    finally:
        await transport.close()


async def test_acquire_read_release(place: tuple[Target, Transport]) -> None:
    target, transport = place
    assert await lock.read(target, transport) is None
    info = await lock.acquire(
        target, transport, run_id="run-a", reason="deploy 1.2.3", holder="ana@bastion"
    )
    path = Path(lock.lock_path(target))
    assert path.is_dir() and path.name == ".vlad-tui.lock"
    on_disk = json.loads((path / "info.json").read_text())
    assert on_disk["holder"] == "ana@bastion" and on_disk["run_id"] == "run-a"
    assert on_disk["reason"] == "deploy 1.2.3"

    seen = await lock.read(target, transport)
    assert seen is not None and seen.run_id == "run-a" and seen.holder == "ana@bastion"
    assert abs(seen.acquired_at - info.acquired_at) < 1
    assert "ana@bastion" in seen.describe() and "run-a" in seen.describe()

    # Re-entrant for the same run (a resumed run keeps its lock).
    again = await lock.acquire(target, transport, run_id="run-a", reason="resumed")
    assert again.holder == "ana@bastion"

    assert await lock.release(target, transport, run_id="run-a") is True
    assert not path.exists()
    assert await lock.release(target, transport, run_id="run-a") is False


@pytest.mark.fault(
    "Two operators taking the deploy lock",
    did="The second is refused with the holder and run id; only the holding run can release it",
    lost=0,
)
async def test_held_lock_names_its_holder(place: tuple[Target, Transport]) -> None:
    target, transport = place
    await lock.acquire(target, transport, run_id="run-a", reason="deploy", holder="ana@bastion")
    with pytest.raises(lock.LockHeld) as caught:
        await lock.acquire(target, transport, run_id="run-b", reason="me too", holder="bo@laptop")
    assert caught.value.info.run_id == "run-a"
    assert "ana@bastion" in str(caught.value) and "run-a" in str(caught.value)
    # Only the holder releases it.
    with pytest.raises(VladError, match="not by run run-b"):
        await lock.release(target, transport, run_id="run-b")
    assert (await lock.read(target, transport)).run_id == "run-a"  # type: ignore[union-attr]
    await lock.release(target, transport, run_id="run-a")


@pytest.mark.fault(
    "A stale deploy lock that changed after it was shown",
    did="Breaking it is refused unless it is still held by the run the operator confirmed",
    lost=0,
)
async def test_break_needs_the_run_id_that_was_shown(place: tuple[Target, Transport]) -> None:
    target, transport = place
    await lock.acquire(target, transport, run_id="old-run", reason="crashed", holder="ana@x")
    path = Path(lock.lock_path(target))
    old = os.stat(path / "info.json").st_mtime - 20 * 3600
    info_file = path / "info.json"
    data = json.loads(info_file.read_text())
    data["acquired_at"] = old
    info_file.write_text(json.dumps(data))
    seen = await lock.read(target, transport)
    assert seen is not None and seen.is_stale() and seen.age() > 19 * 3600

    with pytest.raises(VladError, match="changed since it was shown"):
        await lock.break_lock(target, transport, expected_run_id="some-other-run")
    assert path.exists()
    broken = await lock.break_lock(target, transport, expected_run_id="old-run")
    assert broken.holder == "ana@x"
    assert not path.exists()
    with pytest.raises(VladError, match="no deploy lock"):
        await lock.break_lock(target, transport, expected_run_id="old-run")


@pytest.mark.fault(
    "A deploy lock left half-written (its directory without info.json)",
    did="Still a lock: a deploy is refused until the lock is broken explicitly",
    lost=0,
)
async def test_lock_dir_without_info_is_still_a_lock(place: tuple[Target, Transport]) -> None:
    target, transport = place
    path = Path(lock.lock_path(target))
    path.mkdir(parents=True)  # a writer died between mkdir and info.json
    seen = await lock.read(target, transport)
    assert seen is not None and seen.run_id == "" and "no readable info.json" in seen.holder
    with pytest.raises(lock.LockHeld):
        await lock.acquire(target, transport, run_id="run-c", reason="deploy")
    await lock.break_lock(target, transport, expected_run_id="")
    assert not path.exists()


def test_lock_path_prefers_backup_dir() -> None:
    assert lock.lock_path(Target("p", app_dir="/srv/app", backup_dir="/var/b/")) == (
        "/var/b/.vlad-tui.lock"
    )
    assert lock.lock_path(Target("p", app_dir="/srv/app", backup_dir="")) == (
        "/srv/app/.vlad-tui.lock"
    )
