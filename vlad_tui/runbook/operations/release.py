"""Releases in the runbook: Phase 2 builds one beside production, Phase 3 checks it is the one
that was tested (manifest intact, source unchanged) before anything ships."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.ops import releases as release_ops
from vlad_tui.ops.releases import Release, SourceId
from vlad_tui.runbook import model
from vlad_tui.runbook.operations.context import Operation, StepContext
from vlad_tui.runbook.operations.staging import staging_database_url

#: Artifact kinds: a release built (Phase 2), checked (Phase 3), refused (source changed).
RELEASE = "release"
RELEASE_CHECKED = "release_checked"
RELEASE_REFUSED = "release_refused"
#: The step that builds the release (its newest ``release`` artifact is what Phase 3 ships).
BUILD_STEP = model.step_with_role("build").id


def release_from(ctx: StepContext) -> Release:
    """The release Phase 2 built in this run (its newest ``release`` artifact)."""
    data = ctx.run.latest_artifact(RELEASE, steps=(BUILD_STEP,))
    if data is None:
        raise VladError("no release built in this run: run Phase 2's «Construir la release» first")
    return release_of(data)


def release_of(data: dict[str, Any]) -> Release:
    source = data.get("source")
    return Release(
        id=str(data["id"]),
        path=str(data["path"]),
        source=SourceId.from_dict(source) if isinstance(source, dict) else None,
        created_at=data.get("created_at"),
        built_at=data.get("built_at"),
        manifest_ok=True,
    )


def in_release(target: Target, release: Release) -> Target:
    """``target`` with ``app_dir`` pointing at the release (its commands run there)."""
    return replace(target, app_dir=release.path)


async def _release_build(ctx: StepContext) -> None:
    """Copy app_dir's source into a new release beside production and install, generate and
    build it there (DATABASE_URL → staging); production's app_dir is only read."""
    url = await staging_database_url(ctx)
    ctx.output(
        f"building a release under {ctx.target.releases_path}: {ctx.target.app_dir} and what "
        "pm2 runs from it are not changed"
    )
    release = await release_ops.build_release(ctx.target, ctx.transport, url, sink=ctx.sink)
    manifest = f"{release.path}/{release_ops.META_DIR}/manifest.sha256"
    digest = await ctx.transport.run(f"sha256sum {release_ops.quote(manifest)}", timeout=60.0)
    ctx.exit_status = 0
    ctx.artifact(
        RELEASE,
        id=release.id,
        path=release.path,
        source=release.source.to_dict() if release.source else None,
        source_text=release.source.text if release.source else "",
        created_at=release.created_at,
        built_at=release.built_at,
        manifest=manifest,
        manifest_sha256=digest.stdout.split()[0] if digest.ok and digest.stdout else None,
    )


async def check_tested(ctx: StepContext) -> Release:
    """The release Phase 2 built and started on staging, its dist/ intact and built from the
    source checked out in app_dir now; refused (and Phase 3 locked) otherwise."""
    release = release_from(ctx)
    staged = ctx.run.latest_artifact("staging_instance", steps=("p2.start",))
    if staged is not None and staged.get("release") not in (None, release.id):
        raise VladError(
            f"the staging instance ran release {staged.get('release')}, not {release.id}: "
            "re-run Phase 2 so that what ships is what was tested"
        )
    ctx.output(f"release {release.id} ({release.source.text if release.source else '?'})")
    built = await release_ops.verify_manifest(ctx.target, ctx.transport, release)
    if not built.ok:
        ctx.artifact(RELEASE_REFUSED, id=release.id, why="build", changes=built.describe(20))
        raise VladError(
            f"the build of release {release.id} changed since Phase 2 built it "
            f"({built.describe()}): re-run Phase 2 (Phase 3 stays locked until then)"
        )
    ctx.output(f"{release_ops.BUILD_DIR}/ matches the manifest recorded in Phase 2")
    source = await release_ops.source_changes(ctx.target, ctx.transport, release)
    if not source.ok:
        ctx.artifact(RELEASE_REFUSED, id=release.id, why="source", changes=source.describe(20))
        raise VladError(
            f"the source in {ctx.target.app_dir} changed since Phase 2 built release "
            f"{release.id}: {source.describe()}. Re-run Phase 2 to build and test it "
            "(Phase 3 stays locked until then)"
        )
    ctx.output(f"the source in {ctx.target.app_dir} is the one release {release.id} was built from")
    return release


async def _release_check(ctx: StepContext) -> None:
    """Phase 3's «Construye la aplicación»: no rebuild on production; the build tested in
    Phase 2 must be intact and built from the source checked out now."""
    release = await check_tested(ctx)
    ctx.artifact(RELEASE_CHECKED, id=release.id, path=release.path)


def stale_release(artifacts: list[tuple[str, str, dict[str, Any]]]) -> str:
    """Why Phase 3 is locked by a refused release ("" when it is not): a refusal not followed
    by a new release built and then started on staging (Phase 2 re-run)."""
    refused: dict[str, Any] | None = None
    rebuilt = False
    for step, kind, data in artifacts:
        if kind == RELEASE_REFUSED:
            refused, rebuilt = data, False
        elif refused is not None and kind == RELEASE and step == BUILD_STEP:
            rebuilt = True
        elif refused is not None and rebuilt and kind == "staging_instance":
            refused = None
    if refused is None:
        return ""
    what = "its build" if refused.get("why") == "build" else "the source"
    return (
        f"{what} changed since Phase 2 built release {refused.get('id')} "
        f"({refused.get('changes')}): re-run Phase 2"
    )


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "release_build": Operation(_release_build),
    "release_check": Operation(_release_check, read_only=True),
}
