"""The app misbehaving after a deploy: a release that boots, serves, then crashes over and over;
a release whose /health never answers. Phases 1–3 run for real on one production world shared
by the module; each test puts production back on its original build afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, fingerprints, phases_1_and_2
from vlad_tui.ops import release_switch
from vlad_tui.runbook.engine import Engine

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with build_world(pg, pm2, sshd, tmp_path_factory.mktemp("appfaults")) as built:
        yield built


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(world: World) -> AsyncIterator[World]:
    """A new run on the shared world; afterwards production is back on the build it started
    with, from app_dir, and the staging leftovers are gone."""
    env = world.app_dir / ".env"
    original = env.read_text()
    world.run = world.journal.start_run("production", operator="ana@bastion")
    world.operator.answers, world.operator.asked = [], []
    try:
        yield world
    finally:
        env.write_text(original)
        world.run.close()
        plan = await release_switch.plan_switch(world.target, world.transport, str(world.app_dir))
        await release_switch.switch(world.target, world.transport, plan, settle=0.5)
        for p in await asyncio.to_thread(world.pm2.jlist):
            if p["name"] == world.target.staging_name:
                await asyncio.to_thread(world.pm2.delete, p["name"])
                break
        await world.pg.drop_database(world.staging)
        assert world.builds() == {"production-v1"}


async def row_counts(world: World) -> dict[str, int]:
    """Rows per critical table (the migrations change columns, so not the rows' text)."""
    return {table: count for table, (count, _) in (await fingerprints(world)).items()}


def deploy_ready(world: World, engine: Engine, setting: str) -> asyncio.Task[bool]:
    """Production's .env gains ``setting`` (the running workers read theirs long ago; staging
    never saw it), then Phase 3 starts with migrate and deploy confirmed."""
    with (world.app_dir / ".env").open("a") as env:
        env.write(f"{setting}\n")
    world.operator.answers = ["production", "production"]
    return asyncio.create_task(engine.run_phase(3))


@pytest.mark.fault(
    "The app crash-looping a few seconds after the deploy",
    did="The deploy's check or the post-deploy gate saw the workers restart and failed, saying "
    "which release production now runs and that the code rollback switches back.",
    lost=0,
)
async def test_a_release_that_crash_loops_after_boot_fails_the_gate(fresh: World) -> None:
    world = fresh
    before = await row_counts(world)
    engine = world.engine()
    await phases_1_and_2(world, engine)
    # Past the switch's settle and side-by-side probe windows (about 5 s after they listen):
    # the new workers look healthy while the old ones still serve, then crash over and over.
    phase3 = deploy_ready(world, engine, 'CRASH_AFTER_MS="8000"')
    assert await asyncio.wait_for(phase3, 240) is False
    [release] = world.artifacts("release", "p2.build")
    # Caught by the deploy's final check or by the gate's settle window, whichever sees the
    # first crash; either way the operator reads where production stands and the way back.
    [step] = [s for s in ("p3.deploy", "p3.post_checks") if engine.statuses[s] == "failed"]
    error = engine.error(step) or ""
    assert f"production now runs release {release['id']}" in error or (
        f"production runs release {release['id']} now" in error
    ), error
    assert f"the code rollback (r) switches back to {world.app_dir}" in error, error
    if step == "p3.post_checks":
        assert "no crash loop: restarts rose" in error
        [gate] = world.artifacts("post_deploy_gate", "p3.post_checks")
        assert {c["name"]: c["ok"] for c in gate["checks"]}["no crash loop"] is False
    else:
        assert "is launching" in error or "restart" in error or "errored" in error, error
    record = world.journal.load(world.run.run_id)
    ends = [e for e in record.events if e["kind"] == "step_finished" and e["step"] == step]
    assert [e["status"] for e in ends] == ["failed"]
    # One deploy, once; the lock is released so the rollback can take it.
    assert len(world.artifacts("deploy", "p3.deploy")) == 1
    assert engine.statuses["p3.unlock"] == "ok"
    assert await row_counts(world) == before


@pytest.mark.fault(
    "The health endpoint hanging after the deploy",
    did="The deploy's probes timed out (1 s each) while old and new workers served side by "
    "side; the new workers were removed before any old one and the old build kept serving; "
    "the step ended within its bound.",
    lost=0,
)
async def test_a_release_whose_health_hangs_is_refused_in_bounded_time(fresh: World) -> None:
    world = fresh
    before = await row_counts(world)
    engine = world.engine()
    await phases_1_and_2(world, engine)
    phase3 = deploy_ready(world, engine, 'HANG_HEALTH="1"')
    assert await asyncio.wait_for(phase3, 240) is False
    assert engine.statuses["p3.migrate"] == "ok"
    assert engine.statuses["p3.deploy"] == "failed"
    error = engine.error("p3.deploy") or ""
    assert "the new workers failed the health probe" in error, error
    assert "timeout 1 s" in error and "the old workers keep serving" in error
    assert "they were removed" in error
    assert engine.statuses["p3.post_checks"] == "locked"
    assert engine.statuses["p3.unlock"] == "ok"
    [deployed] = world.artifacts("deploy", "p3.deploy")
    assert deployed["done"] is False and deployed["probe"]["failed"] >= 3
    # Bounded: the switch's start timeout plus the settle window and a margin, never a hang.
    record = world.journal.load(world.run.run_id)
    took = {e["step"]: e["duration"] for e in record.events if e["kind"] == "step_finished"}
    assert took["p3.deploy"] < release_switch.START_TIMEOUT + release_switch.SETTLE_S + 30
    print(f"hanging /health: the deploy step ended in {took['p3.deploy']:.1f} s")
    # Only the old build answers, from app_dir, every worker online.
    assert world.builds(20) == {"production-v1"}
    check = await release_switch.verify_running(world.target, world.transport, str(world.app_dir))
    assert check.ok, check.describe()
    assert len(world.artifacts("deploy", "p3.deploy")) == 1
    assert await row_counts(world) == before
