"""vlad-tui's backup step (dump + full verification) vs a bare ``pg_dump``, alternating.

Builds, or reuses from ``<repo>/.bench/backup/``, a PostgreSQL cluster with a
``peludosclick``-like database of at least ``--size-mb`` (the sample schema, then bulk
``INSERT … SELECT generate_series`` into the critical tables), then for each run times

  (a) ``create_backup`` + ``verify_backup`` through the local transport (preflight, ``pg_dump``
      into ``<name>.partial`` + rename, sha256, then size, sha256 again, ``pg_restore --list``);
  (b) a bare ``pg_dump -F<fmt> -f FILE`` of the same database, the plan's command;

alternating which goes first. Prints the medians and the ratio (goal ≤ 1.15×). The cluster is
stopped at the end; its files stay in the cache for the next run (``--fresh`` rebuilds them).

    .venv/bin/python bench/backup.py [--size-mb 500] [--runs 3] [--format custom]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from vlad_tui.config import Target  # noqa: E402
from vlad_tui.db import parse_database_url  # noqa: E402
from vlad_tui.demo.cluster import PgCluster, find_bin_dir  # noqa: E402
from vlad_tui.demo.seed import CRITICAL_TABLES, seed_sql  # noqa: E402
from vlad_tui.ops.backup import FORMATS  # noqa: E402
from vlad_tui.ops.backup_dump import create_backup  # noqa: E402
from vlad_tui.ops.backup_verify import verify_backup  # noqa: E402
from vlad_tui.transport import LocalTransport  # noqa: E402

CACHE = REPO / ".bench" / "backup"
DATABASE = "peludosclick"
BATCH = 100_000  # medals per batch; users, virgin medals and fronts in proportion

_BATCH_SQL = """\
insert into users (email, username, first_name, last_name, phonenumber, role, created_at,
                   updated_at)
select 'usuario' || g || '@example.es', 'u' || g, 'Nombre ' || (g % 97),
       'Apellido ' || md5(g::text), '+34 6' || (10000000 + g % 89999999), 'VISITOR',
       timestamp '2024-01-01' + g * interval '1 second', timestamp '2024-06-01'
from generate_series({lo}, {lo} + {n} / 2 - 1) g;
insert into medal_fronts (name, background_color, logo_url, created_at)
select 'Frente ' || g, '#' || substr(md5(g::text), 1, 6),
       'https://cdn.peludosclick.example/fronts/' || g || '.png', now()
from generate_series({lo}, {lo} + {n} / 100 - 1) g;
insert into virgin_medals (status, medal_string, register_hash, created_at)
select 'ENABLED', md5(g::text || 'v'), md5(g::text || 'h') || md5(g::text || 'i'),
       timestamp '2024-01-01' + g * interval '1 second'
from generate_series({lo}, {lo} + {n} - 1) g;
insert into medals (status, register_hash, medal_string, pet_name, owner_id, image,
                    description, created_at, updated_at)
select 'ENABLED', md5(g::text || 'h') || md5(g::text || 'i'), md5(g::text || 'v'),
       (array['Toby','Luna','Canela','Coco','Rocky','Nala','Bimba','Lola'])[1 + g % 8],
       1 + g % 120, 'https://cdn.peludosclick.example/pets/' || g || '.jpg',
       'Muy cariñoso, responde a su nombre. ' || md5(g::text || 'd'),
       timestamp '2024-01-01' + g * interval '1 second', timestamp '2024-06-01'
from generate_series({lo}, {lo} + {n} - 1) g;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_cluster(fresh: bool) -> tuple[PgCluster, bool]:
    """The cached cluster, started on a free port; (cluster, newly created)."""
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
            json.dump({"password": password, "size_mb": 0}, fh)
        cluster.start()
        return cluster, True
    cluster = PgCluster(CACHE / "cluster", free_port(), bin_dir, password=state["password"])
    cluster.start()
    return cluster, False


async def ensure_database(cluster: PgCluster, size_mb: int) -> int:
    """Create/grow ``peludosclick`` until it is at least ``size_mb``; its size in bytes."""
    conn = await asyncpg.connect(cluster.url("postgres"))
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", DATABASE)
        if not exists:
            await conn.execute(f'create database "{DATABASE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(cluster.url(DATABASE))
    try:
        if await conn.fetchval("select to_regclass('medals')") is None:
            await conn.execute(seed_sql())
        size = await conn.fetchval("select pg_database_size(current_database())")
        target = size_mb * 1024 * 1024
        if size < target:
            print(f"growing {DATABASE}: {size / 2**20:.0f} MiB → {size_mb} MiB …", flush=True)
        started = time.perf_counter()
        while size < target:
            lo = int(await conn.fetchval("select coalesce(max(id), 0) from medals")) + 1_000_000
            await conn.execute(_BATCH_SQL.format(lo=lo, n=BATCH))
            size = await conn.fetchval("select pg_database_size(current_database())")
            print(f"  {size / 2**20:.0f} MiB", flush=True)
        if time.perf_counter() - started > 1:
            await conn.execute("vacuum analyze")
            await conn.execute("checkpoint")
            size = await conn.fetchval("select pg_database_size(current_database())")
        return int(size)
    finally:
        await conn.close()


async def vlad_step(target: Target, url_text: str, fmt: str) -> tuple[float, float, int]:
    """(dump seconds, verify seconds, backup bytes) of vlad-tui's backup step."""
    url = parse_database_url(url_text)
    async with LocalTransport() as transport:
        t0 = time.perf_counter()
        backup = await create_backup(target, transport, url, fmt=fmt, jobs=2)
        t1 = time.perf_counter()
        checked = await verify_backup(target, transport, backup, CRITICAL_TABLES)
        t2 = time.perf_counter()
    assert checked.verified
    remove(Path(backup.path))
    return t1 - t0, t2 - t1, backup.size


async def bare_dump(cluster: PgCluster, fmt: str) -> float:
    """Seconds for the plan's bare ``pg_dump`` of the same database."""
    out = CACHE / "backups" / f"bare{FORMATS[fmt]}"
    remove(out)
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
        "PGUSER": cluster.superuser,
        "PGPASSWORD": cluster.password,  # environment of a local child, never argv
        "PGDATABASE": DATABASE,
    }
    argv = ["pg_dump", f"-F{fmt[0]}", "-f", str(out)]
    if fmt == "directory":
        argv[2:2] = ["-j", "2"]
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, env=env)
    if await proc.wait() != 0:
        raise SystemExit("bare pg_dump failed")
    elapsed = time.perf_counter() - started
    remove(out)
    return elapsed


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


async def bench(cluster: PgCluster, size_mb: int, runs: int, fmt: str) -> None:
    db_size = await ensure_database(cluster, size_mb)
    backups = CACHE / "backups"
    shutil.rmtree(backups, ignore_errors=True)
    backups.mkdir(mode=0o700)
    target = Target("bench", host="local", backup_dir=str(backups))
    url = cluster.url(DATABASE)
    print(f"database {DATABASE}: {db_size / 2**20:.0f} MiB; format {fmt}; {runs} runs")
    await bare_dump(cluster, fmt)  # warm-up: page cache and catalogs, not counted
    ours: list[float] = []
    dumps: list[float] = []
    verifies: list[float] = []
    bare: list[float] = []
    size = 0
    for i in range(runs):
        order = ("vlad", "bare") if i % 2 == 0 else ("bare", "vlad")
        for which in order:
            if which == "vlad":
                dump_s, verify_s, size = await vlad_step(target, url, fmt)
                ours.append(dump_s + verify_s)
                dumps.append(dump_s)
                verifies.append(verify_s)
            else:
                bare.append(await bare_dump(cluster, fmt))
        print(
            f"run {i + 1}: vlad-tui {ours[-1]:.2f} s (dump {dumps[-1]:.2f} + verify "
            f"{verifies[-1]:.2f}), bare pg_dump {bare[-1]:.2f} s",
            flush=True,
        )
    ours_med, bare_med = statistics.median(ours), statistics.median(bare)
    print(f"backup file: {size / 2**20:.1f} MiB")
    print(
        f"median vlad-tui backup step: {ours_med:.2f} s (dump {statistics.median(dumps):.2f} "
        f"+ verify {statistics.median(verifies):.2f})"
    )
    print(f"median bare pg_dump -F{fmt[0]}:     {bare_med:.2f} s")
    ratio = ours_med / bare_med
    print(f"ratio: {ratio:.3f}×  (goal ≤ 1.15×: {'met' if ratio <= 1.15 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="minimum database size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--format", choices=sorted(FORMATS), default="custom")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached cluster")
    args = parser.parse_args()
    cluster, _ = open_cluster(args.fresh)
    try:
        asyncio.run(bench(cluster, args.size_mb, args.runs, args.format))
    finally:
        cluster.stop()
        shutil.rmtree(CACHE / "backups", ignore_errors=True)


if __name__ == "__main__":
    main()
