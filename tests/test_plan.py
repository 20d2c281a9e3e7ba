"""Sanity of the plan as data: ids, needs, destructive steps, checklist, no `migrate reset`."""

from __future__ import annotations

import ast
import inspect
from typing import get_args

from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model, operations
from vlad_tui.runbook.model import ACTIONS, CHECKLIST, PLAN


def test_phases_in_order_with_rollback_last() -> None:
    assert [p.number for p in PLAN] == [1, 2, 3, 4, 0]
    assert [p.title for p in PLAN] == [
        "1 Preparación",
        "2 Testing en staging",
        "3 Producción",
        "4 Monitoreo",
        "Rollback",
    ]
    assert model.phase(0).title == "Rollback"


def test_step_ids_unique_file_safe_and_in_their_phase() -> None:
    ids = [s.id for s in model.all_steps()]
    assert len(ids) == len(set(ids))
    for p in PLAN:
        for s in p.steps:
            assert s.phase == p.number
            assert model.step(s.id) is s
    for s in ids:
        assert s.replace(".", "").replace("_", "").isalnum(), s


def test_needs_refer_to_earlier_steps_of_the_same_phase() -> None:
    for p in PLAN:
        seen: set[str] = set()
        for s in p.steps:
            for need in s.needs:
                assert need in seen, f"{s.id} needs {need}, not an earlier step of phase {p.number}"
            seen.add(s.id)


def test_a_step_is_available_exactly_when_its_operation_is_registered() -> None:
    for s in model.all_steps():
        registered = s.operation in operations.OPERATIONS
        assert gates.available(s, operations.OPERATIONS) is registered, s.id
        if not registered:
            # Unavailable steps say what they would do, to the operator, not to us.
            assert s.description, s.id
            reason = gates.gate(s, gates.RunState({}, operations.OPERATIONS)).text
            assert reason.startswith("this version of vlad-tui does not run this step"), s.id
            assert "issue" not in reason, s.id


def test_destructive_available_steps_have_describe() -> None:
    destructive = [
        s for s in model.all_steps() if s.destructive and gates.available(s, operations.OPERATIONS)
    ]
    assert {s.id for s in destructive} >= {
        "cmd.pm2_stop",
        "cmd.pm2_restart",
        "cmd.lock_break",
        "p1.staging_db",
        "p1.staging_restore",
    }
    for s in destructive:
        assert operations.OPERATIONS[s.operation].describe is not None, s.id


def test_production_and_rollback_data_changes_are_destructive() -> None:
    for step_id in ("p3.migrate", "p3.deploy", "rb.restore", "rb.swap", "rb.code", "cmd.pm2_stop"):
        assert model.step(step_id).destructive, step_id
    assert all(s.production_gate for s in model.phase(3).steps)
    assert not any(s.production_gate for p in PLAN if p.number != 3 for s in p.steps)


def test_checklist_items_unique_and_auto_items_have_a_step() -> None:
    ids = [i.id for i in CHECKLIST]
    assert len(ids) == len(set(ids))
    satisfied = {item for s in model.all_steps() for item in s.satisfies}
    assert satisfied <= set(ids)
    for item in CHECKLIST:
        if not item.manual:
            assert item.id in satisfied, f"auto item {item.id} is ticked by no step"
    texts = {i.text for i in CHECKLIST}
    for wording in (
        "Backup completo de producción creado",
        "Login del dashboard",
        "Creación de medallas virgin",
        "Generación de QR codes",
        "Gestión de partners",
        "API endpoints principales",
        "La aplicación responde correctamente",
        "Sin pérdida de datos",
    ):
        assert wording in texts


def _code_strings(module: object) -> list[str]:
    """Every string literal in a module's code, docstrings excluded."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_step_can_send_migrate_reset_or_db_pull() -> None:
    # The plan's rollback runs `prisma migrate reset --force` (destroys all data) and uses
    # `prisma db pull --force` as a connectivity check (overwrites schema.prisma).
    from vlad_tui.ops import (
        backup,
        health,
        integrity,
        lint,
        lock,
        logs,
        migrations,
        smoke,
        staging,
        staging_app,
    )

    modules = (operations, health, lock, logs, migrations, backup, staging, staging_app, smoke)
    strings = [s for m in (*modules, lint, integrity) for s in _code_strings(m)]
    assert any("pm2" in s for s in strings)  # the scan sees real command strings
    for text in strings:
        assert "migrate reset" not in text
        assert "db pull" not in text
    for s in model.all_steps():
        assert "reset" not in s.operation
    assert "migrate reset" in (model.__doc__ or "")  # the why is written down
    assert "db pull" in (operations.OPERATIONS["connectivity"].run.__doc__ or "")


def test_palette_actions_are_outside_the_phases() -> None:
    assert all(a.phase == -1 for a in ACTIONS)
    assert {a.operation for a in ACTIONS} >= {
        "pm2_status",
        "pm2_logs",
        "pm2_show",
        "pm2_restart",
        "migration_status",
        "connectivity",
    }


def test_phase_1_and_2_steps_are_wired() -> None:
    for number in (1, 2):
        for s in model.phase(number).steps:
            assert s.operation in operations.OPERATIONS, s.id
            assert operations.OPERATIONS[s.operation].run.__doc__, s.operation
    for step_id in ("p3.backup", "p3.verify_backup", "p3.integrity", "p4.endpoints"):
        assert model.step(step_id).operation in operations.OPERATIONS, step_id
    # The production snapshot comes before the backup the staging clone is restored from.
    p1 = [s.id for s in model.phase(1).steps]
    assert p1.index("p1.snapshot") < p1.index("p1.backup") < p1.index("p1.staging_restore")
    assert [s.id for s in model.phase(1).steps if s.optional] == ["p1.offbox"]


def test_phase2_cleans_up_its_staging_instance() -> None:
    phase2 = model.phase(2)
    assert phase2.cleanup == ("p2.stop",)
    stop = model.step("p2.stop")
    assert stop.needs == () and stop.resets == ("p2.start", "p2.smoke")
    assert [s.id for s in phase2.steps][-1] == "p2.stop"
    for p in PLAN:
        for step_id in p.cleanup:
            assert model.step(step_id).phase == p.number
    # Manual critical-feature items are waited for by a step of the same phase.
    assert model.step("p2.features").operation == "manual_checks"
    assert {i.id for i in CHECKLIST if i.phase == 2 and i.manual} == {
        "p2.login",
        "p2.virgin_medals",
        "p2.qr_codes",
        "p2.partners",
        "p2.api",
    }


def test_acknowledgement_subjects() -> None:
    assert model.step("p3.migrate").acknowledge == ("lint",)
    for s in model.all_steps():
        assert set(s.acknowledge) <= set(gates.ACK_SUBJECTS), s.id


def test_each_role_is_played_by_exactly_one_step() -> None:
    roles = [s.role for s in model.all_steps() if s.role is not None]
    assert sorted(roles) == sorted(get_args(model.StepRole))
    expected = {
        "lock": "p3.lock",
        "build": "p2.build",
        "migrate": "p3.migrate",
        "deploy": "p3.deploy",
        "monitor": "p4.metrics",
    }
    for role, step_id in expected.items():
        assert model.step_with_role(role).id == step_id  # type: ignore[arg-type]
    assert model.step_with_role("monitor").operation == "monitor"


def test_what_is_left_half_done_is_said_of_destructive_steps_only() -> None:
    half_done = {s.id for s in model.all_steps() if s.half_done}
    assert half_done == {"p3.migrate", "p3.deploy", "rb.restore", "rb.swap", "rb.code"}
    assert all(model.step(step_id).destructive for step_id in half_done)


def test_the_palette_offers_actions_only_each_once() -> None:
    offered = [s for s in model.all_steps() if s.palette is not None]
    assert offered and all(s.phase == -1 for s in offered)
    names = [s.palette.name for s in offered if s.palette]
    assert len(names) == len(set(names))
    assert [s.id for s in offered if s.palette and s.palette.lines] == ["cmd.pm2_logs"]
    assert "{lines}" in model.step("cmd.pm2_logs").palette.name  # type: ignore[union-attr]
