"""The monitoring baseline and the headless daily check (``vlad-tui check``, days 2–7).

The baseline is the newest samples recorded before the last deploy journaled for the target
(a ``p3.deploy`` step that ended ok); without one (or with nothing recorded before it), the
first samples of the session. :attr:`Baseline.note` says which, for the screen and the journal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.errors import VladError
from vlad_tui.journal import Journal
from vlad_tui.ops.monitor import (
    Finding,
    Sample,
    evaluate,
    finding_to_dict,
    merge,
    sample_to_dict,
    worst,
)
from vlad_tui.ops.recording import Recording, summarize
from vlad_tui.ops.sampler import Sampler
from vlad_tui.transport.base import Transport

#: Samples merged into a baseline.
BASELINE_SAMPLES = 5
#: Samples in one daily check round (two at least: the cache hit ratio is between two).
CHECK_SAMPLES = 3
DAILY_CHECK = "daily_check"


@dataclass(frozen=True)
class Deploy:
    run_id: str
    ts: float


@dataclass(frozen=True)
class Baseline:
    sample: Sample | None
    #: ``"before_deploy"``, ``"session_start"`` or ``"none"``.
    source: str
    note: str
    deploy: Deploy | None = None


def last_deploy(journal: Journal, target: str, deploy_step: str) -> Deploy | None:
    """The newest run of ``deploy_step`` (the plan's deploy step) that ended ok in the journal
    for ``target``."""
    best: Deploy | None = None
    for summary in journal.list_runs():
        if summary.target != target or summary.steps.get(deploy_step) not in ("ok",):
            continue
        try:
            record = journal.load(summary.run_id)
        except (OSError, VladError):
            continue
        for event in record.events_of("step_finished"):
            if event.get("step") == deploy_step and event.get("status") == "ok":
                ts = float(event.get("ts") or 0.0)
                if best is None or ts > best.ts:
                    best = Deploy(summary.run_id, ts)
    return best


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def before_deploy(recording: Recording, deploy: Deploy | None) -> Baseline | None:
    """The baseline recorded before ``deploy``, if any was."""
    if deploy is None:
        return None
    found = recording.latest_before(deploy.ts, BASELINE_SAMPLES)
    if not found:
        return None
    sample = merge([r.sample for r in found])
    note = (
        f"{len(found)} sample(s) recorded before the deploy of {_clock(deploy.ts)} "
        f"(run {deploy.run_id})"
    )
    return Baseline(sample, "before_deploy", note, deploy)


def session_start(samples: list[Sample], deploy: Deploy | None = None) -> Baseline:
    """The first samples of this session as the baseline."""
    usable = [s for s in samples if not s.failures] or samples
    sample = merge(usable[:BASELINE_SAMPLES])
    if sample is None:
        return Baseline(None, "none", "no baseline yet", deploy)
    why = (
        f"nothing was recorded before the deploy of {_clock(deploy.ts)}; "
        if deploy is not None
        else "no deploy journaled; "
    )
    return Baseline(
        sample,
        "session_start",
        f"{why}the first sample(s) of this session ({_clock(usable[0].ts)})",
        deploy,
    )


@dataclass
class DailyCheck:
    """One round of samples, evaluated against the recorded baseline."""

    target: str
    samples: list[Sample]
    findings: tuple[Finding, ...]
    baseline: Baseline
    run_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: Error lines read since the error logs were last read (the last check or monitoring
    #: session), and since when; ``None`` when they had not been read before.
    error_lines: int = 0
    errors_since: float | None = None

    @property
    def level(self) -> str:
        return worst(self.findings)

    @property
    def breached(self) -> list[Finding]:
        return [f for f in self.findings if f.level != "ok"]

    @property
    def ok(self) -> bool:
        return not self.breached and not self.failures

    @property
    def failures(self) -> list[str]:
        return [f for s in self.samples[-1:] for f in s.failures]

    def to_dict(self) -> dict[str, Any]:
        last = self.samples[-1] if self.samples else None
        return redact.scrub_obj(
            {
                "run_id": self.run_id,
                "level": self.level,
                "ok": self.ok,
                "breached": [finding_to_dict(f) for f in self.breached],
                "findings": [finding_to_dict(f) for f in self.findings],
                "failures": self.failures,
                "baseline": {
                    "source": self.baseline.source,
                    "note": self.baseline.note,
                    "deploy_run": self.baseline.deploy.run_id if self.baseline.deploy else None,
                },
                "sample": sample_to_dict(last) if last is not None else None,
                "error_lines": self.error_lines,
                "errors_since": self.errors_since,
                "summary": self.summary,
            }
        )

    def render_text(self) -> list[str]:
        lines = [f"monitor    {len(self.samples)} sample(s); baseline: {self.baseline.note}"]
        if self.errors_since is not None:
            lines.append(
                f"errors     {self.error_lines} error line(s) in the app's error logs since "
                f"{_clock(self.errors_since)}"
            )
        for f in self.findings:
            mark = {"ok": "ok", "warning": "WARNING", "critical": "CRITICAL"}[f.level]
            lines.append(f"  {mark:<9}{f.metric:<12} {f.text}")
        lines.extend(f"  GAP      {failure}" for failure in self.failures)
        return [redact.scrub(line) for line in lines]


async def daily_check(
    config: Config,
    target: Target,
    transport: Transport,
    journal: Journal,
    *,
    deploy_step: str,
    samples: int = CHECK_SAMPLES,
    operator: str | None = None,
) -> DailyCheck:
    """Take one round of ``samples`` samples ``[monitor] interval`` apart, evaluate the last
    against the recorded baseline, record them, and journal the round as a daily check of the
    latest run of ``deploy_step`` (a run of its own, ``meta.kind = "daily_check"``)."""
    deploy = await asyncio.to_thread(last_deploy, journal, target.name, deploy_step)
    recording = await asyncio.to_thread(Recording.open, config, target)
    sampler = Sampler(config, target, transport)
    try:
        baseline = before_deploy(recording, deploy)
        if baseline is None:
            kept = await asyncio.to_thread(recording.first, BASELINE_SAMPLES)
            if kept:
                baseline = session_start([r.sample for r in kept], deploy)
                baseline = Baseline(
                    baseline.sample,
                    "first_recorded",
                    f"the first sample(s) recorded ({_clock(kept[0].sample.ts)}); "
                    + ("no deploy journaled" if deploy is None else "none before the deploy"),
                    deploy,
                )
        offsets, since = await asyncio.to_thread(recording.log_offsets)
        sampler.resume_logs(offsets)
        taken: list[Sample] = []
        for i in range(max(1, samples)):
            if i:
                await asyncio.sleep(config.monitor.interval)
            taken.append(await sampler.sample())
        last = taken[-1]
        if since is not None and last.errors is not None:
            # The rate since the logs were last read, not over these few seconds only.
            minutes = max(1.0, (last.ts - since) / 60)
            rate = round(sampler.error_lines / minutes, 3)
            taken[-1] = replace(last, errors=replace(last.errors, per_minute=rate))
        await asyncio.to_thread(recording.save_log_offsets, sampler.log_offsets(), last.ts)
        if baseline is None:
            baseline = Baseline(None, "none", "nothing recorded before: no baseline", deploy)
        findings = tuple(evaluate(taken[-1], baseline.sample, config.monitor))
        run = journal.start_run(
            target.name,
            operator=operator,
            meta={"kind": DAILY_CHECK, "deploy_run": deploy.run_id if deploy else None},
        )
        check = DailyCheck(target.name, taken, findings, baseline, run.run_id)
        check.error_lines, check.errors_since = sampler.error_lines, since
        for s in taken:
            last = s is taken[-1]
            await asyncio.to_thread(
                recording.append, s, findings if last else (), run_id=run.run_id, kind="check"
            )
        check.summary = summarize(await asyncio.to_thread(recording.of_run, run.run_id))
        run.record("monitor_check", **check.to_dict())
        for f in check.breached:
            run.record("monitor_threshold", **finding_to_dict(f), ts_sample=taken[-1].ts)
        run.finish("ok" if check.ok else "failed")
        run.close()
        return check
    finally:
        await sampler.close()
        await asyncio.to_thread(recording.close)


__all__ = [
    "Baseline",
    "DailyCheck",
    "Deploy",
    "before_deploy",
    "daily_check",
    "last_deploy",
    "session_start",
]
