"""What a run leaves changed on the target (asked before quitting), from statuses and artifacts."""

from __future__ import annotations

from vlad_tui.runbook.effects import open_effects

ONLINE = {"processes": [{"name": "backend-vlad", "status": "online"}]}
STOPPED = {"processes": [{"name": "backend-vlad", "status": "stopped"}]}


def test_a_run_that_changed_nothing_leaves_nothing() -> None:
    assert open_effects({}, []) == []
    assert open_effects({"p1.connectivity": "ok"}, [("p1.facts", "pm2", ONLINE)]) == []


def test_app_stopped_until_started_again() -> None:
    stopped = [("rb.stop", "pm2_stop", STOPPED)]
    [effect] = open_effects({"rb.stop": "ok"}, stopped)
    assert "stopped the app (pm2 stop) and has not started it again" in effect
    started = [*stopped, ("rb.start", "pm2_start", ONLINE)]
    assert open_effects({"rb.stop": "ok", "rb.start": "ok"}, started) == []
    # A restart that left nothing online does not count as started.
    failed = [*stopped, ("cmd.pm2_restart", "pm2_restart", STOPPED)]
    assert any("stopped the app" in e for e in open_effects({}, failed))


def test_lock_held_until_released_or_broken() -> None:
    taken = [("p3.lock", "lock", {"holder": "ana", "run_id": "r1"})]
    assert any("holds the deploy lock" in e for e in open_effects({"p3.lock": "ok"}, taken))
    for kind in ("lock_released", "lock_broken"):
        assert open_effects({}, [*taken, ("x", kind, {})]) == []
    # Looking at someone's lock is not holding it.
    assert open_effects({}, [("cmd.lock_status", "lock", {"held": True})]) == []


def test_staging_instance_running_until_stopped() -> None:
    up = [("p2.start", "staging_instance", {"name": "backend-vlad-staging"})]
    assert open_effects({}, up) == ["it started the staging instance and has not stopped it"]
    assert open_effects({}, [*up, ("p2.stop", "staging_instance_stopped", {})]) == []


def test_a_destructive_step_broken_off_is_half_done() -> None:
    [effect] = open_effects({"rb.swap": "interrupted"}, [])
    assert "swap by rename is half done" in effect and "interrupted" in effect
    assert "half done" in open_effects({"rb.swap": "failed"}, [])[0]
    [other] = open_effects({"p1.staging_restore": "interrupted"}, [])
    assert "Restaurar backup de producción en staging" in other
    assert open_effects({"p1.staging_restore": "ok", "rb.swap": "pending"}, []) == []


def test_several_effects_are_all_named() -> None:
    effects = open_effects(
        {"rb.stop": "ok", "p3.lock": "ok"},
        [("p3.lock", "lock", {}), ("rb.stop", "pm2_stop", STOPPED)],
    )
    assert len(effects) == 2


def test_the_quit_question_names_the_effects_and_the_running_step() -> None:
    from vlad_tui.tui.app import quit_prompt

    effect = "it holds the deploy lock and has not released it: nobody else can deploy"
    question, text = quit_prompt("production", busy=False, effects=[effect], run_id="r1")
    assert question == "This run leaves production worse than it found it. Quit anyway?"
    assert text.splitlines() == [f"  • {effect}", "Resume the run (r1) later with --resume."]
    question, text = quit_prompt("production", busy=True, effects=[effect], run_id="r1")
    assert question == "A step is running. Quit anyway?"
    assert "marked interrupted" in text and "also leaves production worse" in text
    assert effect in text
    _, text = quit_prompt("production", busy=True, effects=[], run_id="r1")
    assert "worse" not in text
