"""Downtime of the deploy's switch: vlad-tui's step vs the plan's ``pm2 restart``, side by side.

Starts a private pm2 daemon (temporary ``PM2_HOME``) and the sample backend with a slow boot
(``--boot-ms``, like a NestJS app), then, under a steady bounded load of ``--rate`` GETs a
second against loopback (a :class:`~vlad_tui.ops.probe.HealthProbe` from ``--lead`` seconds
before the step until ``--tail`` seconds after it), runs in one go:

  (a) vlad-tui's deploy switch, cluster mode (``--instances`` workers)   goal: 0 failed
  (b) the plan's ``pm2 restart NAME``, same cluster
  (c) the plan's ``pm2 restart NAME``, fork mode
  (d) vlad-tui's deploy switch, fork mode (delete + start: a downtime it reports)

The switch is the deploy step's (:func:`~vlad_tui.ops.release_switch.plan_switch` and
:func:`~vlad_tui.ops.release_switch.switch`, as :mod:`vlad_tui.runbook.operations.deploy` calls
them): new workers started beside the old ones, judged by the deploy's own 10 Hz health probe
over the same side-by-side window and thresholds, then the old workers removed one at a time.
It prints failed requests, the longest gap without an answer and the step's wall time (for the
plan's commands: until the app answers again). With ``--broken`` it adds a release that cannot
boot: (e) vlad-tui's switch vs (f) ``pm2 reload NAME`` and (g) the plan's ``pm2 restart NAME``.
Everything it started is deleted at the end.

    .venv/bin/python bench/deploy_downtime.py [--rate 50] [--boot-ms 1500] [--broken]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlad_tui.config import Target  # noqa: E402
from vlad_tui.demo import install_backend  # noqa: E402
from vlad_tui.demo.pm2 import Pm2, find_pm2  # noqa: E402
from vlad_tui.ops.health import check_health  # noqa: E402
from vlad_tui.ops.probe import PROBE_TIMEOUT, HealthProbe, ProbeReport  # noqa: E402
from vlad_tui.ops.release_switch import SwitchStep, plan_switch, switch  # noqa: E402
from vlad_tui.ops.releases import ReleaseError  # noqa: E402
from vlad_tui.runbook.operations.deploy import (  # noqa: E402
    SIDE_BY_SIDE_WINDOW,
    UNHEALTHY_MIN_FAILED,
    UNHEALTHY_SHARE,
)
from vlad_tui.transport import LocalTransport  # noqa: E402

NAME = "backend-vlad-bench"
LISTEN_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Row:
    label: str
    load: ProbeReport
    wall_time: float
    note: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
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


class Bench:
    def __init__(
        self, pm2: Pm2, root: Path, boot_ms: int, rate: float, lead: float, tail: float
    ) -> None:
        self.pm2 = pm2
        self.app_dir = root / "backend-vlad"
        self.port = free_port()
        self.boot_ms = boot_ms
        self.rate = rate
        self.lead = lead
        self.tail = tail
        self.recover = 10.0
        self.set_env()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def target(self) -> Target:
        return Target(
            "bench",
            host="local",
            app_dir=str(self.app_dir),
            pm2_name=NAME,
            pm2_bin=str(self.pm2.bin),
            pm2_home=str(self.pm2.home),
            health_url=self.url,
            start_command="server.js",
        )

    def set_env(self, **extra: str) -> None:
        install_backend(
            self.app_dir,
            port=self.port,
            database_url="postgresql://nobody@127.0.0.1:1/unused",
            extra_env={"BOOT_DELAY_MS": str(self.boot_ms), **extra},
        )

    def start(self, instances: int | None) -> None:
        self.pm2.delete(NAME)
        self.set_env()
        args = ["start", "server.js", "--name", NAME, "--wait-ready"]
        args += ["--listen-timeout", str(LISTEN_TIMEOUT_MS)]
        if instances:
            args += ["-i", str(instances)]
        self.pm2.run(*args, cwd=self.app_dir)
        wait_http(self.url)
        time.sleep(1.0)  # past pm2's min_uptime: a settled app

    async def vlad(self, label: str) -> Row:
        """The deploy step's switch to the app's directory, with the step's own health probe."""
        target = self.target()
        async with LocalTransport() as transport:
            plan = await plan_switch(target, transport, str(self.app_dir))
            step_probe = HealthProbe(target, transport, hz=10.0)

            async def after(step: SwitchStep) -> None:
                # What the deploy step does after starting the new workers beside the old ones.
                if step.kind != "start" or plan.strategy != "side-by-side":
                    return
                since = step_probe.report().wall_time
                await asyncio.sleep(SIDE_BY_SIDE_WINDOW + PROBE_TIMEOUT + 0.2)
                until = since + SIDE_BY_SIDE_WINDOW
                window = [p for p in step_probe.report().probes if since <= p.at <= until]
                failed = sum(not p.ok for p in window)
                if failed >= max(UNHEALTHY_MIN_FAILED, UNHEALTHY_SHARE * len(window)):
                    raise ReleaseError(f"new workers unhealthy: {failed}/{len(window)} probes")

            async with HealthProbe(target, transport, hz=self.rate) as load:
                await asyncio.sleep(self.lead)
                t0 = time.monotonic()
                step_probe.start()
                try:
                    check = await switch(target, transport, plan, after_step=after)
                    outcome = check.describe()
                except ReleaseError as exc:
                    outcome = f"refused: {exc}"
                wall = time.monotonic() - t0
                report = await step_probe.stop()
                await asyncio.sleep(self.tail)
        note = f"{plan.strategy}; step probe: {report.failed}/{report.sent} failed; {outcome}"
        return Row(label, load.report(), wall, note)

    async def plan(self, label: str, action: str) -> Row:
        """The plan's ``pm2 ACTION NAME``; its wall time runs until the app answers again."""
        target = self.target()
        async with (
            LocalTransport() as transport,
            HealthProbe(target, transport, hz=self.rate) as load,
        ):
            await asyncio.sleep(self.lead)
            t0 = time.monotonic()
            ended = await self.pm2_command(action, NAME)
            returned = time.monotonic() - t0
            deadline = time.monotonic() + self.recover
            back = False
            while not back and time.monotonic() < deadline:
                back = (await check_health(target, transport, timeout=1.0)).ok
                if not back:
                    await asyncio.sleep(0.05)
            wall = time.monotonic() - t0
            await asyncio.sleep(self.tail)
        note = f"pm2 {action} {ended} after {returned:.2f} s"
        if not back:
            note += f"; still down {self.recover:g} s later (nothing brings it back)"
        return Row(label, load.report(), wall, note)

    async def pm2_command(self, *args: str, timeout: float = 180.0) -> str:
        """Run pm2 without blocking the load's loop; how it ended."""
        proc = await asyncio.create_subprocess_exec(
            str(self.pm2.bin),
            *args,
            env=self.pm2.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            status = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"timed out ({timeout:g} s)"
        return "returned" if status == 0 else f"failed (exit {status})"


def print_rows(rows: list[Row], rate: float) -> None:
    print()
    print(f"{'':44} {'failed':>13} {'longest gap':>12} {'wall time':>10}")
    for row in rows:
        failed = f"{row.load.failed}/{row.load.sent}"
        print(
            f"{row.label:44} {failed:>13} {row.load.longest_gap:>10.2f} s "
            f"{row.wall_time:>8.2f} s  {row.note}"
        )
        if row.load.failed:
            print(f"{'':48}failed: {'; '.join(row.load.errors())}")
    print(f"(load: {rate:g} GETs/s of /health on loopback, each failed after 1 s without answer)")


async def run(bench: Bench, instances: int, broken: bool) -> list[Row]:
    rows: list[Row] = []
    bench.start(instances)
    rows.append(await bench.vlad(f"(a) vlad-tui deploy switch, cluster ×{instances}"))
    rows.append(await bench.plan(f"(b) plan: pm2 restart, cluster ×{instances}", "restart"))
    bench.start(None)
    rows.append(await bench.plan("(c) plan: pm2 restart, fork", "restart"))
    rows.append(await bench.vlad("(d) vlad-tui deploy switch, fork"))
    if broken:
        bench.start(instances)
        bench.set_env(CRASH_AT_BOOT="1")
        rows.append(await bench.vlad(f"(e) broken release: vlad-tui, cluster ×{instances}"))
        bench.start(instances)
        bench.set_env(CRASH_AT_BOOT="1")
        rows.append(
            await bench.plan(f"(f) broken release: pm2 reload, cluster ×{instances}", "reload")
        )
        bench.start(instances)
        bench.set_env(CRASH_AT_BOOT="1")
        rows.append(
            await bench.plan(f"(g) broken release: pm2 restart, cluster ×{instances}", "restart")
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="GETs per second")
    parser.add_argument("--boot-ms", type=int, default=1500, help="the app's boot time")
    parser.add_argument("--instances", type=int, default=2, help="cluster workers")
    parser.add_argument("--lead", type=float, default=1.0, help="load before the step (s)")
    parser.add_argument("--tail", type=float, default=2.0, help="load after the step (s)")
    parser.add_argument("--broken", action="store_true", help="add a release that cannot boot")
    args = parser.parse_args()
    binary = find_pm2(REPO / ".tools" / "node_modules" / ".bin" / "pm2")
    if binary is None or shutil.which("node") is None:
        sys.exit("pm2 and node are needed (scripts/setup.sh: npm install --prefix .tools pm2@6)")
    root = Path(tempfile.mkdtemp(prefix="vlad-bench-deploy-"))
    pm2 = Pm2(binary, root / "pm2")
    print(f"sample backend, {args.boot_ms} ms boot; pm2 {pm2.run('--version').strip()}")
    try:
        bench = Bench(pm2, root, args.boot_ms, args.rate, args.lead, args.tail)
        rows = asyncio.run(run(bench, args.instances, args.broken))
        print_rows(rows, args.rate)
    finally:
        pm2.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
