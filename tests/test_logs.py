"""Error lines in pm2's logs: one reader for Phases 3 and 4; pm2's own headers are not errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2
from vlad_tui.config import Target
from vlad_tui.ops.logs import app_lines, find_errors, is_pm2_header, pm2_logs, read_error_log
from vlad_tui.transport import open_transport

# `pm2 logs NAME --lines 200 --nostream --raw --err` of an app that never wrote to stderr
# (pm2 6.0.14, cluster mode: one file per instance; pm2 colours its headers even without a tty).
EMPTY_CLUSTER = (
    "\x1b[1m\x1b[90m[TAILING] Tailing last 200 lines for [backend-vlad] process (change the "
    "value with --lines option)\x1b[39m\x1b[22m\n"
    "\x1b[90m/home/deploy/.pm2/logs/backend-vlad-error-0.log last 200 lines:\x1b[39m\n"
    "\x1b[90m/home/deploy/.pm2/logs/backend-vlad-error-1.log last 200 lines:\x1b[39m\n"
)
REAL_ERRORS = (
    EMPTY_CLUSTER
    + '[Nest] 4242  - ERROR [ExceptionsHandler] relation "medals" does not exist\n'
    + "    at Connection.parseE (/srv/backend-vlad/node_modules/pg/lib/connection.js:1:1)\n"
    + "UnhandledPromiseRejection: connect ECONNREFUSED 127.0.0.1:5432\n"
    + "\n"
)


def test_empty_input_has_no_errors() -> None:
    found = find_errors("")
    assert (found.scanned, found.errors) == (0, ())


def test_pm2_headers_are_not_errors() -> None:
    """The header names ``…-error-0.log``: it used to count as an error line."""
    found = find_errors(EMPTY_CLUSTER)
    assert (found.scanned, found.errors) == (0, ())
    assert all(is_pm2_header(line) for line in EMPTY_CLUSTER.splitlines())
    assert app_lines(EMPTY_CLUSTER) == []


def test_real_error_lines_are_found_and_context_lines_are_not() -> None:
    found = find_errors(REAL_ERRORS)
    assert found.scanned == 3
    assert found.errors == (
        '[Nest] 4242  - ERROR [ExceptionsHandler] relation "medals" does not exist',
        "UnhandledPromiseRejection: connect ECONNREFUSED 127.0.0.1:5432",
    )
    assert not any(is_pm2_header(line) for line in found.errors)


def test_an_app_line_that_mentions_a_log_file_is_kept() -> None:
    assert not is_pm2_header("Error: cannot open /var/log/app.log")
    assert find_errors("Error: cannot open /var/log/app.log\n").errors == (
        "Error: cannot open /var/log/app.log",
    )


def _start(pm2: Pm2, tmp_path: Path, name: str, body: str) -> Target:
    script = tmp_path / f"{name}.js"
    script.write_text(body + "\nsetInterval(() => {}, 1000);\n")
    pm2.run("start", str(script), "--name", name, "-i", "2")
    return Target(
        "production",
        host="local",
        app_dir=str(tmp_path),
        pm2_name=name,
        pm2_bin=str(pm2.bin),
        pm2_home=str(pm2.home),
    )


@pytest.mark.integration
async def test_real_pm2_error_log_empty_then_with_errors(pm2: Pm2, tmp_path: Path) -> None:
    quiet = _start(pm2, tmp_path, "honesty-quiet", 'console.log("listening");')
    noisy = _start(pm2, tmp_path, "honesty-noisy", 'console.error("Error: database unreachable");')
    transport = open_transport(quiet)
    try:
        deadline = time.monotonic() + 15
        noisy_found = await read_error_log(noisy, transport, 200)
        while len(noisy_found.errors) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            noisy_found = await read_error_log(noisy, transport, 200)
        headers_only = (await pm2_logs(quiet, transport, lines=200, errors_only=True)).stdout
        quiet_found = await read_error_log(quiet, transport, 200)
    finally:
        await transport.close()
        pm2.delete("honesty-quiet")
        pm2.delete("honesty-noisy")
    assert "honesty-quiet-error" in headers_only  # pm2 printed its headers...
    assert (quiet_found.scanned, quiet_found.errors) == (0, ())  # ...and they are not errors
    # pm2 --raw prints the error lines on its stderr: they are found there (one per instance).
    assert noisy_found.errors == ("Error: database unreachable",) * 2


@pytest.mark.integration
async def test_phase_3_and_phase_4_read_the_error_log_the_same_way(
    pm2: Pm2, tmp_path: Path
) -> None:
    from tests.rig.operator import Operator
    from vlad_tui.config import Config, Project
    from vlad_tui.journal import Journal
    from vlad_tui.runbook.engine import Engine

    quiet = _start(pm2, tmp_path, "honesty-quiet3", 'console.log("listening");')
    noisy = _start(pm2, tmp_path, "honesty-noisy3", 'console.error("TypeError: x is undefined");')
    journal = Journal(tmp_path / "runs")

    def engine(target: Target) -> Engine:
        config = Config(tmp_path / "c.toml", Project(), {"production": target})
        run = journal.start_run("production", operator="ana@bastion")
        operator = Operator()
        built = Engine(
            config,
            target,
            open_transport(target),
            run,
            confirm=operator.confirm,
            sink=operator.sink,
            journal=journal,
        )
        built.override_gate("test: Phase 3's log step without a deploy")
        return built

    try:
        transport = open_transport(noisy)
        deadline = time.monotonic() + 15
        while len((await read_error_log(noisy, transport, 200)).errors) < 2:
            assert time.monotonic() < deadline, "the noisy app's error lines never appeared"
            await asyncio.sleep(0.2)
        await transport.close()
        calm = engine(quiet)
        assert await calm.run_step("p3.logs") == "ok", calm.log("p3.logs")
        assert await calm.run_step("p4.logs") == "ok", calm.log("p4.logs")
        [(_, p3)] = [a for a in calm.artifacts("p3.logs") if a[0] == "log_errors"]
        [(_, p4)] = calm.artifacts("p4.logs")
        assert p3 == p4 == {"scanned": 0, "errors": 0, "lines": 200}
        assert await calm.run_step("cmd.pm2_logs") == "ok"
        assert calm.artifacts("cmd.pm2_logs") == []  # the palette only shows the logs

        loud = engine(noisy)
        assert await loud.run_step("p3.logs") == "failed"
        assert await loud.run_step("p4.logs") == "failed"
        assert loud.error("p3.logs") == loud.error("p4.logs")
        assert "2 error line(s)" in (loud.error("p4.logs") or "")
    finally:
        pm2.delete("honesty-quiet3")
        pm2.delete("honesty-noisy3")
