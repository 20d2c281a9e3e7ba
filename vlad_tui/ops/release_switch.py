"""Switch: run a release under pm2, check what runs, record what ran before (UI-free).

pm2 records the resolved script path and cwd when a process starts; ``reload`` never changes
them (pm2 #2510, #3054), and a ``current`` symlink does not help (#1663, #2229, #5939). So a
switch starts new processes from the release: in cluster mode beside the old workers (same name,
``-f``; pm2's cluster master shares the port), then deletes the old workers one at a time, each
step a command of :class:`SwitchPlan` (the deploy step can probe health between them). In fork
mode it is delete + start (requests fail while the app boots). Every pm2 command runs from
``/``: a daemon started by it keeps the cwd of its first CLI call, and deleting that directory
breaks it (#1623); :mod:`vlad_tui.ops.release_prune` never removes the daemon's cwd either. A
fresh process gets the environment of the shell that starts it, so no ``--update-env`` is needed
(#3192).

Each switch appends ``{"at", "from", "to"}`` to ``<releases>/.vlad-tui-switches``: that is how
:func:`previous_releases` knows the previous release.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from vlad_tui.config import Target
from vlad_tui.errors import NewWorkersRemoved
from vlad_tui.events import Sink
from vlad_tui.ops.pm2 import DAEMON_DOWN, jlist_command, jlist_entries, pm2_command, pm2_home
from vlad_tui.ops.releases import (
    BUILD_DIR,
    RELEASE_ID,
    Release,
    ReleaseError,
    check_layout,
    command_error,
    say,
    verify_manifest,
)
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

SWITCH_LOG = ".vlad-tui-switches"
#: A new worker must stay online this long, without restarting, before old ones are removed.
SETTLE_S = 2.0
START_TIMEOUT = 90.0
_MARK = "--- vlad-tui-env ---"


# --- pm2 commands ---------------------------------------------------------------------------------


def _pm2(target: Target, args: str) -> str:
    # From /: a daemon this call starts keeps its cwd, which must never be a release (#1623).
    return f"cd / && {pm2_command(target, args)}"


# --- what pm2 runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """One pm2 process with the paths pm2 recorded when it started."""

    pm_id: int
    name: str
    status: str
    mode: str
    exec_path: str
    cwd: str
    restarts: int = 0
    uptime_s: float | None = None
    #: pm2 start options to carry over to a new process (CLI words, already quoted).
    options: tuple[str, ...] = ()
    #: Names (never values) of the variables pm2 gave the process when it started.
    env_names: frozenset[str] = frozenset()

    @property
    def online(self) -> bool:
        return self.status == "online"

    def runs_from(self, directory: str) -> bool:
        d = directory.rstrip("/")
        return self.cwd.rstrip("/") == d or self.exec_path.startswith(d + "/")


def _carry_options(env: dict[str, Any]) -> tuple[str, ...]:
    """Start options of the running process that a delete + start would otherwise lose."""
    words: list[str] = []
    node_args = env.get("node_args")
    if isinstance(node_args, list) and node_args:
        words += ["--node-args", quote(" ".join(str(a) for a in node_args))]
    for key, flag in (
        ("kill_timeout", "--kill-timeout"),
        ("listen_timeout", "--listen-timeout"),
        ("max_memory_restart", "--max-memory-restart"),
    ):
        value = env.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            words += [flag, str(value)]
    if env.get("wait_ready") is True:
        words.append("--wait-ready")
    if env.get("merge_logs") is True:
        words.append("--merge-logs")
    interpreter = env.get("exec_interpreter")
    if isinstance(interpreter, str) and interpreter not in ("", "node", "none"):
        words += ["--interpreter", quote(interpreter)]
    namespace = env.get("namespace")
    if isinstance(namespace, str) and namespace not in ("", "default"):
        words += ["--namespace", quote(namespace)]
    return tuple(words)


#: Variables pm2, a shell or a terminal session sets by itself: no app depends on them, so a
#: new process that lacks them is not worth a warning.
_OWN_ENV = frozenset(
    {
        "_", "PWD", "OLDPWD", "SHLVL", "NODE_APP_INSTANCE", "unique_id", "HOME", "USER",
        "LOGNAME", "SHELL", "MAIL", "HOSTNAME", "TERM", "COLORTERM", "LS_COLORS", "DISPLAY",
        "EDITOR", "VISUAL", "PAGER", "LESS", "LESSOPEN", "LESSCLOSE", "MOTD_SHOWN", "STY",
        "WINDOWID", "LANGUAGE",
    }
)  # fmt: skip
_OWN_PREFIXES = ("PM2_", "SSH_", "XDG_", "LC_", "TMUX", "HIST", "DBUS_", "TERM_")


def _env_names(env: dict[str, Any]) -> frozenset[str]:
    names = env.get("env")
    if not isinstance(names, dict):
        return frozenset()
    own = {str(env.get("name") or "")}  # pm2 adds a key named after the app
    return frozenset(
        n for n in names if n not in _OWN_ENV and n not in own and not n.startswith(_OWN_PREFIXES)
    )


def parse_workers(text: str, *, now: float | None = None) -> list[Worker]:
    """Every pm2 process in ``pm2 jlist`` output (only the fields above are kept)."""
    now = time.time() if now is None else now
    workers = []
    for entry in jlist_entries(text):
        env = entry.get("pm2_env") or {}
        status = str(env.get("status") or "unknown")
        started = env.get("pm_uptime")
        uptime = None
        if status == "online" and isinstance(started, int | float) and started > 0:
            uptime = max(0.0, now - started / 1000.0)
        try:
            pm_id = int(entry.get("pm_id", env.get("pm_id")))
        except (TypeError, ValueError):
            continue
        restarts = env.get("restart_time")
        workers.append(
            Worker(
                pm_id=pm_id,
                name=str(entry.get("name") or env.get("name") or "?"),
                status=status,
                mode=str(env.get("exec_mode") or "fork_mode").removesuffix("_mode"),
                exec_path=str(env.get("pm_exec_path") or ""),
                cwd=str(env.get("pm_cwd") or ""),
                restarts=restarts if isinstance(restarts, int) else 0,
                uptime_s=uptime,
                options=_carry_options(env),
                env_names=_env_names(env),
            )
        )
    return sorted(workers, key=lambda w: w.pm_id)


async def all_workers(target: Target, transport: Transport) -> list[Worker]:
    """Every pm2 process on the target; empty when no pm2 daemon runs (never starts one)."""
    result = await transport.run(jlist_command(target), timeout=30.0)
    if result.exit_status == DAEMON_DOWN and "no pm2 daemon" in result.stderr:
        return []
    if not result.ok:
        raise command_error("pm2 jlist on", target.name, result)
    return parse_workers(result.stdout)


async def app_workers(target: Target, transport: Transport) -> list[Worker]:
    """The app's pm2 processes (``pm2_name``), by ``pm_id``."""
    return [w for w in await all_workers(target, transport) if w.name == target.pm2_name]


def script_path(target: Target, directory: str) -> str:
    """The absolute script pm2 runs for ``directory`` (``start_command``'s first word)."""
    script = shlex.split(target.start_command)[0]
    if script.startswith("/"):
        raise ReleaseError(
            f"start_command {target.start_command!r} is an absolute path: a release needs it "
            f"relative to the app (e.g. {BUILD_DIR}/main.js)"
        )
    return f"{directory.rstrip('/')}/{script.removeprefix('./')}"


@dataclass(frozen=True)
class RunningCheck:
    """Whether every worker of the app runs the intended directory."""

    directory: str
    workers: tuple[Worker, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return bool(self.workers) and not self.problems

    def describe(self) -> str:
        if self.ok:
            return f"all {len(self.workers)} worker(s) run {self.directory}"
        return "; ".join(self.problems) or f"no worker of the app runs {self.directory}"


def check_running(target: Target, workers: Iterable[Worker], directory: str) -> RunningCheck:
    """Every worker online with ``pm_cwd == directory`` and ``pm_exec_path`` its script."""
    mine = tuple(w for w in workers if w.name == target.pm2_name)
    script = script_path(target, directory)
    problems = []
    if not mine:
        problems.append(f"pm2 runs no process named {target.pm2_name}")
    for w in mine:
        if w.cwd.rstrip("/") != directory.rstrip("/") or w.exec_path != script:
            problems.append(f"worker {w.pm_id} runs {w.exec_path} from {w.cwd}")
        elif not w.online:
            problems.append(f"worker {w.pm_id} is {w.status}")
    return RunningCheck(directory, mine, tuple(problems))


def _directory(where: Release | str) -> str:
    return (where.path if isinstance(where, Release) else where).rstrip("/")


async def verify_running(
    target: Target, transport: Transport, where: Release | str
) -> RunningCheck:
    """From ``pm2 jlist``: does every worker of the app run ``where`` (a release, or
    ``app_dir`` for the in-place layout)?"""
    return check_running(target, await all_workers(target, transport), _directory(where))


# --- switching ---------------------------------------------------------------------------------

StepKind = Literal["link", "start", "stop", "retire", "save"]


@dataclass(frozen=True)
class SwitchStep:
    kind: StepKind
    command: str
    says: str
    #: The old worker a ``retire`` step deletes.
    pm_id: int | None = None


@dataclass(frozen=True)
class SwitchPlan:
    """The exact commands that move the app's pm2 processes to ``directory``, in order."""

    directory: str
    script: str
    mode: Literal["cluster", "fork"]
    instances: int
    #: ``side-by-side`` (cluster: new workers first, then old ones removed one at a time) or
    #: ``stop-start`` (fork, or a switch that must replace every process at once).
    strategy: Literal["side-by-side", "stop-start"]
    steps: tuple[SwitchStep, ...]
    replaced: tuple[Worker, ...] = ()
    notes: tuple[str, ...] = ()
    #: Variables the running processes have that the new ones will not get (names only).
    lost_env: tuple[str, ...] = ()

    @property
    def commands(self) -> list[str]:
        return [step.command for step in self.steps]


def switch_steps(
    target: Target,
    workers: Iterable[Worker],
    directory: str,
    *,
    link_env: bool,
    save: bool,
    instances: int | None = None,
    session_env: Iterable[str] | None = None,
) -> SwitchPlan:
    """The plan for moving ``workers`` (the app's processes now) to ``directory`` (pure).

    ``session_env``: the variable names of the shell the commands will run in; those the
    running processes had and it lacks are listed in :attr:`SwitchPlan.lost_env`.
    """
    current = [w for w in workers if w.name == target.pm2_name]
    mode: Literal["cluster", "fork"] = (
        "fork" if any(w.mode == "fork" for w in current) else "cluster"
    )
    d = directory.rstrip("/")
    # A switch to d that was cut off (vlad-tui killed after its start step) left its new
    # workers beside the old ones: start as many as there were old ones and retire them all.
    halfway = [w for w in current if w.runs_from(d)]
    old = [w for w in current if not w.runs_from(d)]
    count = instances or len(old if halfway and old else current) or 1
    if mode == "fork":
        count = 1
    script = script_path(target, d)
    name = quote(target.pm2_name)
    options = current[0].options if current else ()
    args = [a for a in shlex.split(target.start_command)[1:] if a != "--"]
    start = f"start {quote(script)} --name {name}"
    if mode == "cluster":
        start += f" -i {count}"
    start += f" --cwd {quote(d)}"
    if current and mode == "cluster":
        start += " -f"  # beside the running workers of the same name
    if options:
        start += " " + " ".join(options)
    if args:
        start += " -- " + " ".join(quote(a) for a in args)
    steps: list[SwitchStep] = []
    notes: list[str] = []
    if halfway and old and mode == "cluster":
        notes.append(
            f"{len(halfway)} worker(s) already run from {d} (a switch that did not finish): "
            f"{count} new worker(s) replace them and the {len(old)} old one(s)"
        )
    if link_env:
        env = f"{target.app_dir.rstrip('/')}/.env"
        steps.append(
            SwitchStep(
                "link",
                f"ln -sfn {quote(env)} {quote(d + '/.env')}",
                f"link {env} into the release (the app reads its .env; no copy)",
            )
        )
    side_by_side = bool(current) and mode == "cluster"
    if current and not side_by_side:
        steps.append(
            SwitchStep(
                "stop",
                _pm2(target, f"delete {name}"),
                f"remove the running {target.pm2_name} (fork mode: requests fail until the new "
                "process listens)",
            )
        )
        notes.append(
            "fork mode: the app is down while it boots; cluster mode (pm2 -i N) avoids that"
        )
    steps.append(
        SwitchStep(
            "start",
            _pm2(target, start),
            f"start {count} {mode} worker(s) of {target.pm2_name} from {d}"
            + (" beside the running ones" if side_by_side else ""),
        )
    )
    if side_by_side:
        for w in current:
            steps.append(
                SwitchStep(
                    "retire",
                    _pm2(target, f"delete {w.pm_id}"),
                    f"remove old worker {w.pm_id} ({w.cwd})",
                    pm_id=w.pm_id,
                )
            )
    if save:
        steps.append(
            SwitchStep("save", _pm2(target, "save"), "pm2 save: a reboot resurrects this release")
        )
    lost: tuple[str, ...] = ()
    if session_env is not None and current:
        lost = tuple(sorted(current[0].env_names - set(session_env)))
    if lost:
        shown = ", ".join(lost[:8]) + (f" and {len(lost) - 8} more" if len(lost) > 8 else "")
        notes.append(
            f"the running processes have {shown} in their environment, set in the shell "
            "that first started them; this session lacks them, so the new processes will not "
            "have them (put them in app_dir's .env, or in the deploy user's environment)"
        )
    notes.append(
        "the new processes get this session's environment plus the release's .env (pm2 keeps "
        "no environment across a delete)"
    )
    return SwitchPlan(
        d,
        script,
        mode,
        count,
        "side-by-side" if side_by_side else "stop-start",
        tuple(steps),
        tuple(current),
        tuple(notes),
        lost,
    )


async def plan_switch(
    target: Target, transport: Transport, where: Release | str, *, instances: int | None = None
) -> SwitchPlan:
    """The commands that would switch production to ``where`` (a release, or ``app_dir`` to go
    back to the in-place layout), for the confirmation; runs nothing."""
    d = _directory(where)
    if d != target.app_dir.rstrip("/"):
        root = check_layout(target)
        if d.rpartition("/")[0] != root or not RELEASE_ID.match(d.rpartition("/")[2]):
            raise ReleaseError(f"{d} is not a release under {root}")
    workers = await app_workers(target, transport)
    env = f"{target.app_dir.rstrip('/')}/.env"
    result = await transport.run(
        f"[ -e {quote(env)} ] && echo env; [ -f {pm2_home(target)}/dump.pm2 ] && echo dump; "
        f"[ -f {quote(script_path(target, d))} ] && echo script; "
        f"echo {_MARK}; awk 'BEGIN {{ for (k in ENVIRON) print k }}'; exit 0",
        timeout=30.0,
    )
    checks, _, names = result.stdout.partition(_MARK + "\n")
    found = set(checks.split())
    if "script" not in found:
        raise ReleaseError(f"{script_path(target, d)} does not exist: nothing to start")
    return switch_steps(
        target,
        workers,
        d,
        link_env="env" in found and d != target.app_dir.rstrip("/"),
        save="dump" in found,
        instances=instances,
        session_env=names.split(),
    )


#: Called after each step that ran (e.g. to probe health before the next old worker goes).
AfterStep = Callable[[SwitchStep], Awaitable[None]]


async def switch(
    target: Target,
    transport: Transport,
    plan: SwitchPlan,
    *,
    sink: Sink | None = None,
    after_step: AfterStep | None = None,
    start_timeout: float = START_TIMEOUT,
    settle: float = SETTLE_S,
) -> RunningCheck:
    """Run ``plan``'s steps in order and verify from ``pm2 jlist`` that every worker runs
    ``plan.directory``; record the switch for :func:`previous_releases`.

    After the start step, the new workers must be online and not restarting for ``settle`` s
    (pm2 marks a cluster worker online when it forks, not when it listens: ``after_step`` is
    where a health probe belongs). If they are not, they are deleted again and, side by side,
    the old workers keep serving. A release's dist/ is first checked against its manifest:
    what ships is what was built (and tested). Raises :class:`ReleaseError` on any failure.
    """
    d = plan.directory
    if d != target.app_dir.rstrip("/"):
        release = Release(d.rpartition("/")[2], d)
        changes = await verify_manifest(target, transport, release)
        if not changes.ok:
            raise ReleaseError(
                f"the build of release {release.id} changed since it was built "
                f"({changes.describe()}): build a new release"
            )
        say(sink, f"release {release.id}: {BUILD_DIR}/ matches its manifest")
    workers = await all_workers(target, transport)
    now = [(w.pm_id, w.cwd) for w in workers if w.name == target.pm2_name]
    if now != [(w.pm_id, w.cwd) for w in plan.replaced]:
        raise ReleaseError(
            f"pm2's processes of {target.pm2_name} changed since this switch was planned; "
            "nothing was changed: plan it again"
        )
    before = {w.pm_id for w in workers}
    from_dirs = sorted({w.cwd for w in plan.replaced})
    for step in plan.steps:
        if step.kind == "start" and plan.strategy != "side-by-side":
            # pm2 gives ids anew once its list is empty: after a fork-mode delete, the new
            # process may get the old one's id. What exists right before the start is old.
            before = {w.pm_id for w in await all_workers(target, transport)}
        say(sink, f"$ {step.command}")
        result = await transport.run(step.command, sink=sink, timeout=120.0)
        if not result.ok:
            raise command_error(f"switch step {step.kind!r}", step.says, result)
        if step.kind == "start":
            await _wait_started(target, transport, plan, before, start_timeout, settle, sink)
        if after_step is not None:
            try:
                await after_step(step)
            except ReleaseError as exc:
                if step.kind != "start" or plan.strategy != "side-by-side":
                    raise
                # Refused by the caller's check (e.g. health) before any old worker went.
                new = await _new_workers(target, transport, plan, before)
                raise NewWorkersRemoved(
                    f"{exc}; {await _remove(target, transport, new)} and the old workers "
                    f"keep serving (pm2 logs {target.pm2_name})"
                ) from None
    check = await verify_running(target, transport, plan.directory)
    if not check.ok:
        raise ReleaseError(f"after the switch to {plan.directory}: {check.describe()}")
    record = {"at": time.time(), "from": from_dirs, "to": plan.directory}
    root = target.releases_path
    logged = await transport.run(
        f"mkdir -p {quote(root)} && printf '%s\\n' {quote(json.dumps(record))} "
        f">> {quote(root + '/' + SWITCH_LOG)}",
        timeout=30.0,
    )
    if not logged.ok:
        say(
            sink,
            f"could not record the switch in {root}/{SWITCH_LOG}: pruning will fall back "
            "to the release dates to tell the previous release",
        )
    say(sink, check.describe())
    return check


async def _new_workers(
    target: Target, transport: Transport, plan: SwitchPlan, before: set[int]
) -> list[Worker]:
    """The app's workers started by this switch (not in ``before``, running its script)."""
    return [
        w
        for w in await all_workers(target, transport)
        if w.pm_id not in before and w.name == target.pm2_name and w.exec_path == plan.script
    ]


async def _remove(target: Target, transport: Transport, new: list[Worker]) -> str:
    """Delete the new workers again; what happened, as text."""
    left = [
        w.pm_id
        for w in new
        if not (await transport.run(_pm2(target, f"delete {w.pm_id}"), timeout=60.0)).ok
    ]
    if left:
        return f"removing worker(s) {', '.join(map(str, left))} failed (pm2 delete by hand)"
    return "they were removed"


async def _wait_started(
    target: Target,
    transport: Transport,
    plan: SwitchPlan,
    before: set[int],
    timeout: float,
    settle: float,
    sink: Sink | None,
) -> None:
    deadline = time.monotonic() + timeout
    problem = "did not start"
    while True:
        new = await _new_workers(target, transport, plan, before)
        bad = [w for w in new if w.status in ("errored", "stopped") or w.restarts >= 2]
        if bad:
            problem = f"crashed (worker {bad[0].pm_id} {bad[0].status}, {bad[0].restarts} restarts)"
            break
        settled = [w for w in new if w.online and (w.uptime_s or 0.0) >= settle]
        if len(settled) >= plan.instances:
            say(
                sink,
                f"{len(settled)} new worker(s) online: {', '.join(str(w.pm_id) for w in settled)}",
            )
            return
        if time.monotonic() >= deadline:
            problem = f"not online within {timeout:g} s ({len(new)} of {plan.instances} started)"
            break
        await asyncio.sleep(0.5)
    removed = await _remove(target, transport, new)
    failed = f"the new workers of {target.pm2_name} from {plan.directory} {problem}; {removed}"
    if plan.strategy == "side-by-side":
        raise NewWorkersRemoved(
            f"{failed} and the old workers keep serving (pm2 logs {target.pm2_name})"
        )
    raise ReleaseError(
        f"{failed} and the app is DOWN: switch back to what ran before (pm2 logs {target.pm2_name})"
    )


@dataclass(frozen=True)
class LayoutChange:
    """The one-time move from pm2 running the app in ``app_dir`` to running releases."""

    explanation: tuple[str, ...]
    plan: SwitchPlan
    revert: tuple[str, ...]


async def plan_first_layout_change(
    target: Target, transport: Transport, release: Release
) -> LayoutChange | None:
    """``None`` when pm2 already runs releases; otherwise what the first switch changes, the
    commands, and how to go back (``app_dir`` is untouched, so going back is a switch to it)."""
    workers = await app_workers(target, transport)
    app = target.app_dir.rstrip("/")
    in_place = [w for w in workers if w.runs_from(app)]
    if not in_place:
        return None
    plan = await plan_switch(target, transport, release.path)
    # Going back is a switch to app_dir. pm2 gives the release's workers their ids only when
    # they start, so which ones to remove is said, not listed.
    back = switch_steps(
        target,
        [replace(w, cwd=release.path, exec_path=plan.script) for w in plan.replaced],
        app,
        link_env=False,
        save=plan.steps[-1].kind == "save",
    )
    revert: list[str] = []
    for step in back.steps:
        if step.kind != "retire":
            revert.append(step.command)
        elif not revert[-1].startswith("then"):
            revert.append(
                f"then, one at a time: {_pm2(target, 'delete <pm_id>')} for each worker of "
                "the release"
            )
    explanation = (
        f"pm2 runs {in_place[0].exec_path} from {app}: the app is built in place there, so "
        "a build changes what pm2 runs before the migrations did.",
        f"From now on each release runs from its own directory under {target.releases_path}, "
        "and the previous one stays on disk for a code rollback without a rebuild.",
        "pm2 keeps the paths a process was started with (a reload never changes them), so this "
        "first switch starts the app's processes anew from the release"
        + (
            ", beside the running workers, which are then removed one at a time."
            if plan.strategy == "side-by-side"
            else "."
        ),
        f"{app} itself (its {BUILD_DIR}/, node_modules/ and .env) is not changed; to undo, "
        f"switch back to {app} with the commands below.",
    )
    return LayoutChange(explanation, plan, tuple(revert))


# --- the switch log ---------------------------------------------------------------------------


def latest_switch_to(text: str, running: Iterable[str]) -> dict[str, Any] | None:
    """From the switch log: the latest switch to a directory running now (``at``, ``from``,
    ``to``)."""
    now = {d.rstrip("/") for d in running}
    for line in reversed(text.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("to", "")).rstrip("/") in now:
            return record
    return None


def previous_from_log(text: str, running: Iterable[str]) -> set[str]:
    """From the switch log: what ran before the latest switch to a directory running now."""
    record = latest_switch_to(text, running)
    return {str(d).rstrip("/") for d in (record or {}).get("from") or ()}


def previous_releases(log: str, running: Iterable[str], releases: Iterable[Release]) -> set[str]:
    """The directories a code rollback would go back to (pure): what ran before the latest
    switch to what runs now (the switch log), or, with no record (switched by hand), the
    newest built release older than the running one. Rolled-back releases are never it."""
    running = {d.rstrip("/") for d in running}
    releases = list(releases)
    bad = {r.path.rstrip("/") for r in releases if r.rolled_back}
    previous = previous_from_log(log, running) - running
    if previous:
        return previous - bad
    current = [r for r in releases if r.path.rstrip("/") in running]
    if not current:
        return set()
    older = [
        r
        for r in releases
        if r.built
        and not r.rolled_back
        and r.path.rstrip("/") not in running
        and (r.created_at or 0.0) < (current[0].created_at or 0.0)
    ]
    return {older[-1].path} if older else set()
