"""Hostile configuration values reach remote commands as ONE literal argument, never as shell.

The commands are the product's own (the builders of ``ops/`` and ``transport/shell.py``, and
the scripts ``ops/`` sends through a transport, captured by a recording transport). They run
under a real ``sh`` with stub programs first on ``PATH`` (``pm2``, ``pg_dump``, ``psql``, …)
that record their argv, environment and working directory. Each value carries quotes, spaces,
``;``, ``$()``, backticks, newlines and non-ASCII text plus a payload that would run
``vlad_pwned`` if the shell ever parsed it; paths are real directories under a sandbox with
those names. No service is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.ops import (
    backup_dump,
    backup_list,
    facts,
    lock,
    logs,
    pm2,
    release_prune,
    releases,
    staging,
    staging_app,
)
from vlad_tui.ops import release_switch as rs
from vlad_tui.transport import shell
from vlad_tui.transport.base import CommandResult

PWNED = "vlad_pwned"
#: What a broken quote would execute: command substitution, backticks, a new command.
PAYLOAD = f"$({PWNED})`{PWNED}`;{PWNED}&&{PWNED}|{PWNED}"
HOSTILE = " '\"\\;$()`\n\t|&<>*?~#!{}[]=%ñé€漢 -"
#: Programs the commands start; the stubs record each call (``cd``, ``test``… are the shell's).
STUBS = ("pm2", "pg_dump", "pg_restore", "psql", "createdb", "dropdb", "node", "npm", "npx", PWNED)
STUB = """#!/bin/sh
{{ printf 'argv\\0'; printf '%s\\0' "$0" "$@"; printf 'pwd\\0%s\\0' "$PWD";
  printf 'env\\0'; printf '%s\\0' "PGHOST=$PGHOST" "PGUSER=$PGUSER" "PGDATABASE=$PGDATABASE" \
"PM2_HOME=$PM2_HOME" "PGPASSWORD=$PGPASSWORD"; printf 'end\\0'; }} >> {record}
exit 0
"""

#: Keys of ``[targets.NAME]`` whose values reach a command on the server; each is covered by
#: :func:`test_every_value_arrives_as_one_literal_argument` (``database`` through the names
#: and addresses of the URL it resolves to).
REMOTE_KEYS = frozenset(
    {
        "app_dir", "pm2_name", "pm2_bin", "pm2_home", "backup_dir", "jobs_dir", "database",
        "staging_database", "staging_pm2_name", "staging_port", "start_command",
        "releases_dir", "backup_jobs", "backup_format",
        # run verbatim (``sh -c`` of the configured text, quoted as one argument): the
        # operator's own commands, tested to arrive unchanged.
        "migrate_command", "install_command", "generate_command", "build_command",
        "validate_command", "prisma_status_command",
    }
)  # fmt: skip
#: Keys used only on this machine (SSH client, HTTP through the tunnel, limits).
LOCAL_KEYS = frozenset(
    {
        "name", "host", "user", "port", "known_hosts", "identity_file", "ssh_config",
        "health_url", "connect_timeout", "smoke_checks", "keep_releases",
    }
)  # fmt: skip


def test_every_target_key_is_classified() -> None:
    """A new key must be added to one list: if it reaches a remote command, to the property
    test below too."""
    keys = {f.name for f in dataclasses.fields(Target)}
    assert keys - REMOTE_KEYS - LOCAL_KEYS == set(), "classify the new key(s)"
    assert set() == REMOTE_KEYS & LOCAL_KEYS
    assert (REMOTE_KEYS | LOCAL_KEYS) - keys == set(), "a listed key no longer exists"


@dataclass
class Call:
    argv: list[str]
    pwd: str
    env: dict[str, str]


@dataclass
class Sandbox:
    root: Path
    stubs: Path
    record: Path
    calls: list[Call] = field(default_factory=list)

    def path(self, name: str) -> str:
        """A real directory under the sandbox named ``name`` (hostile characters and all)."""
        path = self.root / "fs" / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def run(self, command: str, stdin: str = "") -> subprocess.CompletedProcess[bytes]:
        self.record.write_bytes(b"")
        env = {
            "PATH": f"{self.stubs}:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "LC_ALL": "C.UTF-8",
        }
        done = subprocess.run(
            ["sh", "-c", command], input=stdin.encode(), capture_output=True, env=env,
            cwd=self.root, timeout=30,
        )  # fmt: skip
        self.calls = list(_parse(self.record.read_bytes()))
        return done

    def args(self) -> list[str]:
        return [a for c in self.calls for a in c.argv]

    def programs(self) -> list[str]:
        return [os.path.basename(c.argv[0]) for c in self.calls]


def _parse(data: bytes) -> Iterator[Call]:
    fields = data.decode("utf-8", errors="surrogateescape").split("\0")
    i = 0
    while i < len(fields) and fields[i] == "argv":
        end = fields.index("end", i)
        part = fields[i + 1 : end]
        p = part.index("pwd")
        e = part.index("env", p)
        env = dict(kv.split("=", 1) for kv in part[e + 1 :])
        yield Call(part[:p], part[p + 1], env)
        i = end + 1


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    root = tmp_path_factory.mktemp("hardening")
    stubs = root / "stubs"
    stubs.mkdir()
    (root / "home").mkdir()
    record = root / "record"
    for name in STUBS:
        (stubs / name).write_text(STUB.format(record=shlex.quote(str(record))))
        (stubs / name).chmod(0o755)
    return Sandbox(root, stubs, record)


def stub_at(sandbox: Sandbox, path: str) -> str:
    """A recording program at ``path`` (for ``pm2_bin``, an absolute path of any shape)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text((sandbox.stubs / "pm2").read_text())
    Path(path).chmod(0o755)
    return path


hostile = st.text(alphabet=st.sampled_from(HOSTILE) | st.characters(codec="utf-8"), max_size=12)


def _name(text: str) -> str:
    """A file-name-safe hostile value (no ``/`` or NUL) that ends in the payload."""
    return (text.replace("/", "_").replace("\0", "_") + PAYLOAD).strip("/")


@dataclass(frozen=True)
class Values:
    name: str  # pm2 names, database names, users, hosts: any text (leading "-" allowed)
    segment: str  # a path segment

    def word(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


values = st.builds(
    Values,
    name=st.builds(_name, hostile).filter(lambda v: "\r" not in v),
    segment=st.builds(_name, hostile).filter(lambda v: v not in (".", "..")),
)


class Recorder:
    """A transport that runs nothing: it keeps each command (and its stdin) and answers
    success with empty output, so an operation goes on to build its next command."""

    label = "recorder"

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    async def run(self, command: str, *, stdin: str | None = None, **_: object) -> CommandResult:
        self.commands.append((command, stdin or ""))
        return CommandResult(0, 0.0)


def hostile_target(sandbox: Sandbox, v: Values) -> Target:
    base = sandbox.path(v.segment)
    return Target(
        "production",
        app_dir=sandbox.path(f"{v.segment}/app {v.segment}"),
        pm2_name=v.word("-"),
        pm2_bin=stub_at(sandbox, f"{base}/bin {v.segment}/pm2"),
        pm2_home=sandbox.path(f"{v.segment}/pm2 home"),
        backup_dir=sandbox.path(f"{v.segment}/backups"),
        jobs_dir=sandbox.path(f"{v.segment}/jobs"),
        staging_pm2_name=v.word("-staging "),
        releases_dir=sandbox.path(f"{v.segment}/releases"),
        start_command=f"dist/main.js {shlex.quote(v.word('--flag='))} {shlex.quote(v.name)}",
        migrate_command=f"npm run migrate -- {shlex.quote(v.name)}",
    )


def hostile_url(v: Values) -> DatabaseUrl:
    return DatabaseUrl(
        host=v.word("h"), port=5432, user=v.word("-u"),
        password=v.word("pw").replace("\n", " "),  # a password with a newline is refused
        database=v.word("-db"),
    )  # fmt: skip


def check(
    sandbox: Sandbox, command: str, expect: Callable[[Sandbox], None], stdin: str = ""
) -> None:
    sandbox.run(command, stdin)
    assert PWNED not in sandbox.programs(), command
    expect(sandbox)


def called(sandbox: Sandbox, program: str) -> list[Call]:
    calls = [c for c in sandbox.calls if os.path.basename(c.argv[0]) == program]
    assert calls, f"{program} was not started: {sandbox.calls}"
    return calls


def one_argument(sandbox: Sandbox, value: str, *, exact: bool = True) -> None:
    """``value`` is one argument of some call (``exact``), or contained whole in one."""
    args = sandbox.args()
    ok = value in args if exact else any(value in a for a in args)
    assert ok, (value, args)


SETTINGS = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.fault(
    "Hostile text (quotes, spaces, ;, $(), backticks, newlines, non-ASCII text and a leading -)"
    " in pm2_name, pm2_bin and pm2_home",
    did="every pm2 command (status, logs, show, restart, reload, delete) gets each value as one "
    "literal argument and nothing in them runs",
    lost=0,
)
@SETTINGS
@given(v=values)
def test_pm2_commands(sandbox: Sandbox, v: Values) -> None:
    target = hostile_target(sandbox, v)

    def pm2_with(*expected: str) -> Callable[[Sandbox], None]:
        def expect(s: Sandbox) -> None:
            [call] = called(s, "pm2")
            assert call.argv[0] == target.pm2_bin
            assert call.env["PM2_HOME"] == target.pm2_home
            for value in expected:
                assert value in call.argv[1:], (value, call.argv)

        return expect

    check(sandbox, pm2.pm2_command(target, "jlist"), pm2_with("jlist"))
    # jlist first checks for the daemon's socket: the message names the exact directory.
    done = sandbox.run(pm2.jlist_command(target))
    assert f"no pm2 daemon in {target.pm2_home}\n".encode() == done.stderr
    assert sandbox.calls == []
    check(sandbox, logs.logs_command(target), pm2_with("logs", target.pm2_name))
    check(sandbox, logs.show_command(target), pm2_with("show", target.pm2_name))
    check(sandbox, logs.action_command(target, "restart"), pm2_with("restart", target.pm2_name))
    check(sandbox, logs.action_command(target, "reload"), pm2_with("reload", target.pm2_name))
    check(sandbox, staging_app.stop_command(target), pm2_with("delete", target.staging_name))


@pytest.mark.fault(
    "Hostile text (quotes, spaces, ;, $(), backticks, newlines, non-ASCII text and a leading -)"
    " in app_dir, the staging pm2 name, start_command's arguments and a configured command",
    did="the staging instance and the configured commands start in that exact directory with each"
    " value as one argument; nothing in them runs",
    lost=0,
)
@SETTINGS
@given(v=values)
def test_staging_instance_and_configured_commands(sandbox: Sandbox, v: Values) -> None:
    target = hostile_target(sandbox, v)

    def started(s: Sandbox) -> None:
        delete, start = called(s, "pm2")
        assert delete.argv[1:] == ["delete", target.staging_name]
        assert start.pwd == target.app_dir
        assert start.argv[1:3] == ["start", "dist/main.js"]
        assert start.argv[3:5] == ["--name", target.staging_name]
        assert start.argv[-2:] == [v.word("--flag="), v.name]

    check(sandbox, staging_app.start_command(target), started)

    def migrated(s: Sandbox) -> None:
        [npm] = called(s, "npm")
        assert npm.pwd == target.app_dir
        assert npm.argv[1:] == ["run", "migrate", "--", v.name]

    check(sandbox, staging_app.in_app_dir(target, target.migrate_command), migrated)


@pytest.mark.fault(
    "Hostile text (quotes, spaces, ;, $(), backticks, newlines, non-ASCII text and a leading -)"
    " in the database name, user and host of the app's URL",
    did="psql, createdb, dropdb and pg_restore get each one as one argument or variable (database"
    " names after --) and the password only through stdin",
    lost=0,
)
@SETTINGS
@given(v=values)
def test_database_commands(sandbox: Sandbox, v: Values) -> None:
    url = hostile_url(v)
    path = sandbox.path(f"{v.segment}/backup_produccion_1.dump")

    def libpq_env(call: Call, database: str) -> None:
        assert call.env["PGHOST"] == url.host and call.env["PGUSER"] == url.user
        assert call.env["PGDATABASE"] == database
        assert call.env["PGPASSWORD"] == url.password  # from stdin, not argv
        assert not any(url.password in a for a in call.argv)

    def run(command: str, expect: Callable[[Sandbox], None]) -> None:
        wrapped, stdin = shell.with_secrets(command, url.secret_env())
        check(sandbox, wrapped, expect, stdin)

    def exists(s: Sandbox) -> None:
        [psql] = called(s, "psql")
        libpq_env(psql, "postgres")
        # The name is a SQL literal inside one -c argument.
        literal = "'" + url.database.replace("'", "''") + "'"
        assert any(f"datname = {literal}" in a for a in psql.argv)

    run(staging.exists_command(url), exists)
    for command in staging.create_commands(url, drop_existing=True):

        def created(s: Sandbox) -> None:
            [call] = s.calls
            libpq_env(call, "postgres")
            if os.path.basename(call.argv[0]) != "psql":
                # After "--": a name starting with "-" is not read as an option.
                assert call.argv[-2:] == ["--", url.database], call.argv

        run(command, created)
    for fmt in ("custom", "plain"):
        [command] = staging.restore_commands(url, path, 2, fmt=fmt)

        def restored(s: Sandbox) -> None:
            [call] = s.calls
            libpq_env(call, url.database)
            assert url.database in call.argv and path in call.argv

        run(command, restored)


@pytest.mark.fault(
    "Hostile text (quotes, spaces, ;, $(), backticks, newlines, non-ASCII text and a leading -)"
    " in jobs_dir and in a detached command's arguments",
    did="the detached job starts, reports its status and is cleaned up in that exact directory, "
    "its secret arrives through the job's private FIFO, and nothing in the values runs",
    lost=0,
)
@SETTINGS
@given(v=values)
# A backslash escape in the directory: dash's echo would print "\0" as a NUL, "\c" as the end.
@example(v=Values(name=f"\\c{PAYLOAD}", segment=f"\\0 \\c{PAYLOAD}"))
def test_job_launcher_and_job_scripts(sandbox: Sandbox, v: Values) -> None:
    job_root = sandbox.path(f"{v.segment}/jobs")
    job_id = shell.new_job_id()
    command = f"npm run migrate -- {shlex.quote(v.name)}"
    secret = v.word("pw").replace("\n", " ")  # a secret with a newline is refused
    wrapped, stdin = shell.with_secrets(command, {"PGPASSWORD": secret})
    launcher = shell.detached_launcher(wrapped, job_root, job_id, has_stdin=True)
    done = sandbox.run(launcher, stdin)
    assert done.returncode == 0, done.stderr
    d = shell.job_dir(job_root, job_id)
    assert done.stdout.decode().strip() == d
    for _ in range(200):
        if os.path.exists(f"{d}/status"):
            break
        time.sleep(0.02)
    sandbox.calls = list(_parse(sandbox.record.read_bytes()))
    [npm] = called(sandbox, "npm")
    assert npm.argv[1:] == ["run", "migrate", "--", v.name]
    assert npm.env["PGPASSWORD"] == secret  # through the job's FIFO, never argv
    assert PWNED not in sandbox.programs()
    status = subprocess.run(
        ["sh", "-c", shell.job_status_script(d)], capture_output=True, timeout=10
    )
    assert status.stdout.strip() == b"finished 0", status
    swept = subprocess.run(
        ["sh", "-c", shell.cleanup_jobs_script(job_root, 0)], capture_output=True, timeout=10
    )
    assert not os.path.exists(d) and d.encode() in swept.stdout

    def killable(s: Sandbox) -> None:
        [npm] = called(s, "npm")
        assert npm.argv[1:] == ["run", "migrate", "--", v.name]

    check(sandbox, shell.killable(command, shell.pgid_marker()), killable)


@pytest.mark.fault(
    "Hostile text (quotes, spaces, ;, $(), backticks, newlines, non-ASCII text and a leading -)"
    " in app_dir, releases_dir and pm2_home during a release build and switch",
    did="the copy, the manifest, the listing and each switch command work on those exact "
    "directories and nothing in them runs",
    lost=0,
)
@SETTINGS
@given(v=values)
def test_release_scripts_and_the_switch(sandbox: Sandbox, v: Values) -> None:
    target = hostile_target(sandbox, v)
    release_id = shell.new_job_id()  # a fresh id of the releases' shape
    release = f"{target.releases_path}/{release_id}"
    # The copy and the manifest run real coreutils on the hostile directories.
    Path(target.app_dir, "package.json").write_text("{}\n")
    done = sandbox.run(releases.copy_script(target.app_dir, release))
    assert PWNED not in sandbox.programs() and done.returncode == 0, done.stderr
    assert Path(release, "package.json").is_file()
    Path(release, "dist").mkdir()  # what the build makes
    Path(release, "dist", "main.js").write_text("// app\n")
    done = sandbox.run(releases.manifest_script(release))
    assert PWNED not in sandbox.programs() and done.returncode == 0, done.stderr
    listing = sandbox.run(releases.list_script(target.releases_path, sizes=True, verify=True))
    entry = listing.stdout.decode().split(f"== {release_id}\n")[1].split("==")[0]
    assert "manifest ok" in entry and PWNED not in sandbox.programs()
    source = sandbox.run(releases.source_id_script(target.app_dir))
    assert PWNED not in sandbox.programs() and source.returncode in (0, 1)
    sandbox.run(release_prune.in_use_script(target))
    assert PWNED not in sandbox.programs()

    worker = rs.Worker(0, target.pm2_name, "online", "cluster", f"{target.app_dir}/x", "/")
    plan = rs.switch_steps(target, [worker], release, link_env=True, save=True)
    for step in plan.steps:
        sandbox.run(step.command)
        assert PWNED not in sandbox.programs(), step.command
        for call in sandbox.calls:
            if "start" in call.argv:
                assert call.argv[call.argv.index("--name") + 1] == target.pm2_name
                assert call.argv[call.argv.index("--cwd") + 1] == release
                assert f"{release}/dist/main.js" in call.argv
    assert os.readlink(f"{release}/.env") == f"{target.app_dir}/.env"


@pytest.mark.fault(
    "Hostile text (quotes, spaces, ;, $(), backticks, newlines, non-ASCII text and a leading -)"
    " in backup_dir, app_dir and the deploy lock's reason",
    did="the backup, server-facts and lock scripts as sent to the server treat each value as one "
    "literal word and nothing in them runs",
    lost=0,
)
@SETTINGS
@given(v=values)
def test_scripts_ops_send_through_a_transport(sandbox: Sandbox, v: Values) -> None:
    """Backups (space, listing, digest), facts, the deploy lock: the scripts as sent."""
    target = hostile_target(sandbox, v)
    url = hostile_url(v)
    Path(target.backup_dir, f"backup_produccion_20250101_000000 {v.segment}.dump").write_text("x")
    recorder = Recorder()

    async def drive() -> None:
        await backup_list.list_backups(target, recorder)  # type: ignore[arg-type]
        await facts.server_facts(target, recorder)  # type: ignore[arg-type]
        with contextlib.suppress(Exception):  # the recorder's empty answers end it early
            await backup_dump.create_backup(target, recorder, url)  # type: ignore[arg-type]
        with contextlib.suppress(Exception):
            await lock.acquire(target, recorder, run_id="r1", reason=v.name)  # type: ignore[arg-type]

    asyncio.run(drive())
    assert len(recorder.commands) >= 4
    for command, stdin in recorder.commands:
        sandbox.run(command, stdin)
        assert PWNED not in sandbox.programs(), command
        for call in sandbox.calls:
            if os.path.basename(call.argv[0]) in ("pg_dump", "psql"):
                assert url.password not in " ".join(call.argv)
    listed = sandbox.run(recorder.commands[0][0]).stdout.decode(errors="surrogateescape")
    assert f"backup_produccion_20250101_000000 {v.segment}.dump" in listed
    sandbox.run(lock.remove_command(sandbox.path(f"{v.segment}/lock")))
    assert PWNED not in sandbox.programs()
