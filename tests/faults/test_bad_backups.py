"""A backup altered after its verification (bytes flipped, or truncated) offered to the staging
restore: refused before the confirmation and before anything is written (sha256 and size
recomputed on the server). The rollback's side of the same fault is
tests/test_rollback_flow.py::test_an_altered_backup_is_refused_before_anything_is_touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, fingerprints

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with build_world(pg, pm2, sshd, tmp_path_factory.mktemp("badbackups")) as built:
        yield built


async def staging_tables(world: World) -> int:
    conn = await world.pg.connect(world.staging)
    try:
        return int(
            await conn.fetchval("select count(*) from pg_tables where schemaname = 'public'")
        )
    finally:
        await conn.close()


def restore_starts(world: World) -> int:
    return sum(
        1
        for e in world.events()
        if e["kind"] == "step_started" and e.get("step") == "p1.staging_restore"
    )


@pytest.mark.fault(
    "A backup corrupted or truncated after its verification, offered to the staging restore",
    did="Refused it before the confirmation (sha256 and size recomputed on the server), "
    "saying what changed and to take a new backup; nothing was restored.",
    lost=0,
)
async def test_an_altered_backup_is_refused_by_the_staging_restore(world: World) -> None:
    before = await fingerprints(world)
    engine = world.engine()
    for step in ("p1.connectivity", "p1.backup", "p1.verify_backup", "p1.staging_db"):
        assert await engine.run_step(step) == "ok", (step, engine.error(step))
    [verified] = [b for b in world.artifacts("backup", "p1.verify_backup") if b["verified"]]
    path = Path(verified["path"])
    original = path.read_bytes()
    assert await staging_tables(world) == 0
    world.operator.asked.clear()

    def refused(says: str) -> str:
        error = engine.error("p1.staging_restore") or ""
        assert f"backup {path} changed since it was verified" in error, error
        assert says in error and "refused before anything was written" in error
        assert "Take and verify a new backup" in error
        return error

    altered: list[tuple[str, bytes, str]] = []
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF  # same size, other bytes: only the sha256 tells
    altered.append(("corrupted", bytes(flipped), "same size, other bytes"))
    altered.append(("truncated", original[: len(original) // 2], "truncated or rewritten"))
    for _, data, says in altered:
        path.write_bytes(data)
        assert await engine.run_step("p1.staging_restore") == "failed"
        refused(says)
        assert world.operator.asked == []  # never offered for confirmation
        assert await staging_tables(world) == 0
        assert not world.artifacts("detached_job", "p1.staging_restore")
    refusals = restore_starts(world)

    # The journal says so, one failed attempt each; the restored bytes let the run go on.
    record = world.journal.load(world.run.run_id)
    ends: list[dict[str, Any]] = [
        e
        for e in record.events
        if e["kind"] == "step_finished" and e.get("step") == "p1.staging_restore"
    ]
    assert [e["status"] for e in ends] == ["failed", "failed"]
    assert all("changed since it was verified" in e["error"] for e in ends)
    path.write_bytes(original)
    world.operator.answers = ["production"]
    assert await engine.run_step("p1.staging_restore") == "ok", engine.error("p1.staging_restore")
    assert [r.step_id for r in world.operator.asked] == ["p1.staging_restore"]
    assert restore_starts(world) == refusals + 1
    assert len(world.artifacts("detached_job", "p1.staging_restore")) == 1
    assert await staging_tables(world) > 0
    assert await fingerprints(world) == before
