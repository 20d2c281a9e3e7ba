"""Pure parts of Phase 3's wiring: the refused-release lock and the report's deploy section."""

from __future__ import annotations

from typing import Any

from vlad_tui.report import deploy_summary
from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model
from vlad_tui.runbook.operations import OPERATIONS
from vlad_tui.runbook.operations.release import stale_release

REFUSED = ("p3.build", "release_refused", {"id": "r1", "why": "source", "changes": "1 changed"})


def _art(step: str, kind: str, **data: Any) -> tuple[str, str, dict[str, Any]]:
    return step, kind, data


def test_a_refusal_locks_until_phase2_builds_and_stages_again() -> None:
    built = _art("p2.build", "release", id="r1")
    staged = _art("p2.start", "staging_instance", release="r1")
    assert stale_release([built, staged]) == ""
    assert "re-run Phase 2" in stale_release([built, staged, REFUSED])
    assert "1 changed" in stale_release([built, staged, REFUSED])
    # Restarting the staging instance alone does not clear it: a new release must be built.
    assert stale_release([built, staged, REFUSED, staged]) != ""
    rebuilt = _art("p2.build", "release", id="r2")
    assert stale_release([built, staged, REFUSED, rebuilt]) != ""
    assert stale_release([built, staged, REFUSED, rebuilt, staged]) == ""


def test_the_override_does_not_lift_a_refused_release_but_unlock_stays_open() -> None:
    state = gates.RunState(
        statuses={"p3.lock": "ok"},
        operations=frozenset(OPERATIONS),
        override="probado en otra máquina",
        stale_release="the source changed since Phase 2 built release r1: re-run Phase 2",
    )
    gate = gates.gate(model.step("p3.deploy"), state)
    assert gate.locked and "re-run Phase 2" in gate.text
    assert gates.gate(model.step("p3.status"), state).locked
    assert gates.gate(model.step("p3.unlock"), state) == gates.OPEN


def test_phase3_steps_are_wired_and_destructive_ones_describe_their_commands() -> None:
    for s in model.phase(3).steps:
        assert s.operation in OPERATIONS, s.id
        if s.destructive:
            assert OPERATIONS[s.operation].describe is not None, s.id
    assert "staging_generate" not in OPERATIONS and "staging_build" not in OPERATIONS
    assert model.step("p2.start").needs == ("p2.build",)
    assert model.step("p3.post_checks").needs == ("p3.deploy",)
    assert model.step("p3.logs").needs == ("p3.deploy",)


def _doc(*arts: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"step": s, "kind": k, "data": d, "at": None} for s, k, d in arts]


def test_the_report_says_only_what_was_recorded_about_the_deploy() -> None:
    assert deploy_summary(_doc(_art("p1.backup", "backup", path="/b"))) is None
    summary = deploy_summary(
        _doc(
            _art("p2.build", "release", id="r1", source_text="git 3f2a1c9b0d1e"),
            _art("p3.migrate", "migrate", applied=["m1", "m2"], failed=[]),
        )
    )
    assert summary is not None
    assert summary["release_built"] == "r1" and summary["migrations_applied"] == ["m1", "m2"]
    assert summary["release_deployed"] is None and summary["failed_probes"] is None
