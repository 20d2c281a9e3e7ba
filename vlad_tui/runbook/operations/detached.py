"""Run a step's long remote command as a detached job, or re-attach to the one it started."""

from __future__ import annotations

import time
from collections.abc import Mapping

from vlad_tui.ops import jobs as job_ops
from vlad_tui.runbook.operations.context import StepContext


async def run_detached(
    ctx: StepContext, label: str, command: str, *, secrets: Mapping[str, str] | None = None
) -> int:
    """Start ``command`` as a detached job on the target and follow it; its exit status.

    The job is journaled (``detached_job``) before it is launched and its end
    (``detached_job_end``) once known, so the engine never starts it twice: when it hands the
    step a job to re-attach to (``ctx.params["resume_job"]``), this follows that job instead,
    from the last byte of output already shown. ``ctx.exit_status`` is the job's own.
    Raises :class:`~vlad_tui.ops.jobs.JobError` subclasses (the step fails, the job stays
    known while it may run).
    """
    resume = ctx.params.get(job_ops.RESUME_PARAM)
    if isinstance(resume, Mapping):
        job = job_ops.from_artifact(resume, offset=int(resume.get("offset") or 0))
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started_at))
        ctx.output(
            f"re-attaching to {job.label or 'the job'} started {when} ({job.job_dir}); "
            "it is not started again"
        )
        if job.offset:
            ctx.output(f"(its first {job.offset} bytes of output are in the log above)")
    else:
        job = job_ops.new_job(label, ctx.target.jobs_dir)
        ctx.artifact(job_ops.JOB_ARTIFACT, **job_ops.to_artifact(job))
        try:
            await job_ops.start(
                ctx.transport,
                job,
                command,
                secrets=secrets,
                keep_days=ctx.config.project.jobs_keep_days,
            )
        except job_ops.JobNotStarted:
            ctx.artifact(job_ops.END_ARTIFACT, job_id=job.job_id, started=False)
            raise
        ctx.output(f"{label}: running detached on the server in {job.job_dir}")

    def offset(value: int) -> None:
        ctx.record("job_offset", job_id=job.job_id, offset=value)

    def retry(attempt: int, delay: float, exc: Exception) -> None:
        ctx.output(
            f"lost the connection ({exc}); re-attaching in {delay:g}s (attempt {attempt})",
            "stderr",
        )

    status = await job_ops.attach(
        ctx.transport, job, sink=ctx.sink, on_offset=offset, on_retry=retry
    )
    ctx.artifact(job_ops.END_ARTIFACT, job_id=job.job_id, exit_status=status)
    ctx.exit_status = status
    if ctx.params.get(job_ops.RESUME_PARAM):
        ctx.output(f"{job.label or 'the job'} ended with exit status {status}")
    return status
