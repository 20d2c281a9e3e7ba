"""Render a journaled run as Markdown or JSON (``vlad-tui report RUN_ID``); always scrubbed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vlad_tui import format as fmt
from vlad_tui import redact
from vlad_tui.journal import RunRecord
from vlad_tui.runbook import model

FORMATS = ("md", "json")
#: The artifact the monitor step leaves (its own section, not the generic artifact list).
MONITOR_SUMMARY = "monitor_summary"
#: Statuses whose log tail the report includes.
TAIL_STATUSES = frozenset({"failed", "interrupted"})
TAIL_LINES = 40


@dataclass
class StepReport:
    """One step as the report shows it (its last attempt)."""

    id: str
    title: str = ""
    command: str | None = None
    status: str = "pending"
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    exit_status: int | None = None
    error: str | None = None
    attempts: int = 0
    log_tail: list[str] = field(default_factory=list)


def render_report(
    record: RunRecord, fmt: str = "md", *, daily_checks: list[dict[str, Any]] | None = None
) -> str:
    """The run as ``md`` (Markdown) or ``json``; every known secret is scrubbed.

    ``daily_checks``: the rounds of ``vlad-tui check`` journaled for this run's deploy
    (:func:`daily_checks_of`), listed at the end."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    document = build_document(record)
    document["daily_checks_of_this_deploy"] = daily_checks or []
    if fmt == "json":
        return json.dumps(redact.scrub_obj(document), indent=2, ensure_ascii=False) + "\n"
    return redact.scrub(_markdown(document))


def collect_steps(record: RunRecord) -> list[StepReport]:
    """The run's steps in the order they first started, from the events and step logs."""
    steps: dict[str, StepReport] = {}
    for event in record.events:
        step_id = event.get("step")
        if not isinstance(step_id, str):
            continue
        kind = event["kind"]
        if kind == "step_started":
            step = steps.setdefault(step_id, StepReport(id=step_id))
            step.attempts += 1
            step.title = str(event.get("title") or step.title)
            step.command = event.get("command")
            step.started_at = event.get("ts")
            step.finished_at = step.duration = step.exit_status = step.error = None
        elif kind in ("step_finished", "step_status"):
            step = steps.setdefault(step_id, StepReport(id=step_id))
            if kind == "step_finished":
                step.finished_at = event.get("ts")
                step.exit_status = event.get("exit_status")
                step.error = event.get("error")
                step.duration = event.get("duration")
                if step.duration is None and step.started_at and step.finished_at:
                    step.duration = step.finished_at - step.started_at
    for step_id, status in record.summary.steps.items():
        step = steps.setdefault(step_id, StepReport(id=step_id))
        step.status = status
    for step in steps.values():
        if step.status in TAIL_STATUSES:
            step.log_tail = record.step_log(step.id)[-TAIL_LINES:]
    return list(steps.values())


def build_document(record: RunRecord) -> dict[str, Any]:
    """The report as plain data (what the JSON format prints)."""
    summary = record.summary
    confirmations = [
        {
            "at": _iso(e.get("ts")),
            "step": e.get("step"),
            "operator": e.get("operator"),
            "needed": e.get("needed") is not False,
            "reason": e.get("reason"),
            "prompt": e.get("prompt"),
            "typed": e.get("typed"),
            "accepted": bool(e.get("accepted")),
        }
        for e in record.events_of("confirmation")
    ]
    artifacts = [
        {
            "at": _iso(e.get("ts")),
            "step": e.get("step"),
            "kind": e.get("artifact"),
            "data": e.get("data") if isinstance(e.get("data"), dict) else {},
        }
        for e in record.events_of("artifact")
    ]
    resumed = [
        {"at": _iso(e.get("ts")), "operator": e.get("operator")}
        for e in record.events_of("run_resumed")
    ]
    return {
        "run_id": summary.run_id,
        "target": summary.target,
        "operator": summary.operator,
        "started_at": _iso(summary.started_at),
        "finished_at": _iso(summary.finished_at),
        "duration": summary.duration,
        "status": summary.status,
        "unfinished": summary.unfinished,
        "meta": summary.meta,
        "resumed": resumed,
        "steps": [
            {
                "id": s.id,
                "title": s.title,
                "command": s.command,
                "status": s.status,
                "started_at": _iso(s.started_at),
                "duration": s.duration,
                "exit_status": s.exit_status,
                "error": s.error,
                "attempts": s.attempts,
                "log_tail": s.log_tail,
            }
            for s in collect_steps(record)
        ],
        "confirmations": confirmations,
        "artifacts": artifacts,
        "monitoring": [
            {"at": a["at"], "step": a["step"], **a["data"]}
            for a in artifacts
            if a["kind"] == MONITOR_SUMMARY
        ],
        "daily_check": [
            {"at": _iso(e.get("ts")), **{k: v for k, v in e.items() if k not in ("ts", "kind")}}
            for e in record.events_of("monitor_check")
        ],
        "deploy": deploy_summary(artifacts),
    }


def _last(artifacts: list[dict[str, Any]], kind: str, step: str | None = None) -> dict[str, Any]:
    for a in reversed(artifacts):
        if a["kind"] == kind and step in (None, a["step"]):
            return dict(a["data"])
    return {}


def deploy_summary(artifacts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deploy at a glance: releases, migrations applied, downtime figures, the gate's
    result; ``None`` when the run built and deployed nothing. Only what was recorded."""
    release = _last(artifacts, "release", model.step_with_role("build").id)
    deploy = _last(artifacts, "deploy", model.step_with_role("deploy").id)
    migrate = _last(artifacts, "migrate", model.step_with_role("migrate").id)
    gate = _last(artifacts, "post_deploy_gate")
    if not (release or deploy or migrate):
        return None
    probe = deploy.get("probe") if isinstance(deploy.get("probe"), dict) else {}
    return {
        "release_built": release.get("id"),
        "release_source": release.get("source_text"),
        "release_deployed": deploy.get("release"),
        "previous": deploy.get("previous"),
        "mode": deploy.get("mode"),
        "deploy_seconds": deploy.get("seconds"),
        "probes_sent": probe.get("sent"),
        "failed_probes": probe.get("failed", deploy.get("failed_probes")),
        "longest_gap_s": probe.get("longest_gap"),
        "migrations_applied": migrate.get("applied"),
        "migrations_failed": migrate.get("failed"),
        "gate_ok": gate.get("ok"),
        "gate_failed": [c.get("name") for c in gate.get("checks") or () if not c.get("ok")]
        if gate
        else None,
    }


def daily_checks_of(journal: Any, run_id: str) -> list[dict[str, Any]]:
    """The daily check rounds journaled for the deploy of run ``run_id``, oldest first:
    ``{run_id, at, level, breached}``."""
    found = []
    for summary in journal.list_runs():
        if summary.meta.get("kind") != "daily_check" or summary.meta.get("deploy_run") != run_id:
            continue
        try:
            events = journal.load(summary.run_id).events_of("monitor_check")
        except (OSError, ValueError, KeyError):
            continue
        for e in events:
            breached = [b.get("metric") for b in e.get("breached") or () if isinstance(b, dict)]
            found.append(
                {
                    "run_id": summary.run_id,
                    "at": _iso(e.get("ts")),
                    "level": e.get("level"),
                    "breached": breached,
                }
            )
    return sorted(found, key=lambda c: c["at"] or "")


def _markdown(doc: dict[str, Any]) -> str:
    status = "unfinished (no run_finished event)" if doc["unfinished"] else doc["status"]
    out = [
        f"# Run {doc['run_id']}",
        "",
        "| | |",
        "|---|---|",
        f"| Target | {_cell(doc['target'])} |",
        f"| Operator | {_cell(doc['operator'])} |",
        f"| Started | {_cell(_human(doc['started_at']))} |",
        f"| Finished | {_cell(_human(doc['finished_at']))} |",
        f"| Duration | {_duration(doc['duration'])} |",
        f"| Status | **{_cell(status)}** |",
    ]
    for item in doc["resumed"]:
        out.append(f"| Resumed | {_cell(_human(item['at']))} by {_cell(item['operator'])} |")
    for key, value in doc["meta"].items():
        out.append(f"| {_cell(key)} | {_cell(fmt.field(str(key), value))} |")

    out += ["", "## Steps", ""]
    if doc["steps"]:
        out += ["| Step | Title | Status | Duration | Exit | Error |", "|---|---|---|---|---|---|"]
        for s in doc["steps"]:
            attempts = f" ({s['attempts']} attempts)" if s["attempts"] > 1 else ""
            exit_status = "" if s["exit_status"] is None else str(s["exit_status"])
            out.append(
                f"| `{_cell(s['id'])}` | {_cell(s['title'])} | {_cell(s['status'])}{attempts} "
                f"| {_duration(s['duration'])} | {exit_status} | {_cell(s['error'] or '')} |"
            )
    else:
        out.append("No steps ran.")

    deploy = doc.get("deploy")
    if deploy:
        out += ["", "## Deploy", "", "| | |", "|---|---|"]
        labels = (
            ("release_built", "Release built (Phase 2)"),
            ("release_source", "Built from"),
            ("release_deployed", "Release deployed"),
            ("previous", "Replaced (kept on disk)"),
            ("mode", "pm2 mode"),
            ("deploy_seconds", "Deploy step wall time (s)"),
            ("probes_sent", "Health probes during the deploy"),
            ("failed_probes", "Failed health probes"),
            ("longest_gap_s", "Longest gap between good probes (s)"),
            ("migrations_applied", "Migrations applied"),
            ("migrations_failed", "Migrations failed"),
            ("gate_ok", "Post-deploy gate passed"),
            ("gate_failed", "Post-deploy checks failed"),
        )
        for key, label in labels:
            value = deploy.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) or "none"
            out.append(f"| {label} | {_cell(value)} |")

    out += ["", "## Confirmations", ""]
    if doc["confirmations"]:
        out += [
            "| Time | Step | Operator | Prompt | Typed | Accepted |",
            "|---|---|---|---|---|---|",
        ]
        for c in doc["confirmations"]:
            if not c["needed"]:
                prompt = f"not needed: {fmt.value(c['reason'])}"
                typed, verdict = fmt.ABSENT, "not asked"
            else:
                prompt, typed = c["prompt"], f"`{_cell(c['typed'])}`"
                verdict = "yes" if c["accepted"] else "no"
            out.append(
                f"| {_cell(_human(c['at']))} | `{_cell(c['step'])}` | {_cell(c['operator'])} "
                f"| {_cell(prompt)} | {typed} | {verdict} |"
            )
    else:
        out.append("None.")

    out += ["", "## Artifacts", ""]
    listed = [a for a in doc["artifacts"] if a["kind"] != MONITOR_SUMMARY]
    if listed:
        for a in listed:
            out.append(f"- **{_cell(a['kind'])}** (step `{_cell(a['step'])}`)")
            for key, value in a["data"].items():
                out.append(f"  - {_cell(key)}: `{_cell(fmt.field(str(key), value))}`")
    else:
        out.append("None.")

    for m in doc["monitoring"]:
        out += ["", f"## Monitoring (step `{_cell(m.get('step'))}`)", ""]
        out += _monitoring(m)
    for c in doc["daily_check"]:
        out += ["", f"## Daily check ({_cell(_human(c.get('at')))})", ""]
        out += _daily_check(c)
    if doc.get("daily_checks_of_this_deploy"):
        out += ["", "## Daily checks of this deploy", ""]
        out += ["| Time | Run | Level | Breached |", "|---|---|---|---|"]
        for c in doc["daily_checks_of_this_deploy"]:
            out.append(
                f"| {_cell(_human(c['at']))} | `{_cell(c['run_id'])}` | {_cell(c['level'])} "
                f"| {_cell(', '.join(map(str, c['breached'])) or 'none')} |"
            )

    tails = [s for s in doc["steps"] if s["log_tail"]]
    if tails:
        out += ["", "## Logs of failed steps"]
        for s in tails:
            out += ["", f"### `{s['id']}` {_cell(s['title'])} ({s['status']})", ""]
            if s["command"]:
                out += [f"Command: `{_cell(s['command'])}`", ""]
            out += _fenced(s["log_tail"])
    return "\n".join(out) + "\n"


def _monitoring(m: dict[str, Any]) -> list[str]:
    out = [
        f"{m.get('samples', 0)} sample(s) from {_cell(_human(_iso(m.get('from'))))} to "
        f"{_cell(_human(_iso(m.get('to'))))}, {m.get('gaps', 0)} with a gap; "
        f"{_cell(m.get('stopped') or '')}. Baseline: {_cell(m.get('baseline') or 'none')}.",
        "",
    ]
    out += _metrics_table(m.get("metrics"))
    crossings = m.get("crossings") or []
    out += ["", "Thresholds crossed:" if crossings else "No threshold crossed."]
    for c in crossings:
        out.append(
            f"- {_cell(_human(_iso(c.get('ts'))))} **{_cell(c.get('level'))}** "
            f"{_cell(c.get('metric'))}: {_cell(c.get('text'))}"
        )
    return out


def _metrics_table(metrics: Any) -> list[str]:
    if not isinstance(metrics, dict) or not metrics:
        return ["No figures recorded."]
    out = ["| Metric | Min | Median | Max |", "|---|---|---|---|"]
    for name, v in metrics.items():
        if isinstance(v, dict):
            out.append(
                f"| {_cell(name)} | {_cell(v.get('min'))} | {_cell(v.get('median'))} "
                f"| {_cell(v.get('max'))} |"
            )
    return out


def _daily_check(c: dict[str, Any]) -> list[str]:
    baseline = c.get("baseline") if isinstance(c.get("baseline"), dict) else {}
    out = [
        f"Level **{_cell(c.get('level'))}**. Baseline: {_cell(baseline.get('note') or 'none')}.",
        "",
        "| Metric | Level | Finding |",
        "|---|---|---|",
    ]
    for f in c.get("findings") or ():
        if isinstance(f, dict):
            out.append(
                f"| {_cell(f.get('metric'))} | {_cell(f.get('level'))} | {_cell(f.get('text'))} |"
            )
    out += [f"- gap: {_cell(g)}" for g in c.get("failures") or ()]
    summary = c.get("summary")
    if isinstance(summary, dict):
        out += ["", *_metrics_table(summary.get("metrics"))]
    return out


def _fenced(lines: list[str]) -> list[str]:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}text", *lines, fence]


def _cell(value: Any) -> str:
    """A value safe inside a Markdown table cell or inline code."""
    text = "" if value is None else str(value)
    return text.replace("\r", " ").replace("\n", " ").replace("|", "\\|").replace("`", "'")


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _human(iso: str | None) -> str:
    """Local time with its age (the JSON keeps ISO 8601 UTC)."""
    if not iso:
        return fmt.ABSENT
    return fmt.when(datetime.fromisoformat(iso).timestamp())


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
