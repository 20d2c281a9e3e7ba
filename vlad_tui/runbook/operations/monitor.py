"""``p4.metrics``: sample the app, pm2 and PostgreSQL every ``[monitor] interval`` until stopped.

Read-only, so it runs beside any other step. Every sample is recorded
(:class:`~vlad_tui.ops.recording.Recording`), evaluated against the baseline
(:mod:`vlad_tui.ops.baseline`) and emitted as :class:`MonitorSampled`; a metric rising to a worse
level is journaled (``monitor_threshold``) and written to the step's output. A failed part of a
sample is a gap plus one output line, never the end of the step.

Stopping: the operator stops monitoring by cancelling the step's task. That is how monitoring
ends, not an interruption of it, so the operation catches the cancellation, writes its
``monitor_summary`` artifact (min/median/max per metric, every threshold crossed) and returns:
the step ends ``ok``. ``params={"duration": seconds}`` bounds it instead (tests, rehearsals).
The step fails only when not a single sample could be taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

from vlad_tui.errors import VladError
from vlad_tui.journal import Journal
from vlad_tui.ops import baseline as baselines
from vlad_tui.ops.monitor import Crossings, Sample, evaluate, finding_to_dict
from vlad_tui.ops.recording import Recording, summarize
from vlad_tui.ops.sampler import Sampler
from vlad_tui.runbook import model
from vlad_tui.runbook.events import MonitorSampled
from vlad_tui.runbook.operations.context import Operation, StepContext

SUMMARY_ARTIFACT = "monitor_summary"


async def _monitor(ctx: StepContext) -> None:
    interval = float(ctx.params.get("interval") or ctx.config.monitor.interval)
    duration = ctx.params.get("duration")
    journal = Journal(ctx.config.journal_dir)
    deploy_step = model.step_with_role("deploy").id
    deploy = await asyncio.to_thread(baselines.last_deploy, journal, ctx.target.name, deploy_step)
    recording = await asyncio.to_thread(Recording.open, ctx.config, ctx.target)
    sampler = Sampler(ctx.config, ctx.target, ctx.transport, database_url=ctx.database_url)
    baseline = baselines.before_deploy(recording, deploy)
    ctx.output(
        f"monitoring {ctx.target.name} every {interval:g} s (recorded in {recording.path.name}); "
        + (f"baseline: {baseline.note}" if baseline else "baseline: the first samples")
    )
    first: list[Sample] = []
    taken = gaps = empty = 0
    since = time.time()
    started = time.monotonic()
    crossings = Crossings()
    stopped = "the duration ran out"
    try:
        while True:
            t0 = time.monotonic()
            sample = await sampler.sample()
            taken += 1
            fresh = baseline is None or baseline.source == "session_start"
            if fresh and len(first) < baselines.BASELINE_SAMPLES:
                first.append(sample)
                baseline = baselines.session_start(first, deploy)
            base = baseline.sample if baseline else None
            findings = tuple(evaluate(sample, base, ctx.config.monitor))
            clock = datetime.fromtimestamp(sample.ts).strftime("%H:%M:%S")
            gaps += bool(sample.failures)
            empty += _nothing(sample)
            for failure in sample.failures:
                ctx.output(f"{clock} gap: {failure}", "stderr")
            for f in crossings.update(findings):
                ctx.record("monitor_threshold", **finding_to_dict(f), sample_ts=sample.ts)
                ctx.output(f"{clock} {f.level}: {f.metric}: {f.text}", "stderr")
            await asyncio.to_thread(recording.append, sample, findings, run_id=ctx.run_id)
            ctx.emit(MonitorSampled(sample, findings, base, baseline.note if baseline else ""))
            if duration is not None and time.monotonic() - started >= float(duration):
                break
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))
    except asyncio.CancelledError:
        stopped = "stopped by the operator"
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # stopping is how monitoring ends: the step finishes below
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(sampler.close())
    if sampler.log_offsets():  # the next daily check reads the error logs on from here
        await asyncio.to_thread(recording.save_log_offsets, sampler.log_offsets(), time.time())
    try:
        recorded = await asyncio.to_thread(recording.between, since, time.time())
        summary = summarize([r for r in recorded if r.run_id == ctx.run_id])
    finally:
        await asyncio.to_thread(recording.close)
    ctx.artifact(
        SUMMARY_ARTIFACT,
        **summary,
        stopped=stopped,
        baseline=baseline.note if baseline else "",
        baseline_source=baseline.source if baseline else "none",
        taken=taken,
    )
    ctx.output(
        f"monitoring ended ({stopped}): {taken} sample(s), {gaps} with a gap, "
        f"{len(summary['crossings'])} threshold crossing(s)"
    )
    if not taken:
        raise VladError("no sample was taken")
    if empty == taken:
        raise VladError("no part of any sample could be read (see the gaps above)")


def _nothing(sample: Sample) -> bool:
    return sample.app is None and not sample.workers and sample.db is None


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "monitor": Operation(_monitor, read_only=True),
}
