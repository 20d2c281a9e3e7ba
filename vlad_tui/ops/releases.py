"""Releases: each deploy's code built in its own directory beside production, shipped as built.

Layout on the server (``target.releases_path``, default ``<app_dir>-releases``)::

    <releases>/<release id>/          a copy of app_dir's source (without node_modules, dist,
                                      .env, .git), installed, generated and built there
        .vlad-tui/release.json        id, source identity, created_at, built_at (one JSON line)
        .vlad-tui/source.sha256       sha256 of every source file copied (what changed later)
        .vlad-tui/manifest.sha256     sha256 of every file under dist/ (what ships)
        .env -> <app_dir>/.env        linked when production switches to it, never a copy
        .vlad-tui-rolled-back         written when a code rollback switched away from it
    <releases>/.vlad-tui-switches     one JSON line per switch (see :mod:`.release_switch`)

Production's ``app_dir`` is only read: the source stays checked out there (``git pull`` as
before), and nothing here writes into it (``git status`` runs with ``GIT_OPTIONAL_LOCKS=0`` so
that it does not even refresh the index). Running a release under pm2, and removing old ones,
is :mod:`vlad_tui.ops.release_switch`.
"""

from __future__ import annotations

import calendar
import json
import re
import secrets as _secrets
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import ConnectionLost, ReleaseError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops.staging_app import COMMAND_TIMEOUT, run_in_app
from vlad_tui.transport.base import CommandResult, Transport
from vlad_tui.transport.shell import quote

#: The build output pm2 runs (``start_command`` lives under it) and the manifest covers.
BUILD_DIR = "dist"
#: vlad-tui's own files inside a release.
META_DIR = ".vlad-tui"
#: ``20261201T225000-3f2a1c9b0d1e-dirty-a1b2``: time, source, random suffix.
RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[A-Za-z0-9.-]{1,48}\Z")
#: In a release directory: a code rollback switched away from it (holds the rollback's run id).
#: Such a release is never offered, or kept, as "the previous release" again.
BAD_MARK = ".vlad-tui-rolled-back"
_MARK = "--- vlad-tui-releases ---"


def command_error(what: str, subject: str, result: CommandResult) -> ReleaseError:
    """``<what> `<subject>` failed (exit status N): <last output line>``."""
    return ReleaseError(f"{what} `{subject}` failed {result.failure()}")


def say(sink: Sink | None, text: str) -> None:
    if sink is not None:
        sink(OutputLine(text))


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
        raise command_error("reading the source in", target.app_dir, result)
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
    #: A code rollback switched away from it (:data:`BAD_MARK`).
    rolled_back: bool = False

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
        bad = ", rolled back" if self.rolled_back else ""
        return f"{self.id} ({source}, {state}{bad})"


def release_path(target: Target, release_id: str) -> str:
    if not RELEASE_ID.match(release_id):
        raise ValueError(f"not a release id: {release_id!r}")
    return f"{target.releases_path}/{release_id}"


def new_release_id(source: SourceId, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{source.slug}-{_secrets.token_hex(2)}"


def check_layout(target: Target) -> str:
    """``releases_path``, refused unless absolute and outside ``app_dir``."""
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
        f"if [ -f {meta}/release.json ]; then "
        f"printf 'meta %s\\n' \"$(tr -d '\\n' < {meta}/release.json)\"; fi",
        f'if [ -e "$d"/{BAD_MARK} ]; then echo rolled-back; fi',
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
        elif word == "rolled-back":
            found[-1]["rolled_back"] = True
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
    root = check_layout(target)
    result = await transport.run(list_script(root, sizes=sizes, verify=verify), timeout=300.0)
    if not result.ok:
        raise command_error("listing the releases in", root, result)
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
    root = check_layout(target)
    source = await read_source(target, transport)
    release_id = new_release_id(source)
    path = f"{root}/{release_id}"
    say(sink, f"release {release_id}: {source.text} from {target.app_dir}")
    created = time.time()
    result = await transport.run(copy_script(target.app_dir, path), timeout=600.0)
    if not result.ok:
        raise command_error("copying the source to", path, result)
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
        try:
            if url is not None:
                step = await run_in_app(
                    in_release, transport, command, url, sink=sink, timeout=timeout
                )
            else:
                say(sink, f"$ cd {quote(path)} && {command}")
                script = f"cd {quote(path)} || exit 1; sh -c {quote(command)}"
                step = await transport.run(script, sink=sink, timeout=timeout)
        except ConnectionLost:
            raise ReleaseError(
                f"the SSH connection to {transport.label} dropped during the {what} "
                f"(`{command}`) of release {release_id}: that release stays incomplete (no "
                "manifest), so it is never started or shipped; build the release again"
            ) from None
        if not step.ok:
            raise command_error(what, command, step)
    result = await transport.run(manifest_script(path), timeout=300.0)
    if not result.ok:
        raise command_error("recording the build manifest of", path, result)
    files = result.stdout.strip().removeprefix("files ").strip()
    meta["built_at"] = time.time()
    meta["build_files"] = int(files) if files.isdigit() else None
    await _write_meta(transport, path, meta)
    say(sink, f"release {release_id} built: {files} files in {BUILD_DIR}/ recorded")
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


def _compare_script(recorded: str, current: str) -> str:
    """Shell printing ``same`` when the output of ``current`` equals the file ``recorded``;
    otherwise the file, a marker line and the output (so a long listing crosses only then)."""
    return (
        f"now=$({current}) || exit 1; "
        f'if [ "$now" = "$(cat {recorded})" ]; then echo same; exit 0; fi; '
        f"cat {recorded}; echo {quote(_MARK)}; printf '%s\\n' \"$now\""
    )


def _changes(result: CommandResult) -> Changes:
    if result.stdout.strip() == "same":
        return Changes()
    recorded, sep, current = result.stdout.partition(_MARK + "\n")
    if not sep:
        raise ReleaseError("unreadable manifest comparison output")
    return compare(parse_manifest(recorded), parse_manifest(current))


async def verify_manifest(target: Target, transport: Transport, release: Release) -> Changes:
    """Re-check the release's dist/ against its manifest (one command); what changed."""
    m = f"{META_DIR}/manifest.sha256"
    current = f"if [ -d {BUILD_DIR} ]; then {_dist_manifest_sh()}; fi"
    command = (
        f"cd {quote(release.path)} || exit 1; "
        f"if [ ! -f {m} ]; then echo 'no build manifest: the release was never built' >&2; "
        f"exit 1; fi; {_compare_script(m, current)}"
    )
    result = await transport.run(command, timeout=300.0)
    if not result.ok:
        raise command_error("checking the build of", release.path, result)
    return _changes(result)


async def source_changes(target: Target, transport: Transport, release: Release) -> Changes:
    """How ``app_dir``'s source now differs from what ``release`` was built from."""
    recorded = quote(f"{release.path}/{META_DIR}/source.sha256")
    command = (
        f"[ -f {recorded} ] || {{ echo 'the release has no source manifest' >&2; exit 1; }}; "
        f"cd {quote(target.app_dir)} || exit 1; {_compare_script(recorded, _source_manifest_sh())}"
    )
    result = await transport.run(command, timeout=300.0)
    if not result.ok:
        raise command_error("comparing the source with", release.path, result)
    return _changes(result)
