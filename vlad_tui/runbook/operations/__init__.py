"""The operations behind the plan's steps, keyed by :attr:`Step.operation`.

An :class:`Operation` is an async callable ``(ctx) -> None`` that raises
:class:`~vlad_tui.errors.VladError` on failure, streams output through ``ctx.output`` (or passes
``ctx.sink`` to ``transport.run``) and records artifacts with ``ctx.artifact``. A destructive
operation also has ``describe(ctx) -> ConfirmRequest | None`` (sync or async): exactly the
commands it will run, where, and what cannot be undone; the engine shows it and waits for the
typed target name before running. ``None`` means "nothing destructive this time" (e.g. the staging
database does not exist yet, so creating it drops nothing): the step runs without asking, and
``ctx.state["confirmed"]`` stays unset.

The artifact kinds other parts rely on, and their fields, are typed in
:mod:`vlad_tui.runbook.artifacts`.

A step is available exactly when its operation is registered here; steps of the plan whose
operation this version does not have are shown as unavailable and never run. Look-ups are
registered ``read_only``: they run beside any other step, while steps that change something
never overlap each other.
"""

from __future__ import annotations

from vlad_tui.runbook.operations.backup import _backup, _backup_offbox, _verify_backup
from vlad_tui.runbook.operations.checks import _connectivity, _facts, _health
from vlad_tui.runbook.operations.context import (
    ConfirmFn,
    ConfirmRequest,
    Describe,
    Operation,
    StepContext,
)
from vlad_tui.runbook.operations.deploy import (
    _backup_fresh,
    _deploy,
    _deploy_describe,
    _deploy_logs,
    _migrate,
    _migrate_describe,
    _post_deploy_gate,
    _validate_schema,
    _verify_state,
)
from vlad_tui.runbook.operations.housekeeping import (
    _kept_drop,
    _kept_drop_describe,
    _release_remove,
    _release_remove_describe,
    _releases_list,
    _rollback_kept,
)
from vlad_tui.runbook.operations.integrity import _integrity_compare, _integrity_snapshot
from vlad_tui.runbook.operations.lock import (
    _lock_acquire,
    _lock_break,
    _lock_break_describe,
    _lock_release,
    _lock_status,
)
from vlad_tui.runbook.operations.migrations import _migration_lint, _migration_status
from vlad_tui.runbook.operations.monitor import _monitor
from vlad_tui.runbook.operations.pm2 import (
    _log_errors,
    _pm2_action,
    _pm2_logs,
    _pm2_show,
    _pm2_status,
)
from vlad_tui.runbook.operations.release import _release_build, _release_check
from vlad_tui.runbook.operations.rollback import (
    _rollback_code,
    _rollback_code_describe,
    _rollback_pick,
    _rollback_preflight,
    _rollback_report,
    _rollback_restore,
    _rollback_restore_describe,
    _rollback_swap,
    _rollback_swap_describe,
    _rollback_verify,
)
from vlad_tui.runbook.operations.smoke import _smoke_checks, _staging_smoke_checks
from vlad_tui.runbook.operations.staging import (
    _staging_create,
    _staging_create_describe,
    _staging_integrity,
    _staging_migrate,
    _staging_migration_status,
    _staging_restore,
    _staging_restore_describe,
    _staging_snapshot,
)
from vlad_tui.runbook.operations.staging_app import (
    _manual_checks,
    _staging_start,
    _staging_stop,
)

__all__ = ["OPERATIONS", "ConfirmFn", "ConfirmRequest", "Describe", "Operation", "StepContext"]


OPERATIONS: dict[str, Operation] = {
    "connectivity": Operation(_connectivity, read_only=True),
    "facts": Operation(_facts, read_only=True),
    "migration_status": Operation(_migration_status, read_only=True),
    "pm2_status": Operation(_pm2_status, read_only=True),
    "pm2_logs": Operation(_pm2_logs, read_only=True),
    "pm2_show": Operation(_pm2_show, read_only=True),
    "pm2_restart": _pm2_action("restart"),
    "pm2_reload": _pm2_action("reload"),
    "pm2_stop": _pm2_action("stop"),
    "pm2_start": _pm2_action("start"),
    "log_errors": Operation(_log_errors, read_only=True),
    "health": Operation(_health, read_only=True),
    "lock_acquire": Operation(_lock_acquire),
    "lock_release": Operation(_lock_release),
    "lock_status": Operation(_lock_status, read_only=True),
    "lock_break": Operation(_lock_break, _lock_break_describe),
    "backup": Operation(_backup),
    "verify_backup": Operation(_verify_backup, read_only=True),
    "backup_offbox": Operation(_backup_offbox),
    "migration_lint": Operation(_migration_lint, read_only=True),
    "integrity_snapshot": Operation(_integrity_snapshot, read_only=True),
    "staging_create": Operation(_staging_create, _staging_create_describe),
    "staging_restore": Operation(_staging_restore, _staging_restore_describe),
    "staging_snapshot": Operation(_staging_snapshot, read_only=True),
    "staging_migration_status": Operation(_staging_migration_status, read_only=True),
    "staging_migrate": Operation(_staging_migrate),
    "release_build": Operation(_release_build),
    "staging_start": Operation(_staging_start),
    "staging_smoke_checks": Operation(_staging_smoke_checks, read_only=True),
    "smoke_checks": Operation(_smoke_checks, read_only=True),
    "manual_checks": Operation(_manual_checks),
    "staging_integrity": Operation(_staging_integrity, read_only=True),
    "staging_stop": Operation(_staging_stop),
    "integrity_compare": Operation(_integrity_compare, read_only=True),
    "monitor": Operation(_monitor, read_only=True),
    # Only journals the choice: it changes nothing on the target (runs beside an open job).
    "rollback_pick": Operation(_rollback_pick, read_only=True),
    "rollback_preflight": Operation(_rollback_preflight, read_only=True),
    "rollback_restore": Operation(_rollback_restore, _rollback_restore_describe),
    "rollback_verify": Operation(_rollback_verify, read_only=True),
    "rollback_swap": Operation(_rollback_swap, _rollback_swap_describe),
    "rollback_code": Operation(_rollback_code, _rollback_code_describe),
    "rollback_report": Operation(_rollback_report, read_only=True),
    "rollback_kept": Operation(_rollback_kept, read_only=True),
    "releases_list": Operation(_releases_list, read_only=True),
    "kept_drop": Operation(_kept_drop, _kept_drop_describe),
    "release_remove": Operation(_release_remove, _release_remove_describe),
    "backup_fresh": Operation(_backup_fresh),
    "verify_state": Operation(_verify_state, read_only=True),
    "validate_schema": Operation(_validate_schema, read_only=True),
    "migrate": Operation(_migrate, _migrate_describe),
    "release_check": Operation(_release_check, read_only=True),
    "deploy": Operation(_deploy, _deploy_describe),
    "post_deploy_gate": Operation(_post_deploy_gate, read_only=True),
    "deploy_logs": Operation(_deploy_logs, read_only=True),
}
