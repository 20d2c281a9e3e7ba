"""Error lines in pm2's logs: one reader for Phases 3 and 4; pm2's own headers are not errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

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
async def test_phase_4_reads_error_lines_and_the_palette_only_shows_them(
    pm2: Pm2, tmp_path: Path
) -> None:
    """Phase 4's "No hay errores en los logs" on quiet and noisy files, and the palette's logs
    only show them. (Phase 3's log step reads the lines written since the deploy, with the same
    reader, ``find_errors``: tests/test_phase3.py.)"""
    from vlad_tui.config import Config, Project
    from vlad_tui.errors import VladError
    from vlad_tui.events import OutputLine
    from vlad_tui.runbook import model
    from vlad_tui.runbook.operations import OPERATIONS, StepContext
    from vlad_tui.runbook.operations.context import StepPort

    quiet = _start(pm2, tmp_path, "honesty-quiet3", 'console.log("listening");')
    noisy = _start(pm2, tmp_path, "honesty-noisy3", 'console.error("TypeError: x is undefined");')

    async def step(target: Target, step_id: str) -> tuple[list[dict], str | None]:
        found: list[tuple[str, dict]] = []
        lines: list[OutputLine] = []

        async def no_database() -> Any:
            raise AssertionError("the log steps never need the database")

        port = StepPort(
            output=lines.append,
            artifact=lambda k, d: found.append((k, d)),
            record=lambda k, d: None,
            emit=print,
            database_url=no_database,
        )
        s = model.step(step_id)
        transport = open_transport(target)
        config = Config(tmp_path / "c.toml", Project())
        # No run view: the log steps read nothing of the run.
        ctx = StepContext(config, target, transport, s, run=None, port=port)  # type: ignore[arg-type]
        try:
            await OPERATIONS[s.operation](ctx)
            error = None
        except VladError as exc:
            error = str(exc)
        finally:
            await transport.close()
        return [d for k, d in found if k == "log_errors"], error

    try:
        transport = open_transport(noisy)
        deadline = time.monotonic() + 15
        while len((await read_error_log(noisy, transport, 200)).errors) < 2:
            assert time.monotonic() < deadline, "the noisy app's error lines never appeared"
            await asyncio.sleep(0.2)
        await transport.close()

        p4, p4_error = await step(quiet, "p4.logs")
        assert p4 == [{"scanned": 0, "errors": 0, "lines": 200}]
        assert p4_error is None
        palette, _ = await step(quiet, "cmd.pm2_logs")
        assert palette == []  # the palette only shows the logs

        p4, p4_error = await step(noisy, "p4.logs")
        assert p4 == [{"scanned": 2, "errors": 2, "lines": 200}]
        assert "2 error line(s)" in (p4_error or "")
    finally:
        pm2.delete("honesty-quiet3")
        pm2.delete("honesty-noisy3")
