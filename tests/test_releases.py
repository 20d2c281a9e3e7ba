"""Releases built beside production, switched to and pruned, under real pm2 (local and SSH).

One production for the module: the sample backend checked out in a git repository, built in
place and run by pm2 as ``dist/server.js`` from ``app_dir`` in cluster mode, the plan's layout.
Tests that switch it to a release switch it back before they end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.rig.pm2 import wait_http
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import ConfigError, Target, load_config, render_template
from vlad_tui.db import parse_database_url
from vlad_tui.demo import install_backend
from vlad_tui.demo.pm2 import Pm2
from vlad_tui.events import OutputLine
from vlad_tui.ops import release_prune, release_switch, releases
from vlad_tui.ops.release_switch import Worker
from vlad_tui.ops.releases import Release
from vlad_tui.transport import LocalTransport, SshTransport
from vlad_tui.transport.base import Transport

pytestmark = pytest.mark.integration

NAME = "backend-vlad-rel"
SECRET = "s3cret-rel-pw"
GIT = ["git", "-c", "user.name=vlad-tui tests", "-c", "user.email=tests@example.invalid"]


@dataclass(frozen=True)
class Production:
    """The sample backend as the plan runs it: built in ``app_dir``, pm2 from there."""

    app_dir: Path
    port: int
    instances: int
    pm2: Pm2

    def target(self, *, sshd: SshdServer | None = None, **kw: Any) -> Target:
        fields: dict[str, Any] = {
            "app_dir": str(self.app_dir),
            "pm2_name": NAME,
            "pm2_bin": str(self.pm2.bin),
            "pm2_home": str(self.pm2.home),
            "health_url": f"http://127.0.0.1:{self.port}/health",
            "install_command": "npm ci --no-audit --no-fund",
            "generate_command": "npm run --if-present prisma:generate",
            "build_command": "npm run build",
            "start_command": "dist/server.js",
            **kw,
        }
        if sshd is not None:
            return sshd.target("production", **fields)
        return Target("production", host="local", **fields)

    def get(self, path: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def builds(self, n: int = 12) -> set[str]:
        """The build ids answered by ``n`` requests (pm2 spreads them over the workers)."""
        return {self.get("/build")["build"] for _ in range(n)}


def checksum(directory: Path) -> str:
    """Every path, mode, link target and byte under ``directory`` (dist/, node_modules/, .env
    and .git included)."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(directory)}\0{info.st_mode}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def production(pm2: Pm2) -> Iterator[Production]:
    root = Path(tempfile.mkdtemp(prefix="vlad-rel-"))
    app_dir = root / "backend-vlad"
    port = free_port()
    install_backend(
        app_dir,
        port=port,
        database_url=f"postgresql://app:{SECRET}@127.0.0.1:1/peludosclick",
    )
    (app_dir / ".gitignore").write_text("node_modules/\ndist/\n.env\n")
    env = {**os.environ, "BUILD_ID": "production-v1"}
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        [*GIT, "commit", "-q", "-m", "v1"],
        ["npm", "run", "build"],
    ):
        subprocess.run(command, cwd=app_dir, env=env, check=True, capture_output=True)
    instances = 2
    try:
        # As an operator would: `NODE_ENV=production pm2 start ...` in a login shell.
        subprocess.run(
            [pm2.bin, "start", "dist/server.js", "--name", NAME, "-i", str(instances)],
            cwd=app_dir, env={**pm2.env, "NODE_ENV": "production"}, check=True,
            capture_output=True,
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{port}/health")
        yield Production(app_dir, port, instances, pm2)
    finally:
        pm2.delete(NAME)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def local(production: Production) -> AsyncIterator[tuple[Target, Transport]]:
    transport = LocalTransport()
    try:
        yield production.target(), transport
    finally:
        await transport.close()


@pytest.fixture
async def ssh(production: Production, sshd: SshdServer) -> AsyncIterator[tuple[Target, Transport]]:
    target = production.target(sshd=sshd)
    transport = SshTransport(target)
    try:
        yield target, transport
    finally:
        await transport.close()


class Load(threading.Thread):
    """Steady GET /health (~50 req/s, a new connection each) while a block runs."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/health"
        self.stop = threading.Event()
        self.ok = self.failed = 0
        self.reasons: list[str] = []
        self.gap = 0.0
        self.started = 0.0

    def run(self) -> None:
        last = self.started = time.monotonic()
        while not self.stop.is_set():
            try:
                # A slow answer on this shared 2-core machine is not a dropped request: 5 s, as
                # in tests/test_rollback_load.py; a refused or reset connection fails at once.
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    resp.read()
                self.ok += 1
                now = time.monotonic()
                self.gap, last = max(self.gap, now - last), now
            except OSError as exc:
                self.failed += 1
                self.reasons.append(f"at {time.monotonic() - self.started:.1f} s: {exc}")
            self.stop.wait(0.02)
        self.gap = max(self.gap, time.monotonic() - last)

    def describe(self) -> str:
        return (
            f"{self.ok} ok, {self.failed} failed, longest gap {self.gap * 1000:.0f} ms "
            f"over {time.monotonic() - self.started:.1f} s"
            + "".join(f"; {reason}" for reason in self.reasons[:5])
        )

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


async def back_to_app_dir(target: Target, transport: Transport, production: Production) -> None:
    """Switch production back to the plan's layout (a no-op when it already runs there)."""
    check = await release_switch.verify_running(target, transport, target.app_dir)
    if not check.ok:
        plan = await release_switch.plan_switch(target, transport, target.app_dir)
        await release_switch.switch(target, transport, plan, settle=0.5)
    assert production.builds() == {"production-v1"}


# --- building ---------------------------------------------------------------------------------


async def test_a_release_is_built_beside_production_which_keeps_serving_its_build(
    local: tuple[Target, Transport], production: Production
) -> None:
    target, transport = local
    before = checksum(production.app_dir)
    workers = await release_switch.app_workers(target, transport)
    assert [w.exec_path for w in workers] == [f"{production.app_dir}/dist/server.js"] * 2
    url = parse_database_url(f"postgresql://app:{SECRET}@127.0.0.1:1/peludosclick_staging")
    lines: list[OutputLine] = []
    # A slow build, so that a production worker dies (and pm2 restarts it) in the middle.
    slow = replace(target, build_command="sleep 2 && npm run build")
    build = asyncio.create_task(releases.build_release(slow, transport, url, sink=lines.append))
    root = Path(target.releases_path)
    deadline = time.monotonic() + 60
    while not list(root.glob("*/.vlad-tui/release.json")):
        assert time.monotonic() < deadline and not build.done()
        await asyncio.sleep(0.1)
    pid = production.get("/build")["pid"]
    os.kill(pid, signal.SIGKILL)
    respawned: set[int] = set()
    while not build.done():
        answer = production.get("/build")
        assert answer["build"] == "production-v1", answer
        respawned.add(answer["pid"])
        await asyncio.sleep(0.05)
    release = await build
    after = await release_switch.app_workers(target, transport)
    assert sum(w.restarts for w in after) == 1, "pm2 restarted the killed worker"
    assert {w.exec_path for w in after} == {f"{production.app_dir}/dist/server.js"}
    assert pid not in respawned and len(respawned) == 2, "the restarted worker served too"
    assert production.builds() == {"production-v1"}

    # Not one byte of production changed: dist/, node_modules/, .env, .git.
    assert checksum(production.app_dir) == before
    path = Path(release.path)
    assert path.parent == production.app_dir.parent / "backend-vlad-releases"
    assert release.source is not None and release.source.kind == "git"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=production.app_dir, capture_output=True, text=True
    ).stdout.strip()
    assert release.source.revision == head and not release.source.dirty
    assert release.id.split("-")[1] == head[:12]
    built_id = (path / "dist/BUILD_ID").read_text().strip()
    assert built_id and built_id != "production-v1"
    # The copy left out what does not belong in a release; the secret is nowhere on its disk.
    assert not (path / ".env").exists() and not (path / ".git").exists()
    assert (path / "server.js").read_bytes() == (production.app_dir / "server.js").read_bytes()
    for file in path.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
    assert SECRET not in "\n".join(line.text for line in lines)
    assert any("sleep 2 && npm run build" in line.text for line in lines)

    listed = await releases.list_releases(target, transport)
    mine = next(r for r in listed if r.id == release.id)
    assert mine.built and mine.manifest_ok is True and (mine.size_bytes or 0) > 0
    assert mine.source == release.source


async def test_the_manifest_and_the_source_say_what_changed(
    local: tuple[Target, Transport], production: Production
) -> None:
    target, transport = local
    release = await releases.build_release(target, transport)
    assert (await releases.verify_manifest(target, transport, release)).ok
    assert (await releases.source_changes(target, transport, release)).ok

    dist = Path(release.path) / "dist"
    original = (dist / "server.js").read_bytes()
    (dist / "server.js").write_bytes(original + b"\n// patched on the server\n")
    (dist / "extra.js").write_text("1\n")
    (dist / "BUILD_ID").unlink()
    changes = await releases.verify_manifest(target, transport, release)
    assert changes.changed == ("dist/server.js",)
    assert changes.added == ("dist/extra.js",) and changes.removed == ("dist/BUILD_ID",)
    assert "1 changed (dist/server.js)" in changes.describe()
    listed = {r.id: r for r in await releases.list_releases(target, transport, sizes=False)}
    assert listed[release.id].manifest_ok is False

    # New code pulled into app_dir after the build: the source says so (node_modules does not).
    added = production.app_dir / "src-new.js"
    added.write_text("// new\n")
    (production.app_dir / "node_modules").mkdir(exist_ok=True)
    try:
        changes = await releases.source_changes(target, transport, release)
        assert changes.added == ("src-new.js",) and not changes.changed
        source = await releases.read_source(target, transport)
        assert source.dirty and source.tree != release.source.tree  # type: ignore[union-attr]
        assert source.text.endswith("+ uncommitted changes")
    finally:
        added.unlink()
        (production.app_dir / "node_modules").rmdir()


async def test_a_plain_directory_is_identified_by_its_content(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "main.ts").write_text("export {}\n")
    target = Target("t", host="local", app_dir=str(app))
    transport = LocalTransport()
    try:
        first = await releases.read_source(target, transport)
        assert first.kind == "tree" and first.revision is None and len(first.tree) == 64
        assert first.text == f"files {first.tree[:12]}" and first.slug == "t" + first.tree[:12]
        for ignored in ("node_modules/x/index.js", "dist/main.js", ".env"):
            (app / ignored).parent.mkdir(parents=True, exist_ok=True)
            (app / ignored).write_text("ignored\n")
        assert (await releases.read_source(target, transport)).tree == first.tree
        (app / "src" / "main.ts").write_text("export const x = 1\n")
        assert (await releases.read_source(target, transport)).tree != first.tree
    finally:
        await transport.close()


# --- switching --------------------------------------------------------------------------------


async def test_switch_over_ssh_moves_every_worker_to_the_release_and_back(
    ssh: tuple[Target, Transport], production: Production
) -> None:
    target, transport = ssh
    before = checksum(production.app_dir)
    release = await releases.build_release(target, transport)
    built_id = (Path(release.path) / "dist/BUILD_ID").read_text().strip()
    old = await release_switch.app_workers(target, transport)

    layout = await release_switch.plan_first_layout_change(target, transport, release)
    assert layout is not None
    assert (
        f"pm2 runs {production.app_dir}/dist/server.js from {production.app_dir}"
        in (layout.explanation[0])
    )
    plan = layout.plan
    assert plan.strategy == "side-by-side" and plan.mode == "cluster" and plan.instances == 2
    assert [s.kind for s in plan.steps] == ["link", "start", "retire", "retire"]
    # NODE_ENV came from the shell that started pm2; this SSH session lacks it: said, by name.
    assert "NODE_ENV" not in os.environ and "NODE_ENV" in plan.lost_env
    assert any("in their environment" in note for note in plan.notes)
    assert not any("=production" in note for note in plan.notes), "names, never values"
    pm2 = f"PM2_HOME={production.pm2.home} {production.pm2.bin}"
    assert plan.commands[1] == (
        f"cd / && {pm2} start {release.path}/dist/server.js --name {NAME} -i 2 "
        f"--cwd {release.path} -f"
    )
    assert plan.commands[2:] == [f"cd / && {pm2} delete {w.pm_id}" for w in old]
    assert layout.revert == (
        f"cd / && {pm2} start {production.app_dir}/dist/server.js --name {NAME} -i 2 "
        f"--cwd {production.app_dir} -f",
        f"then, one at a time: cd / && {pm2} delete <pm_id> for each worker of the release",
    )

    served: list[set[str]] = []

    async def probe(step: release_switch.SwitchStep) -> None:
        served.append(production.builds(6))

    try:
        with Load(production.port) as load:
            check = await release_switch.switch(target, transport, plan, after_step=probe)
        print(f"\nswitch under load: {load.describe()}")
        assert load.ok > 20 and load.failed == 0, load.describe()
        assert check.ok, check.describe()
        assert len(check.workers) == 2
        assert {(w.cwd, w.exec_path) for w in check.workers} == {
            (release.path, f"{release.path}/dist/server.js")
        }
        # Old and new answered side by side before the last old worker went; then only new.
        assert served[1] >= {"production-v1"} and built_id in served[1] | served[2]
        assert production.builds() == {built_id}
        assert os.readlink(Path(release.path) / ".env") == f"{production.app_dir}/.env"
        assert not (await release_switch.verify_running(target, transport, target.app_dir)).ok
        assert await release_switch.plan_first_layout_change(target, transport, release) is None
        assert checksum(production.app_dir) == before
    finally:
        await back_to_app_dir(target, transport, production)
    check = await release_switch.verify_running(target, transport, target.app_dir)
    assert check.ok and len(check.workers) == 2
    assert checksum(production.app_dir) == before


async def test_a_release_that_crashes_is_removed_and_the_old_workers_keep_serving(
    local: tuple[Target, Transport], production: Production
) -> None:
    target, transport = local
    crashing = replace(
        target, build_command="npm run build && echo 'process.exit(1)' > dist/server.js"
    )
    release = await releases.build_release(crashing, transport)
    plan = await release_switch.plan_switch(target, transport, release.path)
    old = {w.pm_id for w in await release_switch.app_workers(target, transport)}
    with pytest.raises(releases.ReleaseError, match="the old workers keep serving"):
        await release_switch.switch(target, transport, plan, start_timeout=30)
    assert {w.pm_id for w in await release_switch.app_workers(target, transport)} == old
    assert (await release_switch.verify_running(target, transport, target.app_dir)).ok
    assert production.builds() == {"production-v1"}


async def test_a_build_changed_after_it_was_built_is_not_shipped(
    local: tuple[Target, Transport], production: Production
) -> None:
    target, transport = local
    release = await releases.build_release(target, transport)
    plan = await release_switch.plan_switch(target, transport, release)
    stale = replace(plan, replaced=plan.replaced[:1])
    with pytest.raises(releases.ReleaseError, match="changed since this switch was planned"):
        await release_switch.switch(target, transport, stale)
    Path(release.path, "dist/server.js").write_text("// not what was tested\n")
    with pytest.raises(releases.ReleaseError, match=r"changed since it was built \(1 changed"):
        await release_switch.switch(target, transport, plan)
    assert (await release_switch.verify_running(target, transport, target.app_dir)).ok
    # A release whose build never finished has nothing to ship either.
    unbuilt = Path(target.releases_path) / "20200101T000000-unbuilt"
    (unbuilt / "dist").mkdir(parents=True)
    (unbuilt / "dist/server.js").write_text("\n")
    plan = await release_switch.plan_switch(target, transport, str(unbuilt))
    with pytest.raises(releases.ReleaseError, match="never built"):
        await release_switch.switch(target, transport, plan)


async def test_fork_mode_is_delete_then_start_and_its_downtime_is_measured(
    production: Production, tmp_path: Path
) -> None:
    app_dir = tmp_path / "fork-app"
    port = free_port()
    install_backend(app_dir, port=port, database_url="postgresql://app@127.0.0.1:1/x")
    subprocess.run(["npm", "run", "build"], cwd=app_dir, check=True, capture_output=True)
    name = f"{NAME}-fork"
    production.pm2.run("start", "dist/server.js", "--name", name, cwd=app_dir)
    fork = Production(app_dir, port, 1, production.pm2)
    target = replace(fork.target(), pm2_name=name)
    transport = LocalTransport()
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        release = await releases.build_release(target, transport)
        plan = await release_switch.plan_switch(target, transport, release)
        assert plan.mode == "fork" and plan.strategy == "stop-start"
        assert [s.kind for s in plan.steps] == ["link", "stop", "start"]
        assert " -i " not in plan.commands[2] and " -f" not in plan.commands[2]
        with Load(port) as load:
            check = await release_switch.switch(target, transport, plan, settle=0.5)
            wait_http(f"http://127.0.0.1:{port}/health")
        print(f"\nfork-mode switch: {load.describe()}")
        assert check.ok and len(check.workers) == 1 and load.ok > 0
        assert fork.builds(3) == {(Path(release.path) / "dist/BUILD_ID").read_text().strip()}
    finally:
        production.pm2.delete(name)
        await transport.close()


# --- keeping ----------------------------------------------------------------------------------


async def test_prunable_keeps_the_running_and_the_previous_release(
    local: tuple[Target, Transport], production: Production
) -> None:
    target, transport = local
    earlier = {r.id for r in await releases.list_releases(target, transport, sizes=False)}
    built = [await releases.build_release(target, transport) for _ in range(4)]
    junk = Path(target.releases_path) / "20200101T000000-unbuilt"
    (junk / "dist").mkdir(parents=True, exist_ok=True)  # a build that never finished
    try:
        for release in built[:2]:
            plan = await release_switch.plan_switch(target, transport, release.path)
            await release_switch.switch(target, transport, plan, settle=0.5)
        worker_ids = [w.pm_id for w in await release_switch.app_workers(target, transport)]
        result = await release_prune.prunable(target, transport, keep=2)
        r1, r2, r3, r4 = (r.id for r in built)
        assert set(result.removed) == earlier | {junk.name}
        assert result.kept == {
            r1: "the previous release",
            r2: f"pm2 runs it ({NAME}, worker {worker_ids[0]})",
            r3: "one of the newest 2",
            r4: "one of the newest 2",
        }
        # Only named: nothing is removed without the operator typing its id.
        assert junk.exists() and all(Path(r.path).is_dir() for r in built)
        assert (await release_switch.verify_running(target, transport, built[1].path)).ok
    finally:
        await back_to_app_dir(target, transport, production)
        shutil.rmtree(junk)
    # Back in app_dir: the release it came from is now "the previous one".
    result = await release_prune.prunable(target, transport, keep=2)
    assert r1 in result.removed and r2 not in result.removed
    assert result.kept[r2] == "the previous release"


async def test_prunable_never_offers_the_directory_pm2s_daemon_runs_in(
    local: tuple[Target, Transport], production: Production, tmp_path: Path
) -> None:
    target, transport = local
    # A daemon first started by `cd <release> && pm2 ...` keeps that cwd (pm2 #1623).
    other = replace(target, releases_dir=str(tmp_path / "releases"), pm2_home=str(tmp_path / "pm2"))
    r1, r2, r3 = [await releases.build_release(other, transport) for _ in range(3)]
    daemon = Pm2(production.pm2.bin, tmp_path / "pm2")
    daemon.run("ping", cwd=Path(r1.path))
    try:
        result = await release_prune.prunable(other, transport, keep=1)
        assert result.removed == (r2.id,)
        assert result.kept[r1.id].startswith("pm2's daemon runs in it")
        assert result.kept[r3.id] == "one of the newest 1"
        assert "pong" in daemon.run("ping")
    finally:
        daemon.kill()


# --- pure parts -------------------------------------------------------------------------------


def _worker(pm_id: int, cwd: str, mode: str = "cluster", **kw: Any) -> Worker:
    return Worker(pm_id, "app", "online", mode, f"{cwd}/dist/main.js", cwd, **kw)


def test_switch_steps_in_fork_mode_stop_then_start_and_carry_options() -> None:
    target = Target("p", app_dir="/srv/app", pm2_name="app", start_command="dist/main.js -- --x")
    workers = [_worker(0, "/srv/app", "fork", options=("--kill-timeout", "5000", "--wait-ready"))]
    plan = release_switch.switch_steps(
        target, workers, "/srv/app-releases/20260101T000000-abc", link_env=True, save=True
    )
    assert plan.strategy == "stop-start" and plan.mode == "fork" and plan.instances == 1
    rel = "/srv/app-releases/20260101T000000-abc"
    assert plan.commands == [
        f"ln -sfn /srv/app/.env {rel}/.env",
        "cd / && pm2 delete app",
        f"cd / && pm2 start {rel}/dist/main.js --name app --cwd {rel} "
        "--kill-timeout 5000 --wait-ready -- --x",
        "cd / && pm2 save",
    ]
    assert any("cluster mode" in note for note in plan.notes)
    # Every value is quoted.
    odd = Target("p", app_dir="/srv/my app", pm2_name="a;b")
    plan = release_switch.switch_steps(
        odd, [], "/srv/my app-releases/20260101T000000-x", link_env=False, save=False
    )
    assert plan.commands == [
        "cd / && pm2 start '/srv/my app-releases/20260101T000000-x/dist/main.js' --name 'a;b' "
        "-i 1 --cwd '/srv/my app-releases/20260101T000000-x'"
    ]


def test_variables_the_new_processes_would_lose_are_named() -> None:
    names = frozenset({"NODE_ENV", "PATH", "SSH_CLIENT", "TERM", "app", "PM2_HOME"})
    worker = _worker(0, "/srv/app", env_names=releases_env_names(names))
    target = Target("p", app_dir="/srv/app", pm2_name="app")
    plan = release_switch.switch_steps(
        target, [worker], "/r/20260101T000000-x", link_env=False, save=False,
        session_env=["PATH", "HOME"],
    )  # fmt: skip
    assert plan.lost_env == ("NODE_ENV",)
    assert "have NODE_ENV in their environment" in plan.notes[0]
    assert (
        release_switch.switch_steps(
            target, [worker], "/r/20260101T000000-x", link_env=False, save=False
        ).lost_env
        == ()
    )


def releases_env_names(names: frozenset[str]) -> frozenset[str]:
    """What :func:`release_switch.parse_workers` keeps of a process's variables."""
    entry = {"pm_id": 0, "name": "app", "pm2_env": {"name": "app", "env": dict.fromkeys(names)}}
    return release_switch.parse_workers(json.dumps([entry]))[0].env_names


def test_carried_options_come_from_pm2_env() -> None:
    text = json.dumps(
        [
            {
                "pm_id": 3,
                "name": "app",
                "pm2_env": {
                    "status": "online",
                    "exec_mode": "cluster_mode",
                    "pm_exec_path": "/srv/app/dist/main.js",
                    "pm_cwd": "/srv/app",
                    "node_args": ["--max-old-space-size=512"],
                    "max_memory_restart": 314572800,
                    "namespace": "default",
                    "env": {"DATABASE_URL": "postgresql://u:pw@h/db"},
                },
            }
        ]
    )
    (worker,) = release_switch.parse_workers("[PM2] warning first\n" + text)
    assert worker.options == (
        "--node-args",
        "--max-old-space-size=512",
        "--max-memory-restart",
        "314572800",
    )
    assert worker.runs_from("/srv/app") and not worker.runs_from("/srv/ap")
    assert "pw" not in repr(worker)


def _release(rid: str, created: float, built: bool = True) -> Release:
    return Release(rid, f"/r/{rid}", None, created, created if built else None)


def test_prune_never_removes_pm2s_daemon_cwd_or_a_release_in_use() -> None:
    rels = [_release(f"2026010{i}T000000-x", float(i)) for i in range(1, 8)]
    rels.append(_release("20260109T000000-new", time.time(), built=False))
    result = release_prune.choose_prune(
        rels,
        2,
        in_use=[
            # pm2's daemon cwd, after a `cd release && pm2 start` by hand
            ("/r/20260101T000000-x/dist", "daemon"),
            # the staging instance, or pm2's saved list
            ("/r/20260103T000000-x/dist/main.js", "saved"),
        ],
        previous=["/r/20260102T000000-x"],
    )
    assert result.removed == ("20260104T000000-x", "20260105T000000-x")
    assert result.kept["20260101T000000-x"] == "daemon"
    assert result.kept["20260103T000000-x"] == "saved"
    assert result.kept["20260102T000000-x"] == "the previous release"
    assert result.kept["20260109T000000-new"] == "incomplete, may still be building"


def test_previous_from_the_switch_log() -> None:
    log = "\n".join(
        json.dumps(r)
        for r in (
            {"at": 1, "from": ["/srv/app"], "to": "/r/a"},
            {"at": 2, "from": ["/r/a"], "to": "/r/b"},
            "garbage",
        )
    )
    assert release_switch.previous_from_log(log + "\nnot json", ["/r/b"]) == {"/r/a"}
    assert release_switch.previous_from_log(log, ["/r/a"]) == {"/srv/app"}
    assert release_switch.previous_from_log(log, ["/r/c"]) == set()


def test_manifests_compare() -> None:
    recorded = releases.parse_manifest(f"{'a' * 64}  dist/a.js\n{'b' * 64}  dist/b.js\n")
    current = releases.parse_manifest(f"{'a' * 64}  dist/a.js\n{'c' * 64}  ./dist/b.js\n")
    assert releases.compare(recorded, current) == releases.Changes(changed=("dist/b.js",))
    assert releases.compare(recorded, recorded).ok


def test_release_settings_are_validated(tmp_path: Path) -> None:
    def load(extra: str) -> Target:
        path = tmp_path / "c.toml"
        path.write_text(f'[targets.p]\nhost = "local"\napp_dir = "/srv/app"\n{extra}')
        return load_config(path).target("p")

    assert load("").releases_path == "/srv/app-releases"
    assert load("").keep_releases == 5 and load("").install_command == "npm ci"
    target = load('releases_dir = "/data/rel/"\nkeep_releases = 3\ninstall_command = "npm i"\n')
    assert (target.releases_path, target.keep_releases, target.install_command) == (
        "/data/rel",
        3,
        "npm i",
    )
    for extra, fragment in (
        ('releases_dir = "/srv/app/releases"', "outside app_dir"),
        ('releases_dir = "/srv/app"', "outside app_dir"),
        ('releases_dir = "rel"', "absolute path"),
        ("keep_releases = 1", "at least 2"),
        ('keep_releases = "5"', "expected an integer"),
        ('install_command = ""', "must not be empty"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            load(extra + "\n")
    template = render_template()
    assert 'install_command = "npm ci"' in template and "keep_releases = 5" in template
    assert "# releases_dir = " in template


def test_release_ids_are_safe_names() -> None:
    source = releases.SourceId("f" * 64, "0123456789abcdef", dirty=True)
    rid = releases.new_release_id(source, now=0)
    assert rid.startswith("19700101T000000-0123456789ab-dirty-") and releases.RELEASE_ID.match(rid)
    with pytest.raises(ValueError):
        releases.release_path(Target("p"), "../etc")
    with pytest.raises(releases.ReleaseError, match="outside app_dir"):
        releases.check_layout(Target("p", app_dir="/srv/a", releases_dir="/srv/a/r"))
