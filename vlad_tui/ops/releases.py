"""Releases: each deploy's code built in its own directory beside production, shipped as built.

Layout on the server (``target.releases_path``, default ``<app_dir>-releases``)::

    <releases>/<release id>/          a copy of app_dir's source (without node_modules, dist,
                                      .env, .git), installed, generated and built there
        .vlad-tui/release.json        id, source identity, created_at, built_at (one JSON line)
        .vlad-tui/source.sha256       sha256 of every source file copied (what changed later)
        .vlad-tui/manifest.sha256     sha256 of every file under dist/ (what ships)
        .env -> <app_dir>/.env        linked when production switches to it, never a copy
    <releases>/.vlad-tui-switches     one JSON line per switch: what ran before, what runs now

Production's ``app_dir`` is only read: the source stays checked out there (``git pull`` as
before), and nothing here writes into it (``git status`` runs with ``GIT_OPTIONAL_LOCKS=0`` so
that it does not even refresh the index).

pm2 records the resolved script path and cwd when a process starts; ``reload`` never changes
them (pm2 #2510, #3054), and a ``current`` symlink does not help (#1663, #2229, #5939). So a
switch starts new processes from the release: in cluster mode beside the old workers (same name,
``-f``; pm2's cluster master shares the port), then deletes the old workers one at a time, each
step a command of :class:`SwitchPlan` (the deploy step can probe health between them). In fork
mode it is delete + start (requests fail while the app boots). Every pm2 command runs from
``/``: a daemon started by it keeps the cwd of its first CLI call, and deleting that directory
breaks it (#1623); :func:`prune` never removes the daemon's cwd either.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import secrets as _secrets
import shlex
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops.pm2 import DAEMON_DOWN, jlist_command, jlist_entries, pm2_command, shell_path
from vlad_tui.ops.staging_app import COMMAND_TIMEOUT, run_in_app
from vlad_tui.transport.base import CommandResult, Transport
from vlad_tui.transport.shell import quote

#: The build output pm2 runs (``start_command`` lives under it) and the manifest covers.
BUILD_DIR = "dist"
#: vlad-tui's own files inside a release.
META_DIR = ".vlad-tui"
SWITCH_LOG = ".vlad-tui-switches"
#: ``20261201T225000-3f2a1c9b0d1e-dirty-a1b2``: time, source, random suffix.
RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[A-Za-z0-9.-]{1,48}\Z")
#: Never copied into a release: dependencies and build output are made there, secrets stay in
#: app_dir (the release gets a link to its .env), and so does the repository.
EXCLUDED = ("node_modules", "dist", ".env", ".git")
#: A release directory without a manifest younger than this may still be building.
INCOMPLETE_GRACE_S = 3600.0
#: A new worker must stay online this long, without restarting, before old ones are removed.
SETTLE_S = 2.0
START_TIMEOUT = 90.0
_MARK = "--- vlad-tui-releases ---"


class ReleaseError(VladError):
    """A release could not be built, checked, switched to or pruned."""


# --- shell snippets ----------------------------------------------------------------------------

# node_modules and .git anywhere; dist, .env and our metadata at the top only.
_PRUNE = (
    r"\( -path ./dist -o -path ./.env -o -path ./" + META_DIR + r" -o -name node_modules "
    r"-o -name .git \) -prune"
)


def _source_manifest_sh() -> str:
    """Shell (run in a source tree) printing ``sha256  ./path`` for every source file, sorted."""
    return f"find . {_PRUNE} -o -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum"


def _dist_manifest_sh() -> str:
    """Shell (run in a release) printing ``sha256  dist/path`` for every build file, sorted."""
    return f"find {BUILD_DIR} -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum"


def _tree_hash_sh() -> str:
    return f"{_source_manifest_sh()} | sha256sum | cut -c1-64"


def _pm2(target: Target, args: str) -> str:
    # From /: a daemon this call starts keeps its cwd, which must never be a release (#1623).
    return f"cd / && {pm2_command(target, args)}"


def _pm2_home(target: Target) -> str:
    return shell_path(target.pm2_home) if target.pm2_home else '"${PM2_HOME:-$HOME/.pm2}"'


# --- source identity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceId:
    """What is checked out: git ``HEAD`` (and whether the tree differs from it) and always a
    content hash of the source files (``tree``), which is what two sources are compared by."""

    tree: str
    revision: str | None = None
    dirty: bool = False
    #: ``git status --porcelain`` lines (at most 50) when dirty.
    status: tuple[str, ...] = ()

    @property
    def kind(self) -> Literal["git", "tree"]:
        return "git" if self.revision else "tree"

    @property
    def text(self) -> str:
        """``git 3f2a1c9b0d1e``, ``git 3f2a1c9b0d1e + uncommitted changes`` or ``files 1a2b…``."""
        if self.revision:
            return f"git {self.revision[:12]}" + (" + uncommitted changes" if self.dirty else "")
        return f"files {self.tree[:12]}"

    @property
    def slug(self) -> str:
        """For release ids: ``3f2a1c9b0d1e``, ``3f2a1c9b0d1e-dirty`` or ``t1a2b3c4d5e6f``."""
        if self.revision:
            return self.revision[:12] + ("-dirty" if self.dirty else "")
        return "t" + self.tree[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": self.tree,
            "revision": self.revision,
            "dirty": self.dirty,
            "status": list(self.status),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceId:
        return cls(
            tree=str(data.get("tree") or ""),
            revision=data.get("revision") or None,
            dirty=bool(data.get("dirty")),
            status=tuple(str(s) for s in data.get("status") or ()),
        )


def source_id_script(app_dir: str) -> str:
    """Shell printing ``git <rev>``, ``status <line>``… (in a git checkout) and ``tree <hash>``."""
    excludes = " ".join(
        quote(f":(exclude,glob){p}")
        for p in ("dist/**", ".env", "node_modules/**", "**/node_modules/**")
    )
    return (
        f"cd {quote(app_dir)} || exit 1; "
        "if command -v git >/dev/null 2>&1 && "
        "r=$(git rev-parse --verify -q HEAD 2>/dev/null); then "
        'echo "git $r"; '
        f"GIT_OPTIONAL_LOCKS=0 git status --porcelain -- . {excludes} 2>/dev/null "
        "| head -n 50 | sed 's/^/status /'; fi; "
        f'echo "tree $({_tree_hash_sh()})"'
    )


def parse_source_id(text: str) -> SourceId:
    revision, tree, status = None, "", []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "git":
            revision = rest.strip()
        elif word == "status":
            status.append(rest)
        elif word == "tree":
            tree = rest.strip()
    if not re.fullmatch(r"[0-9a-f]{64}", tree):
        raise ReleaseError("could not compute the source's content hash (sha256sum missing?)")
    return SourceId(tree, revision, bool(status), tuple(status))


async def read_source(target: Target, transport: Transport) -> SourceId:
    """The identity of what is checked out in ``app_dir`` (read-only)."""
    result = await transport.run(source_id_script(target.app_dir), timeout=300.0)
    if not result.ok:
        raise _failed("reading the source in", target.app_dir, result)
    return parse_source_id(result.stdout)


# --- releases on disk --------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """One release directory under ``releases_path``."""

    id: str
    path: str
    source: SourceId | None = None
    created_at: float | None = None
    built_at: float | None = None
    size_bytes: int | None = None
    #: Whether dist/ still matches the manifest; ``None`` when not built or not checked.
    manifest_ok: bool | None = None

    @property
    def built(self) -> bool:
        return self.built_at is not None

    def describe(self) -> str:
        state = (
            "incomplete (no build)"
            if not self.built
            else {True: "build intact", False: "BUILD CHANGED", None: "built"}[self.manifest_ok]
        )
        source = self.source.text if self.source else "unknown source"
        return f"{self.id} ({source}, {state})"


def release_path(target: Target, release_id: str) -> str:
    if not RELEASE_ID.match(release_id):
        raise ValueError(f"not a release id: {release_id!r}")
    return f"{target.releases_path}/{release_id}"


def new_release_id(source: SourceId, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{source.slug}-{_secrets.token_hex(2)}"


def _check_layout(target: Target) -> str:
    root = target.releases_path.rstrip("/")
    app = target.app_dir.rstrip("/")
    if not root.startswith("/") or root in ("", app) or root.startswith(app + "/"):
        raise ReleaseError(
            f"releases_dir {root} must be an absolute path outside app_dir {app}: releases are "
            "built beside production, never inside it"
        )
    return root


def list_script(root: str, *, sizes: bool, verify: bool) -> str:
    meta = f'"$d"/{META_DIR}'
    lines = [
        f'r={quote(root)}; [ -d "$r" ] || exit 0',
        'for d in "$r"/*; do [ -d "$d" ] && [ ! -L "$d" ] || continue; n=${d##*/}',
        'case "$n" in [0-9]*T[0-9]*-*) ;; *) continue;; esac',
        "printf '== %s\\n' \"$n\"",
        f"if [ -f {meta}/release.json ]; then printf 'meta %s\\n' \"$(tr -d '\\n' < {meta}/release.json)\"; fi",  # noqa: E501
    ]
    if sizes:
        lines.append('printf \'size %s\\n\' "$(du -sk "$d" 2>/dev/null | cut -f1)"')
    if verify:
        lines.append(
            f"if [ -f {meta}/manifest.sha256 ]; then "
            f'if [ "$(cat {meta}/manifest.sha256)" = "$(cd "$d" && {_dist_manifest_sh()})" ]; '
            "then echo 'manifest ok'; else echo 'manifest changed'; fi; fi"
        )
    lines.append("done")
    return "\n".join(lines) + "\n"


def parse_listing(root: str, text: str) -> list[Release]:
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "==" and RELEASE_ID.match(rest):
            found.append({"id": rest, "path": f"{root}/{rest}"})
        elif not found:
            continue
        elif word == "meta":
            try:
                meta = json.loads(rest)
            except ValueError:
                continue
            if isinstance(meta, dict):
                src = meta.get("source")
                found[-1]["source"] = SourceId.from_dict(src) if isinstance(src, dict) else None
                found[-1]["created_at"] = _num(meta.get("created_at"))
                found[-1]["built_at"] = _num(meta.get("built_at"))
        elif word == "size" and rest.strip().isdigit():
            found[-1]["size_bytes"] = int(rest) * 1024
        elif word == "manifest":
            found[-1]["manifest_ok"] = rest.strip() == "ok"
    for entry in found:
        # A release being copied has no release.json yet: its id says when it was started.
        if entry.get("created_at") is None:
            entry["created_at"] = _id_time(entry["id"])
    releases = [Release(**entry) for entry in found]
    return sorted(releases, key=lambda r: (r.created_at or 0.0, r.id))


def _id_time(release_id: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(release_id[:15], "%Y%m%dT%H%M%S")))
    except ValueError:
        return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def list_releases(
    target: Target, transport: Transport, *, sizes: bool = True, verify: bool = True
) -> list[Release]:
    """Every release on the server, oldest first (one command; manifests re-checked with
    ``verify``)."""
    root = _check_layout(target)
    result = await transport.run(list_script(root, sizes=sizes, verify=verify), timeout=300.0)
    if not result.ok:
        raise _failed("listing the releases in", root, result)
    return parse_listing(root, result.stdout)


# --- building ----------------------------------------------------------------------------------


def copy_script(app_dir: str, release: str) -> str:
    """Shell creating ``release`` (which must not exist) with a copy of ``app_dir``'s source,
    writing its source manifest and printing ``tree <hash>`` of what was copied."""
    rel = quote(release)
    return (
        "set -e; umask 022; "
        f"mkdir -p {quote(release.rpartition('/')[0])}; mkdir {rel}; mkdir {rel}/{META_DIR}; "
        f"cd {quote(app_dir)}; "
        f"find . {_PRUNE} -o -print0 | tar --null --no-recursion -T - -cf - | tar -C {rel} -xf -; "
        f"cd {rel}; ( {_source_manifest_sh()} ) > {META_DIR}/source.sha256; "
        f'echo "tree $(sha256sum < {META_DIR}/source.sha256 | cut -c1-64)"'
    )


def manifest_script(release: str) -> str:
    """Shell writing the build manifest of ``release`` and printing ``files <n>``."""
    m = f"{META_DIR}/manifest.sha256"
    return (
        f"cd {quote(release)} || exit 1; "
        f"if [ ! -d {BUILD_DIR} ]; then echo 'the build left no {BUILD_DIR}/ directory' >&2; "
        "exit 1; fi; "
        f"( {_dist_manifest_sh()} ) > {m}.tmp && mv -f {m}.tmp {m} || exit 1; "
        f'echo "files $(wc -l < {m})"'
    )


async def _write_meta(transport: Transport, path: str, meta: dict[str, Any]) -> None:
    data = (json.dumps(meta, sort_keys=True) + "\n").encode()
    await transport.write_file(f"{path}/{META_DIR}/release.json", data, mode=0o644)


async def build_release(
    target: Target,
    transport: Transport,
    url: DatabaseUrl | None = None,
    *,
    sink: Sink | None = None,
    timeout: float | None = COMMAND_TIMEOUT,
) -> Release:
    """Copy ``app_dir``'s source into a new release and install, generate and build it there.

    The commands (``install_command``, ``generate_command``, ``build_command``) run in the
    release with ``DATABASE_URL=url`` through stdin when ``url`` is given. Production's
    ``app_dir`` is only read. A failed command leaves the release incomplete (no manifest), and
    raises :class:`ReleaseError`.
    """
    root = _check_layout(target)
    source = await read_source(target, transport)
    release_id = new_release_id(source)
    path = f"{root}/{release_id}"
    _say(sink, f"release {release_id}: {source.text} from {target.app_dir}")
    created = time.time()
    result = await transport.run(copy_script(target.app_dir, path), timeout=600.0)
    if not result.ok:
        raise _failed("copying the source to", path, result)
    copied = parse_source_id(result.stdout)
    if copied.tree != source.tree:
        raise ReleaseError(
            f"the source in {target.app_dir} changed while it was copied to {path}; "
            "build the release again"
        )
    meta: dict[str, Any] = {"id": release_id, "source": source.to_dict(), "created_at": created}
    await _write_meta(transport, path, meta)
    in_release = replace(target, app_dir=path)
    for what, command in (
        ("install", target.install_command),
        ("generate", target.generate_command),
        ("build", target.build_command),
    ):
        if url is not None:
            step = await run_in_app(in_release, transport, command, url, sink=sink, timeout=timeout)
        else:
            _say(sink, f"$ cd {quote(path)} && {command}")
            step = await transport.run(
                f"cd {quote(path)} || exit 1; sh -c {quote(command)}", sink=sink, timeout=timeout
            )
        if not step.ok:
            raise _failed(what, command, step)
    result = await transport.run(manifest_script(path), timeout=300.0)
    if not result.ok:
        raise _failed("recording the build manifest of", path, result)
    files = result.stdout.strip().removeprefix("files ").strip()
    meta["built_at"] = time.time()
    meta["build_files"] = int(files) if files.isdigit() else None
    await _write_meta(transport, path, meta)
    _say(sink, f"release {release_id} built: {files} files in {BUILD_DIR}/ recorded")
    return Release(release_id, path, source, created, meta["built_at"], None, True)


# --- checking ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """How a set of files differs from what was recorded."""

    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def describe(self, limit: int = 5) -> str:
        if self.ok:
            return "no change"
        parts = []
        for label, names in (
            ("changed", self.changed),
            ("added", self.added),
            ("removed", self.removed),
        ):
            if names:
                shown = ", ".join(names[:limit]) + (" …" if len(names) > limit else "")
                parts.append(f"{len(names)} {label} ({shown})")
        return "; ".join(parts)


def parse_manifest(text: str) -> dict[str, str]:
    """``path → sha256`` from ``sha256sum`` output (``./`` dropped)."""
    files: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest.lstrip("\\")) == 64:
            files[name.removeprefix("./")] = digest.lstrip("\\")
    return files


def compare(recorded: dict[str, str], current: dict[str, str]) -> Changes:
    return Changes(
        changed=tuple(
            sorted(p for p in recorded.keys() & current.keys() if recorded[p] != current[p])
        ),
        added=tuple(sorted(current.keys() - recorded.keys())),
        removed=tuple(sorted(recorded.keys() - current.keys())),
    )


def _split(text: str) -> tuple[str, str]:
    before, sep, after = text.partition(_MARK + "\n")
    if not sep:
        raise ReleaseError("unreadable manifest output")
    return before, after


async def verify_manifest(target: Target, transport: Transport, release: Release) -> Changes:
    """Re-check the release's dist/ against its manifest (one command); what changed."""
    m = f"{META_DIR}/manifest.sha256"
    command = (
        f"cd {quote(release.path)} || exit 1; "
        f"if [ ! -f {m} ]; then echo 'no build manifest: the release was never built' >&2; "
        f"exit 1; fi; cat {m}; echo {quote(_MARK)}; "
        f"if [ -d {BUILD_DIR} ]; then {_dist_manifest_sh()}; fi"
    )
    result = await transport.run(command, timeout=300.0)
    if not result.ok:
        raise _failed("checking the build of", release.path, result)
    recorded, current = _split(result.stdout)
    return compare(parse_manifest(recorded), parse_manifest(current))


async def source_changes(target: Target, transport: Transport, release: Release) -> Changes:
    """How ``app_dir``'s source now differs from what ``release`` was built from."""
    command = (
        f"cat {quote(release.path + '/' + META_DIR + '/source.sha256')} || exit 1; "
        f"echo {quote(_MARK)}; cd {quote(target.app_dir)} || exit 1; {_source_manifest_sh()}"
    )
    result = await transport.run(command, timeout=300.0)
    if not result.ok:
        raise _failed("comparing the source with", release.path, result)
    recorded, current = _split(result.stdout)
    return compare(parse_manifest(recorded), parse_manifest(current))


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
            )
        )
    return sorted(workers, key=lambda w: w.pm_id)


async def all_workers(target: Target, transport: Transport) -> list[Worker]:
    """Every pm2 process on the target; empty when no pm2 daemon runs (never starts one)."""
    result = await transport.run(jlist_command(target), timeout=30.0)
    if result.exit_status == DAEMON_DOWN and "no pm2 daemon" in result.stderr:
        return []
    if not result.ok:
        raise _failed("pm2 jlist on", target.name, result)
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


async def verify_running(target: Target, transport: Transport, directory: str) -> RunningCheck:
    """From ``pm2 jlist``: does every worker of the app run ``directory`` (a release's path,
    or ``app_dir``)?"""
    return check_running(target, await all_workers(target, transport), directory)


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
) -> SwitchPlan:
    """The plan for moving ``workers`` (the app's processes now) to ``directory`` (pure)."""
    current = [w for w in workers if w.name == target.pm2_name]
    mode: Literal["cluster", "fork"] = (
        "fork" if any(w.mode == "fork" for w in current) else "cluster"
    )
    count = instances or len(current) or 1
    if mode == "fork":
        count = 1
    d = directory.rstrip("/")
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
    notes.append(
        "the new processes get this session's environment plus the release's .env; variables "
        "set only in the shell that first started pm2 are not carried over"
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
    )


async def plan_switch(
    target: Target, transport: Transport, directory: str, *, instances: int | None = None
) -> SwitchPlan:
    """The commands that would switch production to ``directory`` (a release's path, or
    ``app_dir`` to go back to the in-place layout), for the confirmation; runs nothing."""
    d = directory.rstrip("/")
    if d != target.app_dir.rstrip("/"):
        root = _check_layout(target)
        if d.rpartition("/")[0] != root or not RELEASE_ID.match(d.rpartition("/")[2]):
            raise ReleaseError(f"{d} is not a release under {root}")
    workers = await app_workers(target, transport)
    env = f"{target.app_dir.rstrip('/')}/.env"
    result = await transport.run(
        f"[ -e {quote(env)} ] && echo env; [ -f {_pm2_home(target)}/dump.pm2 ] && echo dump; "
        f"[ -f {quote(script_path(target, d))} ] && echo script; exit 0",
        timeout=30.0,
    )
    found = set(result.stdout.split())
    if "script" not in found:
        raise ReleaseError(f"{script_path(target, d)} does not exist: nothing to start")
    return switch_steps(
        target,
        workers,
        d,
        link_env="env" in found and d != target.app_dir.rstrip("/"),
        save="dump" in found,
        instances=instances,
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
    ``plan.directory``; record the switch for :func:`prune`.

    After the start step, the new workers must be online and not restarting for ``settle`` s
    (pm2 marks a cluster worker online when it forks, not when it listens: ``after_step`` is
    where a health probe belongs). If they are not, they are deleted again and, side by side,
    the old workers keep serving. Raises :class:`ReleaseError` on any failure.
    """
    before = {w.pm_id for w in await all_workers(target, transport)}
    from_dirs = sorted({w.cwd for w in plan.replaced})
    for step in plan.steps:
        _say(sink, f"$ {step.command}")
        result = await transport.run(step.command, sink=sink, timeout=120.0)
        if not result.ok:
            raise _failed(f"switch step {step.kind!r}", step.says, result)
        if step.kind == "start":
            await _wait_started(target, transport, plan, before, start_timeout, settle, sink)
        if after_step is not None:
            await after_step(step)
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
        _say(
            sink,
            f"could not record the switch in {root}/{SWITCH_LOG}: pruning will fall back "
            "to the release dates to tell the previous release",
        )
    _say(sink, check.describe())
    return check


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
        new = [
            w
            for w in await all_workers(target, transport)
            if w.pm_id not in before and w.name == target.pm2_name and w.exec_path == plan.script
        ]
        bad = [w for w in new if w.status in ("errored", "stopped") or w.restarts >= 2]
        if bad:
            problem = f"crashed (worker {bad[0].pm_id} {bad[0].status}, {bad[0].restarts} restarts)"
            break
        settled = [w for w in new if w.online and (w.uptime_s or 0.0) >= settle]
        if len(settled) >= plan.instances:
            _say(
                sink,
                f"{len(settled)} new worker(s) online: {', '.join(str(w.pm_id) for w in settled)}",
            )
            return
        if time.monotonic() >= deadline:
            problem = f"not online within {timeout:g} s ({len(new)} of {plan.instances} started)"
            break
        await asyncio.sleep(0.5)
    kept = "the old workers keep serving" if plan.strategy == "side-by-side" else "the app is DOWN"
    for w in new:
        await transport.run(_pm2(target, f"delete {w.pm_id}"), timeout=60.0)
    raise ReleaseError(
        f"the new workers of {target.pm2_name} from {plan.directory} {problem}; they were "
        f"removed and {kept} (pm2 logs {target.pm2_name})"
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


# --- keeping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[str, ...]
    #: Release id → why it was kept.
    kept: dict[str, str] = field(default_factory=dict)


def choose_prune(
    releases: Iterable[Release],
    keep: int,
    *,
    in_use: Iterable[str],
    previous: Iterable[str],
    now: float | None = None,
) -> PruneResult:
    """Which releases to remove (pure): the newest ``keep`` built ones stay, and so does every
    release a process uses (``in_use``: pm2's workers, its saved list and its daemon's cwd),
    the previous one, and an incomplete one younger than :data:`INCOMPLETE_GRACE_S`."""
    now = time.time() if now is None else now
    used = [d.rstrip("/") for d in in_use if d]
    prev = {d.rstrip("/") for d in previous if d}
    kept: dict[str, str] = {}
    removed: list[str] = []
    built = sorted((r for r in releases if r.built), key=lambda r: r.created_at or 0.0)
    newest = {r.id for r in built[-keep:]} if keep > 0 else set()
    for r in sorted(releases, key=lambda r: r.created_at or 0.0):
        path = r.path.rstrip("/")
        if any(u == path or u.startswith(path + "/") for u in used):
            kept[r.id] = "in use by pm2"
        elif path in prev:
            kept[r.id] = "the previous release"
        elif r.id in newest:
            kept[r.id] = f"one of the newest {keep}"
        elif not r.built and now - (r.created_at or 0.0) < INCOMPLETE_GRACE_S:
            kept[r.id] = "incomplete, may still be building"
        else:
            removed.append(r.id)
    return PruneResult(tuple(removed), kept)


def in_use_script(target: Target) -> str:
    """Shell printing ``cwd <dir>`` of the pm2 daemon and ``dump <path>`` of each path in
    pm2's saved process list (paths only: the list also holds each process's environment)."""
    h = _pm2_home(target)
    return (
        f"h={h}; "
        'if p=$(cat "$h/pm2.pid" 2>/dev/null) && c=$(readlink "/proc/$p/cwd"); then '
        'echo "cwd $c"; fi; '
        'if [ -f "$h/dump.pm2" ]; then '
        'grep -oE \'"pm_(cwd|exec_path)": *"[^"]*"\' "$h/dump.pm2" '
        '| sed -E \'s/^"pm_(cwd|exec_path)": *"(.*)"$/dump \\2/\'; fi; exit 0'
    )


def previous_from_log(text: str, running: Iterable[str]) -> set[str]:
    """From the switch log: what ran before the latest switch to a directory running now."""
    now = {d.rstrip("/") for d in running}
    for line in reversed(text.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("to", "")).rstrip("/") in now:
            return {str(d).rstrip("/") for d in record.get("from") or ()}
    return set()


async def prune(
    target: Target,
    transport: Transport,
    *,
    keep: int | None = None,
    sink: Sink | None = None,
) -> PruneResult:
    """Remove old releases, keeping ``keep`` (``target.keep_releases``) and every protected
    one (see :func:`choose_prune`). pm2 must be readable: if its process list cannot be read,
    nothing is removed."""
    root = _check_layout(target)
    keep = target.keep_releases if keep is None else keep
    workers = await all_workers(target, transport)
    extra = await transport.run(in_use_script(target), timeout=30.0)
    in_use = [w.cwd for w in workers] + [w.exec_path for w in workers]
    for line in extra.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("cwd", "dump") and rest:
            in_use.append(rest)
    log = await transport.run(f"cat {quote(root + '/' + SWITCH_LOG)} 2>/dev/null; exit 0")
    running = {w.cwd for w in workers if w.name == target.pm2_name}
    releases = await list_releases(target, transport, sizes=False, verify=False)
    previous = previous_from_log(log.stdout, running)
    if not previous:
        # No record (switched by hand): the newest built release older than the running one.
        current = [r for r in releases if r.path in running]
        if current:
            older = [
                r
                for r in releases
                if r.built and (r.created_at or 0.0) < (current[0].created_at or 0.0)
            ]
            previous = {older[-1].path} if older else set()
    result = choose_prune(releases, keep, in_use=in_use, previous=previous)
    if result.removed:
        paths = " ".join(quote(release_path(target, r)) for r in result.removed)
        command = (
            f'for d in {paths}; do [ -d "$d" ] && [ ! -L "$d" ] && rm -rf -- "$d"; done; exit 0'
        )
        _say(sink, f"removing {len(result.removed)} old release(s): {', '.join(result.removed)}")
        done = await transport.run(command, timeout=600.0)
        if not done.ok:
            raise _failed("removing old releases in", root, done)
    for release_id, why in result.kept.items():
        _say(sink, f"kept {release_id}: {why}")
    return result


# --- helpers -----------------------------------------------------------------------------------


def _say(sink: Sink | None, text: str) -> None:
    if sink is not None:
        sink(OutputLine(text))


def _failed(what: str, subject: str, result: CommandResult) -> ReleaseError:
    how = (
        f"exit status {result.exit_status}"
        if result.exit_status is not None
        else f"signal {result.signal or 'unknown'}"
    )
    lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
    detail = f": {lines[-1][:200]}" if lines else ""
    return ReleaseError(f"{what} `{subject}` failed ({how}){detail}")
