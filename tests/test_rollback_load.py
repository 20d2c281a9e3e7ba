"""The code-only rollback under a steady load, cluster mode: no request fails.

Real sshd, pm2 and PostgreSQL (tests/rig/world.py): production runs the second of two releases
(built beside it and switched to as Phase 3 would, without running the whole phase), then the
rollback of scope "code" runs through the engine while a thread GETs /health and /build at
about 50 requests a second.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.sshd import SshdServer
from tests.rig.world import build_world
from vlad_tui.ops import release_prune, release_switch, releases
from vlad_tui.ops.releases import BAD_MARK
from vlad_tui.runbook.operations.rollback_picker import pick_params
from vlad_tui.runbook.rollback_flow import run_rollback

pytestmark = pytest.mark.integration
TIMEOUT = 5.0


class Load(threading.Thread):
    """GET /health and /build in turn, ~50 a second, a new connection each; every failure is
    kept with its reason, every build id served is counted."""

    def __init__(self, port: int, rate: float = 50.0) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.interval = 1.0 / rate
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.builds: dict[str, int] = {}
        self.seconds = 0.0
        self.slowest = 0.0

    def run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self.stop.is_set():
            path = "/build" if n % 2 else "/health"
            n += 1
            sent = time.monotonic()
            try:
                # A slow answer on this shared machine is not a dropped request: 5 s.
                with urllib.request.urlopen(self.base + path, timeout=TIMEOUT) as resp:
                    body = resp.read()
                self.slowest = max(self.slowest, time.monotonic() - sent)
                if path == "/build":
                    build = json.loads(body)["build"]
                    self.builds[build] = self.builds.get(build, 0) + 1
                self.ok += 1
            except (OSError, ValueError) as exc:
                self.failures.append(f"{path} at {sent - started:.1f} s: {exc}")
            self.stop.wait(max(0.0, started + n * self.interval - time.monotonic()))
        self.seconds = time.monotonic() - started

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def build_id(release: releases.Release) -> str:
    return (Path(release.path) / "dist" / "BUILD_ID").read_text().strip()


async def test_code_only_rollback_under_load_fails_no_request_in_cluster_mode(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path: Path
) -> None:
    async with build_world(pg, pm2, sshd, tmp_path) as world:
        target, transport = world.target, world.transport
        r1 = await releases.build_release(target, transport)
        r2 = await releases.build_release(target, transport)
        for release in (r1, r2):
            plan = await release_switch.plan_switch(target, transport, release)
            await release_switch.switch(target, transport, plan, settle=0.5)
        assert world.builds() == {build_id(r2)}

        engine = world.engine()
        world.operator.answers = ["production"]
        with Load(world.port) as load:
            await asyncio.sleep(0.5)  # the load runs before the rollback starts…
            t0 = time.monotonic()
            ok = await run_rollback(engine, pick_params(None, "code", record=None))
            wall = time.monotonic() - t0
            await asyncio.sleep(0.5)  # …and after it ends
        print(
            f"\ncode-only rollback, cluster mode: {wall:.1f} s; load {load.ok} ok, "
            f"{len(load.failures)} failed over {load.seconds:.1f} s "
            f"({(load.ok + len(load.failures)) / load.seconds:.0f} req/s, slowest answer "
            f"{load.slowest * 1000:.0f} ms)"
        )
        assert ok, {s: engine.error(s) for s in engine.statuses if engine.error(s)}
        assert load.failures == [], load.failures[:5]
        assert load.ok >= 40 * load.seconds * 0.8, (load.ok, load.seconds)
        # Served throughout by one release or the other, never by nothing.
        assert set(load.builds) <= {build_id(r1), build_id(r2)}
        assert build_id(r1) in load.builds

        # Every worker runs the previous release, in cluster mode.
        app = [p for p in pm2.jlist() if p["name"] == target.pm2_name]
        assert len(app) == 2
        assert {p["pm2_env"]["pm_cwd"].rstrip("/") for p in app} == {r1.path}
        assert {p["pm2_env"]["exec_mode"] for p in app} == {"cluster_mode"}
        assert {p["pm2_env"]["status"] for p in app} == {"online"}
        assert world.builds(20) == {build_id(r1)}

        # The release rolled back from is marked, listed as such, never "previous" again.
        assert (Path(r2.path) / BAD_MARK).read_text().strip() == world.run.run_id
        listed = {r.id: r for r in await releases.list_releases(target, transport)}
        assert listed[r2.id].rolled_back and not listed[r1.id].rolled_back
        assert "rolled back" in listed[r2.id].describe()
        [bad] = world.artifacts("release_bad")
        assert bad["release"] == r2.path
        pruned = await release_prune.prunable(target, transport, keep=0)
        assert r2.id in pruned.removed and r1.id not in pruned.removed
        assert (await release_switch.verify_running(target, transport, r1)).ok


async def test_a_fork_mode_switch_finds_its_process_on_a_daemon_running_only_this_app(
    pm2: Pm2, tmp_path: Path
) -> None:
    """pm2 numbers processes anew once its list is empty: after the fork-mode delete, the new
    process gets the old one's id. The switch must still see it start (it used to time out
    and leave the app down)."""
    from tests.rig.pm2 import wait_http
    from tests.rig.services import free_port
    from tests.rig.world import GENERATE
    from vlad_tui.config import Target
    from vlad_tui.demo import install_backend
    from vlad_tui.transport import LocalTransport

    own = Pm2(pm2.bin, tmp_path / "pm2")
    port = free_port()
    app_dir = tmp_path / "backend-vlad"
    install_backend(app_dir, port=port, database_url="postgresql://nobody@127.0.0.1:1/unused")
    target = Target(
        "production",
        host="local",
        app_dir=str(app_dir),
        pm2_name="vlad-fork",
        pm2_bin=str(pm2.bin),
        pm2_home=str(own.home),
        health_url=f"http://127.0.0.1:{port}/health",
        install_command="npm ci --no-audit --no-fund",
        generate_command=GENERATE,
        build_command="npm run build",
        start_command="dist/server.js",
    )
    try:
        async with LocalTransport() as transport:
            r1 = await releases.build_release(target, transport)
            r2 = await releases.build_release(target, transport)
            (Path(r1.path) / ".env").symlink_to(app_dir / ".env")  # as a switch links it
            own.run("start", f"{r1.path}/dist/server.js", "--name", "vlad-fork", cwd=Path(r1.path))
            wait_http(target.health_url)
            [before] = await release_switch.app_workers(target, transport)
            plan = await release_switch.plan_switch(target, transport, r2)
            assert plan.strategy == "stop-start"
            check = await release_switch.switch(target, transport, plan, settle=0.5)
            assert check.ok, check.describe()
            [after] = await release_switch.app_workers(target, transport)
            assert after.pm_id == before.pm_id  # the id pm2 reused
            assert after.cwd.rstrip("/") == r2.path and after.online
    finally:
        own.kill()
