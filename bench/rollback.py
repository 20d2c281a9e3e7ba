"""vlad-tui's data rollback (restore beside + swap) vs the plan's (stop, ``psql`` a plain dump).

Builds, or reuses from ``<repo>/.bench/rollback/``, a PostgreSQL cluster with a
``peludosclick``-like source database per size (the generated data of ``bench/backup.py``).
For each size, production is a fresh copy of the source; both backups are taken from it (a
custom-format one with fingerprints for vlad-tui, a plain ``pg_dump -Fp`` for the plan), then
production receives new writes, and both rollbacks run, timed from the same start:

  (a) vlad-tui: preflight, ``pg_restore -j 2`` into ``<db>_restore_<ts>`` as a detached job
      while the app serves, verify against the backup's fingerprints, then the swap (block,
      stop, terminate, two renames, allow, start). Downtime: app stopped → healthy again.
  (b) the plan: stop the app; ``createdb`` a fresh database and ``psql -f plain.sql`` into it;
      start the app on it. Downtime: the whole of it.

"The app" is a database client: stopped = its connection closed; healthy = a query on
production answers. Goal: vlad-tui's downtime ≤ 10 % of the plan's at the larger size and
nearly flat between sizes. Each rollback's databases are dropped at the end (the bench's own).

Then the code-only rollback (its own section; ``--code-only`` runs just it): the sample backend
(``--boot-ms`` boot, like NestJS) under a private pm2 daemon, two releases built beside it, a
steady load of ``--rate`` GETs/s of /health, and, side by side:

  (c1) vlad-tui's code-only rollback (the engine: pick, preflight, switch back to the previous
       release side by side, health, report), cluster ×2                   goal: 0 failed
  (c2) the plan's way, cluster ×2: the previous build copied back into app_dir by hand, then
       ``pm2 restart``; timed until the app serves the previous build
  (c3) vlad-tui's code-only rollback in fork mode (delete + start: fails while it boots)

    .venv/bin/python bench/rollback.py [--sizes 100,500] [--fresh] [--code-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from bench.backup import _BATCH_SQL, free_port  # noqa: E402
from vlad_tui.config import Config, Project, Target  # noqa: E402
from vlad_tui.db import parse_database_url  # noqa: E402
from vlad_tui.demo import install_backend  # noqa: E402
from vlad_tui.demo.cluster import PgCluster, find_bin_dir  # noqa: E402
from vlad_tui.demo.pm2 import Pm2, find_pm2  # noqa: E402
from vlad_tui.demo.seed import CRITICAL_TABLES, seed_sql  # noqa: E402
from vlad_tui.journal import Journal  # noqa: E402
from vlad_tui.ops import db_swap, kept, restore, rollback, rollback_preflight  # noqa: E402
from vlad_tui.ops.backup import Backup  # noqa: E402
from vlad_tui.ops.backup_dump import create_backup  # noqa: E402
from vlad_tui.ops.pm2 import pm2_command  # noqa: E402
from vlad_tui.ops.probe import HealthProbe, ProbeReport  # noqa: E402
from vlad_tui.ops.release_switch import plan_switch, switch  # noqa: E402
from vlad_tui.ops.releases import BAD_MARK, build_release  # noqa: E402
from vlad_tui.runbook.engine import ConfirmRequest, Engine  # noqa: E402
from vlad_tui.runbook.operations.rollback_picker import pick_params  # noqa: E402
from vlad_tui.runbook.rollback_flow import run_rollback  # noqa: E402
from vlad_tui.transport import LocalTransport  # noqa: E402
from vlad_tui.transport.base import Transport  # noqa: E402
from vlad_tui.transport.shell import quote  # noqa: E402

CACHE = REPO / ".bench" / "rollback"
PROD = "peludosclick"
TABLES = (*CRITICAL_TABLES, "_prisma_migrations")
STEP = 25_000  # medals per growth step (about 18 MiB), to land near each size


def open_cluster(fresh: bool) -> PgCluster:
    """The cached cluster, started on a free port."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    state_file = CACHE / "state.json"
    if fresh and CACHE.exists():
        shutil.rmtree(CACHE)
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)  # the postgres user (under root) must reach the cluster below
    if state is None:
        shutil.rmtree(CACHE / "cluster", ignore_errors=True)
        password = secrets.token_urlsafe(12) + "@:/%"
        cluster = PgCluster(CACHE / "cluster", free_port(), bin_dir, password=password)
        cluster.init()
        fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"password": password}, fh)
    else:
        cluster = PgCluster(CACHE / "cluster", free_port(), bin_dir, password=state["password"])
    cluster.start()
    return cluster


async def ensure_source(cluster: PgCluster, name: str, size_mb: int) -> int:
    """Create/grow source database ``name`` to at least ``size_mb``; its size in bytes."""
    conn = await asyncpg.connect(cluster.url("postgres"))
    try:
        if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(cluster.url(name))
    try:
        if await conn.fetchval("select to_regclass('medals')") is None:
            await conn.execute(seed_sql())
        size = await conn.fetchval("select pg_database_size(current_database())")
        grew = False
        while size < size_mb * 2**20:
            grew = True
            lo = int(await conn.fetchval("select coalesce(max(id), 0) from medals")) + 1_000_000
            await conn.execute(_BATCH_SQL.format(lo=lo, n=STEP))
            size = await conn.fetchval("select pg_database_size(current_database())")
            print(f"  {name}: {size / 2**20:.0f} MiB", flush=True)
        if grew:
            await conn.execute("vacuum analyze")
            size = await conn.fetchval("select pg_database_size(current_database())")
        return int(size)
    finally:
        await conn.close()


async def admin(cluster: PgCluster, *statements: str) -> None:
    conn = await asyncpg.connect(cluster.url("postgres"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def drop_bench_databases(cluster: PgCluster) -> None:
    conn = await asyncpg.connect(cluster.url("postgres"))
    try:
        rows = await conn.fetch(
            "select datname from pg_database where datname = $1 or datname like $2",
            PROD,
            PROD + "\\_%",
        )
        for (name,) in rows:
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class App:
    """The app as a database client: ``stop`` closes its session, ``start`` reconnects until
    a query on production answers (healthy)."""

    def __init__(self, cluster: PgCluster, database: str) -> None:
        self.cluster = cluster
        self.database = database
        self.conn: asyncpg.Connection | None = None
        self.stopped_at = 0.0
        self.healthy_at = 0.0

    async def start(self) -> None:
        while True:
            try:
                self.conn = await asyncpg.connect(self.cluster.url(self.database))
                await self.conn.fetchval("select count(*) from (select 1 from medals limit 1) m")
                self.healthy_at = time.perf_counter()
                return
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.stopped_at = time.perf_counter()
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    @property
    def downtime(self) -> float:
        return self.healthy_at - self.stopped_at


def pg_env(cluster: PgCluster) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
        "PGUSER": cluster.superuser,
        "PGPASSWORD": cluster.password,  # environment of a local child, never argv
    }


async def run(argv: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise SystemExit(f"{argv[0]} failed")


async def new_writes(cluster: PgCluster) -> None:
    conn = await asyncpg.connect(cluster.url(PROD))
    try:
        await conn.execute(
            "insert into users (email, username, first_name, last_name, phonenumber, role, "
            "created_at, updated_at) select 'nuevo' || g || '@example.es', 'n' || g, 'N', 'A', "
            "'+34 600', 'VISITOR', now(), now() from generate_series(1, 25) g"
        )
    finally:
        await conn.close()


async def vlad_rollback(cluster: PgCluster, target: Target, backup: Backup) -> dict[str, float]:
    """(total, restore, verify, downtime) seconds of vlad-tui's data rollback."""
    url = parse_database_url(cluster.url(PROD))
    app = App(cluster, PROD)
    await app.start()
    when = rollback.stamp()
    restore_db, failed_db = rollback.restore_name(PROD, when), rollback.failed_name(PROD, when)
    async with LocalTransport() as transport:
        t0 = time.perf_counter()
        checked = await rollback_preflight.preflight(
            target, transport, url, backup, restore_db=restore_db
        )
        assert checked.ok, checked.failures
        job = await restore.start_restore(
            target, transport, url, backup, CRITICAL_TABLES, restore_db=restore_db, jobs=2
        )
        status = await restore.follow_restore(transport, job)
        assert status == 0, f"pg_restore exit status {status}"
        t1 = time.perf_counter()
        verification = await restore.verify_restored(target, transport, url, backup, restore_db)
        assert verification.ok, verification.lines()
        t2 = time.perf_counter()
        plan = db_swap.plan_swap(PROD, restore_db, failed_db)
        await db_swap.swap(target, transport, url, plan, stop_app=app.stop, start_app=app.start)
        t3 = time.perf_counter()
        report = await kept.set_aside_report(target, transport, url, backup, failed_db)
    assert next(r for r in report if r.table == "users").newer == 25
    if app.conn is not None:
        await app.conn.close()
    return {"total": t3 - t0, "restore": t1 - t0, "verify": t2 - t1, "downtime": app.downtime}


async def plan_rollback(cluster: PgCluster, plain: Path) -> dict[str, float]:
    """(total, downtime) seconds of the plan's: stop, psql the plain dump into a fresh db, start."""
    fresh = f"{PROD}_plan"
    app = App(cluster, PROD)
    await app.start()
    env = pg_env(cluster)
    t0 = time.perf_counter()
    await app.stop()
    await run(["createdb", "-T", "template0", fresh], env)
    await run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", fresh, "-f", str(plain)], env)
    app.database = fresh
    await app.start()
    total = time.perf_counter() - t0
    if app.conn is not None:
        await app.conn.close()
    return {"total": total, "downtime": app.downtime}


async def bench_size(cluster: PgCluster, size_mb: int) -> dict[str, float]:
    source = f"source_{size_mb}mb"
    db_size = await ensure_source(cluster, source, size_mb)
    await drop_bench_databases(cluster)
    await admin(cluster, f'CREATE DATABASE "{PROD}" TEMPLATE "{source}"')
    backups = CACHE / "backups"
    shutil.rmtree(backups, ignore_errors=True)
    backups.mkdir(mode=0o700)
    target = Target("bench", host="local", backup_dir=str(backups), jobs_dir=str(CACHE))
    url = parse_database_url(cluster.url(PROD))
    async with LocalTransport() as transport:
        backup = await create_backup(target, transport, url, fingerprint_tables=TABLES)
    plain = backups / "plain.sql"
    await run(["pg_dump", "-Fp", "-f", str(plain), PROD], {**pg_env(cluster), "PGDATABASE": PROD})
    await new_writes(cluster)
    print(
        f"{size_mb} MB: database {db_size / 2**20:.0f} MiB, custom backup "
        f"{backup.size / 2**20:.0f} MiB, plain dump {plain.stat().st_size / 2**20:.0f} MiB",
        flush=True,
    )
    ours = await vlad_rollback(cluster, target, backup)
    theirs = await plan_rollback(cluster, plain)
    await drop_bench_databases(cluster)
    shutil.rmtree(backups, ignore_errors=True)
    print(
        f"  vlad-tui: downtime {ours['downtime']:.2f} s, total {ours['total']:.1f} s "
        f"(restore beside {ours['restore']:.1f} s while serving, verify {ours['verify']:.1f} s)\n"
        f"  plan:     downtime {theirs['downtime']:.2f} s, total {theirs['total']:.1f} s\n"
        f"  downtime ratio: {ours['downtime'] / theirs['downtime']:.1%}; pg_restore -j 2 "
        f"throughput {backup.size / ours['restore'] / 2**20:.1f} MiB/s of backup",
        flush=True,
    )
    return {"size_mib": db_size / 2**20, **{f"vlad_{k}": v for k, v in ours.items()}} | {
        f"plan_{k}": v for k, v in theirs.items()
    }


async def bench(cluster: PgCluster, sizes: list[int]) -> None:
    results = [await bench_size(cluster, size) for size in sizes]
    print("\nsize MiB | vlad downtime | plan downtime | ratio | vlad total | plan total")
    for r in results:
        print(
            f"{r['size_mib']:8.0f} | {r['vlad_downtime']:11.2f} s | {r['plan_downtime']:11.1f} s"
            f" | {r['vlad_downtime'] / r['plan_downtime']:5.1%} | {r['vlad_total']:8.1f} s |"
            f" {r['plan_total']:8.1f} s"
        )
    if len(results) > 1:
        big = results[-1]
        ratio = big["vlad_downtime"] / big["plan_downtime"]
        growth = big["vlad_downtime"] - results[0]["vlad_downtime"]
        print(
            f"goal ≤ 10 % at the larger size: {'met' if ratio <= 0.10 else 'NOT met'} "
            f"({ratio:.1%}); vlad-tui's downtime grew by {growth * 1000:+.0f} ms between sizes, "
            f"the plan's by {big['plan_downtime'] - results[0]['plan_downtime']:+.1f} s"
        )


# --- the code-only rollback under load ------------------------------------------------------


APP = "backend-vlad-bench-rollback"


@dataclass(frozen=True)
class CodeRow:
    label: str
    load: ProbeReport
    wall: float
    note: str = ""
    #: vlad-tui's switch step alone (the rest is pick, preflight, health and report).
    step: float | None = None


class CodeBench:
    """A private pm2 daemon running the sample backend, with releases beside ``app_dir``."""

    def __init__(self, pm2: Pm2, root: Path, boot_ms: int, rate: float) -> None:
        self.pm2 = pm2
        self.root = root
        self.app_dir = root / "backend-vlad"
        self.port = free_port()
        self.rate = rate
        install_backend(
            self.app_dir,
            port=self.port,
            database_url="postgresql://nobody@127.0.0.1:1/unused",
            extra_env={"BOOT_DELAY_MS": str(boot_ms)},
        )
        env = {**os.environ, "BUILD_ID": "in-place"}
        subprocess.run(["npm", "run", "build"], cwd=self.app_dir, env=env, check=True,
                       capture_output=True)  # fmt: skip
        self.target = Target(
            "bench",
            host="local",
            app_dir=str(self.app_dir),
            releases_dir=str(root / "releases"),
            pm2_name=APP,
            pm2_bin=str(pm2.bin),
            pm2_home=str(pm2.home),
            health_url=f"http://127.0.0.1:{self.port}/health",
            install_command="npm ci --no-audit --no-fund",
            generate_command="node -e 0",
            build_command="npm run build",
            start_command="dist/server.js",
        )
        self.journal = Journal(root / "runs")

    def build_id(self, directory: str | Path) -> str:
        return (Path(directory) / "dist" / "BUILD_ID").read_text().strip()

    def serving(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/build", timeout=1) as r:
                return str(json.loads(r.read())["build"])
        except (OSError, ValueError):
            return None

    def start(self, script: Path, cwd: Path, instances: int | None) -> None:
        self.pm2.delete(APP)
        args = ["start", str(script), "--name", APP, "--wait-ready", "--listen-timeout", "15000"]
        if instances:
            args += ["-i", str(instances)]
        self.pm2.run(*args, cwd=cwd)
        wait_health(self.target.health_url)
        time.sleep(1.0)  # past pm2's min_uptime: a settled app

    async def vlad(self, label: str, transport: Transport) -> CodeRow:
        """The engine's code-only rollback, as the rollback screen runs it."""
        run = self.journal.start_run("bench", operator="bench")
        config = Config(self.root / "config.toml", Project(), {"bench": self.target})

        async def confirm(request: ConfirmRequest) -> str:
            return request.expected

        engine = Engine(config, self.target, transport, run, confirm=confirm,
                        sink=lambda _event: None, journal=self.journal)  # fmt: skip
        async with HealthProbe(self.target, transport, hz=self.rate) as load:
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            ok = await run_rollback(engine, pick_params(None, "code", record=None))
            wall = time.monotonic() - t0
            await asyncio.sleep(2.0)
        run.close()
        if not ok:
            errors = {s: engine.error(s) for s in engine.statuses if engine.error(s)}
            raise SystemExit(f"{label}: the rollback failed: {errors}")
        code = engine.elapsed("rb.code")
        note = f"pick → report; the switch step {code:.1f} s" if code else "pick → report"
        return CodeRow(label, load.report(), wall, note, code)

    async def by_hand(self, label: str, transport: Transport, previous: str) -> CodeRow:
        """The plan's way: the previous build copied back into app_dir, then pm2 restart."""
        dist = self.app_dir / "dist"
        want = self.build_id(previous)
        async with HealthProbe(self.target, transport, hz=self.rate) as load:
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            copied = await transport.run(
                f"rm -rf {quote(str(dist))} && cp -a {quote(previous + '/dist')} {quote(str(dist))}"
            )
            assert copied.ok, copied.stderr
            restart = await transport.run(
                pm2_command(self.target, f"restart {quote(APP)}"), timeout=120
            )
            assert restart.ok, restart.stderr
            while self.serving() != want and time.monotonic() - t0 < 60:
                await asyncio.sleep(0.05)
            wall = time.monotonic() - t0
            await asyncio.sleep(2.0)
        return CodeRow(label, load.report(), wall, "until the previous build is served")


async def code_section(pm2: Pm2, root: Path, boot_ms: int, rate: float) -> list[CodeRow]:
    bench = CodeBench(pm2, root, boot_ms, rate)
    target = bench.target
    rows: list[CodeRow] = []
    async with LocalTransport() as transport:
        r1 = await build_release(target, transport)
        r2 = await build_release(target, transport)
        print(f"code: releases {r1.id} and {r2.id} built; {boot_ms} ms boot", flush=True)

        async def deploy(release: str) -> None:
            plan = await plan_switch(target, transport, release)
            await switch(target, transport, plan, settle=1.0)

        # (c1) cluster: app_dir → r1 → r2, as two deploys would; then the rollback to r1.
        bench.start(Path("dist/server.js"), bench.app_dir, 2)
        await deploy(r1.path)
        await deploy(r2.path)
        rows.append(await bench.vlad("(c1) vlad-tui code rollback, cluster ×2", transport))
        assert bench.serving() == bench.build_id(r1.path)
        # (c2) the plan's layout (in place), serving r2's build; back to r1's by hand.
        shutil.rmtree(bench.app_dir / "dist")
        shutil.copytree(Path(r2.path) / "dist", bench.app_dir / "dist", symlinks=True)
        bench.start(Path("dist/server.js"), bench.app_dir, 2)
        rows.append(await bench.by_hand("(c2) plan: copy back + pm2 restart, ×2", transport,
                                        r1.path))  # fmt: skip
        # (c3) fork mode: r1 → r2 (a deploy), then the rollback to r1.
        (Path(r2.path) / BAD_MARK).unlink()  # (c1) marked it; here it is deployed again
        bench.start(Path(r1.path) / "dist/server.js", Path(r1.path), None)
        await deploy(r2.path)
        rows.append(await bench.vlad("(c3) vlad-tui code rollback, fork", transport))
    return rows


def print_code_rows(rows: list[CodeRow], rate: float) -> None:
    print(f"\ncode-only rollback under load ({rate:g} GETs/s of /health; failed = no answer < 1 s)")
    print(f"{'':44} {'failed':>11} {'longest gap':>12} {'wall time':>10}")
    for row in rows:
        failed = f"{row.load.failed}/{row.load.sent}"
        print(
            f"{row.label:44} {failed:>11} {row.load.longest_gap:>10.2f} s {row.wall:>8.1f} s"
            f"  {row.note}"
        )
    ours, plan, fork = rows
    step = f", its switch step {ours.step / plan.wall:.2f}×" if ours.step else ""
    print(
        f"vlad-tui (cluster) / plan (copy back + restart): wall {ours.wall / plan.wall:.2f}×"
        f"{step}, "
        f"failed {ours.load.failed} vs {plan.load.failed}, longest gap "
        f"{ours.load.longest_gap / max(plan.load.longest_gap, 1e-9):.2f}×; "
        f"vs fork mode: wall {ours.wall / fork.wall:.2f}×, failed {ours.load.failed} vs "
        f"{fork.load.failed}"
    )


def wait_health(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:g} s")


def run_code_section(boot_ms: int, rate: float) -> None:
    binary = find_pm2(REPO / ".tools" / "node_modules" / ".bin" / "pm2")
    if binary is None or shutil.which("node") is None:
        sys.exit("pm2 and node are needed (scripts/setup.sh: npm install --prefix .tools pm2@6)")
    root = Path(tempfile.mkdtemp(prefix="vlad-bench-rollback-"))
    pm2 = Pm2(binary, root / "pm2")
    try:
        rows = asyncio.run(code_section(pm2, root, boot_ms, rate))
        print_code_rows(rows, rate)
    finally:
        pm2.kill()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500", help="source sizes in MB, comma-separated")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached cluster")
    parser.add_argument("--code-only", action="store_true", help="only the code-only rollback")
    parser.add_argument("--rate", type=float, default=50.0, help="GETs per second (code)")
    parser.add_argument("--boot-ms", type=int, default=1500, help="the app's boot time (code)")
    args = parser.parse_args()
    if not args.code_only:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        cluster = open_cluster(args.fresh)
        try:
            asyncio.run(bench(cluster, sizes))
        finally:
            cluster.stop()
            shutil.rmtree(CACHE / "backups", ignore_errors=True)
    run_code_section(args.boot_ms, args.rate)


if __name__ == "__main__":
    main()
