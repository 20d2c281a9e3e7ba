"""CPU of the Phase 4 sampler (every 2 s for 60 s) against the demo, vs ``pm2 monit``.

Builds (or reuses) the demo sandbox reached through its loopback OpenSSH sshd
(``vlad-tui demo --ssh``), then measures three windows of ``--seconds`` each:

  (0) idle: nothing watches; the pm2 daemon, the app's workers and PostgreSQL on their own;
  (a) vlad-tui's :class:`~vlad_tui.ops.sampler.Sampler` every ``--interval`` s, in this process
      (the SSH client, asyncpg and the recording included): this process's CPU, and on the
      "server" side the sshd session tree (the remote commands are its children), the
      PostgreSQL backend of the sampler's connection, and what the pm2 daemon and the app's
      workers used beyond the idle window (``pm2 jlist`` and the probes);
  (b) a bare ``true`` every ``--interval`` s over SSH: the floor any remote command costs on
      this server (sshd's channel, the login shell and whatever its rc files run);
  (c) ``pm2 monit`` in a pseudo-terminal: its process tree, and the daemon and workers beyond
      idle.

CPU is read from ``/proc/<pid>/stat`` (utime+stime, plus cutime+cstime of reaped children), as a
share of one core. Goals: vlad-tui ≤ 3 %, server side ≤ 2 %. The sandbox is torn down at the end
unless ``--keep``.

    .venv/bin/python bench/monitor.py [--seconds 60] [--interval 2] [--dir /tmp/monitor-bench]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import pty
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlad_tui.config import load_config  # noqa: E402
from vlad_tui.demo.sandbox import Sandbox  # noqa: E402
from vlad_tui.ops.monitor import evaluate  # noqa: E402
from vlad_tui.ops.recording import Recording  # noqa: E402
from vlad_tui.ops.sampler import Sampler  # noqa: E402
from vlad_tui.transport import open_transport  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, *, children: bool = True) -> float:
    """CPU seconds of ``pid`` (plus its reaped children); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, ()))
    return out


def tree_cpu(pid: int) -> float:
    return sum(proc_cpu(p) for p in descendants(pid))


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(cpu_s: float, wall_s: float) -> str:
    return f"{cpu_s / wall_s * 100:5.2f} %"


class Pm2Side:
    """The pm2 daemon and the app's worker processes."""

    def __init__(self, pm2_home: str, app_pids: list[int]) -> None:
        self.daemon = int(Path(pm2_home, "pm2.pid").read_text().strip())
        self.pids = [self.daemon, *app_pids]

    def cpu(self) -> float:
        return sum(proc_cpu(p, children=False) for p in self.pids)


async def vlad_window(config, target, seconds: float, interval: float, pm2: Pm2Side, sshd_pid: int):
    transport = open_transport(target)
    sampler = Sampler(config, target, transport)
    recording = Recording.open(config, target)
    try:
        first = await sampler.sample()  # connect SSH and PostgreSQL outside the window
        if first.failures:
            print("first sample gaps:", first.failures)
        assert sampler._db is not None
        backend = sampler._db.connection.get_server_pid()
        c0, s0, b0, p0 = self_cpu(), tree_cpu(sshd_pid), proc_cpu(backend), pm2.cpu()
        t0 = time.monotonic()
        n = gaps = 0
        while time.monotonic() - t0 < seconds:
            started = time.monotonic()
            sample = await sampler.sample()
            findings = evaluate(sample, first, config.monitor)
            await asyncio.to_thread(recording.append, sample, findings, run_id="bench")
            n += 1
            gaps += bool(sample.failures)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        wall = time.monotonic() - t0
        return {
            "wall": wall,
            "samples": n,
            "gaps": gaps,
            "client": self_cpu() - c0,
            "sshd": tree_cpu(sshd_pid) - s0,
            "postgres": proc_cpu(backend) - b0,
            "pm2": pm2.cpu() - p0,
            "jlist": sampler.jlist_runs - 1,
            "sessions": sampler.sessions_opened,
        }
    finally:
        await sampler.close()
        recording.close()
        await transport.close()


async def floor_window(target, seconds: float, interval: float, sshd_pid: int) -> dict[str, float]:
    """A bare ``true`` every ``interval`` over the same SSH connection: what any command costs
    on this server (sshd's channel, the login shell and its rc files) before it does anything."""
    transport = open_transport(target)
    try:
        await transport.run("true")
        s0, t0 = tree_cpu(sshd_pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            started = time.monotonic()
            await transport.run("true")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        return {"wall": time.monotonic() - t0, "sshd": tree_cpu(sshd_pid) - s0}
    finally:
        await transport.close()


def monit_window(pm2_bin: str, pm2_home: str, seconds: float, pm2: Pm2Side) -> dict[str, float]:
    master, slave = pty.openpty()
    env = {
        **os.environ,
        "PM2_HOME": pm2_home,
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "LINES": "40",
    }
    proc = subprocess.Popen(
        [pm2_bin, "monit"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    time.sleep(3)  # its start-up is not counted (nor is ours)
    c0, p0, t0 = tree_cpu(proc.pid), pm2.cpu(), time.monotonic()
    time.sleep(seconds)
    c1, p1, wall = tree_cpu(proc.pid), pm2.cpu(), time.monotonic() - t0
    os.killpg(proc.pid, 15)
    proc.wait(10)
    stop.set()
    os.close(master)
    return {"wall": wall, "client": c1 - c0, "pm2": p1 - p0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "monitor-bench")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    args = parser.parse_args()
    sandbox = Sandbox(args.dir)
    try:
        config = load_config(sandbox.setup("small", ssh=True, progress=lambda *_: None))
        monitor = dataclasses.replace(config.monitor, interval=args.interval)
        config = dataclasses.replace(config, monitor=monitor)
        target = config.target("production")
        assert target.pm2_home is not None
        sshd_pid = int((args.dir / "sshd" / "sshd.pid").read_text().strip())
        jlist = subprocess.run(
            [target.pm2_bin, "jlist"],
            env={**os.environ, "PM2_HOME": target.pm2_home},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        app_pids = [p["pid"] for p in json.loads(jlist) if p["name"] == target.pm2_name]
        pm2 = Pm2Side(target.pm2_home, app_pids)
        print(
            f"demo: {target.pm2_name} ({len(app_pids)} workers) through sshd :{target.port}; "
            f"{args.seconds:g} s windows, sampling every {args.interval:g} s",
            flush=True,
        )
        p0, t0 = pm2.cpu(), time.monotonic()
        time.sleep(args.seconds)
        idle_rate = (pm2.cpu() - p0) / (time.monotonic() - t0)
        print(f"idle: pm2 daemon + workers {pct(idle_rate, 1)}", flush=True)
        v = asyncio.run(vlad_window(config, target, args.seconds, args.interval, pm2, sshd_pid))
        f = asyncio.run(floor_window(target, args.seconds, args.interval, sshd_pid))
        m = monit_window(target.pm2_bin, target.pm2_home, args.seconds, pm2)
        v_pm2 = max(0.0, v["pm2"] - idle_rate * v["wall"])
        m_pm2 = max(0.0, m["pm2"] - idle_rate * m["wall"])
        server = v["sshd"] + v["postgres"] + v_pm2
        print(
            f"vlad-tui sampler: {v['samples']} samples ({v['gaps']} with a gap) "
            f"in {v['wall']:.1f} s; pm2 jlist ran {v['jlist']} time(s); "
            f"{v['sessions']} shell session(s) opened"
        )
        print(f"  client (this process):             {pct(v['client'], v['wall'])}  goal ≤ 3 %")
        print(f"  server: sshd session + commands    {pct(v['sshd'], v['wall'])}")
        print(f"          PostgreSQL backend         {pct(v['postgres'], v['wall'])}")
        print(f"          pm2 daemon + workers > idle {pct(v_pm2, v['wall'])}")
        print(f"          total                      {pct(server, v['wall'])}  goal ≤ 2 %")
        print(
            f"  for comparison, a bare `true` through transport.run every {args.interval:g} s: "
            f"{pct(f['sshd'], f['wall'])} (a login shell each time, with its rc files)"
        )
        print(f"pm2 monit over {m['wall']:.1f} s:")
        print(f"  client (pm2 monit)                 {pct(m['client'], m['wall'])}")
        print(f"  server: pm2 daemon + workers > idle {pct(m_pm2, m['wall'])}")
    finally:
        if not args.keep:
            sandbox.teardown(progress=lambda *_: None)
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
