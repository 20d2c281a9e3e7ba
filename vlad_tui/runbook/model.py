"""The deploy plan (``seed/deploy-plan.es.md``) as data: phases, steps, checklists.

Titles keep the plan's (Spanish) wording. A step names the operation it runs (a key of
:data:`vlad_tui.runbook.operations.OPERATIONS`). A step whose operation is not registered is
unavailable (:func:`vlad_tui.runbook.gate.available`): the UI shows it with its ``description``
and the engine never runs it, so nothing fakes a success.

vlad-tui never sends the plan's rollback command (``npx prisma migrate reset --force``): on a
target it drops the whole schema and re-applies every migration, destroying all data, including
the backup that was just restored (design.md §2.1). The rollback restores a verified backup into
a new database beside production and swaps by renaming instead, keeping the failed database.
Likewise the plan's "connectivity check" ``prisma db pull`` overwrites ``prisma/schema.prisma``
on the server (§2.3); the connectivity step is read-only. :mod:`vlad_tui.runbook.deviations`
lists every such departure for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChecklistGroup = Literal["before", "during", "after", "phase"]

#: What other parts of vlad-tui find a step by, rather than by its id (one step per role).
StepRole = Literal["lock", "build", "migrate", "deploy", "monitor"]


@dataclass(frozen=True)
class ChecklistItem:
    """One checklist line of the plan; ``manual`` items are ticked by the operator."""

    id: str
    text: str
    group: str
    phase: int
    manual: bool


@dataclass(frozen=True)
class PaletteEntry:
    """How the command palette offers an action: its name and help line."""

    name: str
    help: str
    #: Takes the number of log lines typed in the palette: ``{lines}`` in ``name``, passed to
    #: the operation as its ``lines`` parameter.
    lines: bool = False


@dataclass(frozen=True)
class Step:
    """One step of a phase: what it runs, what it needs, what it ticks."""

    id: str
    phase: int
    title: str
    operation: str
    destructive: bool = False
    needs: tuple[str, ...] = ()
    production_gate: bool = False
    satisfies: tuple[str, ...] = ()
    #: What the step does, in a few words (shown when this version cannot run it).
    description: str = ""
    #: Not run by "run the phase" and not needed for the phase to pass (e.g. off-box copy).
    optional: bool = False
    #: Steps whose effect this step undoes (stopping the staging instance undoes starting it):
    #: when it runs while the rest of its phase has not passed, they go back to pending.
    resets: tuple[str, ...] = ()
    #: Acknowledgement subjects (e.g. ``"lint"``) the operator must acknowledge first.
    acknowledge: tuple[str, ...] = ()
    #: What a failed or interrupted run of this destructive step leaves half done (said before
    #: quitting, :mod:`vlad_tui.runbook.effects`); other destructive steps get a general line.
    half_done: str = ""
    #: What other parts find the step by (:func:`step_with_role`): the deploy lock, the build,
    #: the migrations, the deploy, the live monitor.
    role: StepRole | None = None
    #: How the command palette offers this action (palette actions only).
    palette: PaletteEntry | None = None


@dataclass(frozen=True)
class Phase:
    """A phase (1..4) or the rollback (``number == 0``).

    ``cleanup`` steps run when "run the phase" stops early (a step failed, was refused or the
    run was cancelled), e.g. stopping the staging instance of Phase 2.
    """

    number: int
    title: str
    steps: tuple[Step, ...]
    cleanup: tuple[str, ...] = ()


ROLLBACK = 0

# fmt: off
CHECKLIST: tuple[ChecklistItem, ...] = (
    # Checklist de Despliegue — Antes / Durante / Después (shown on every phase screen).
    ChecklistItem("before.backup", "Backup completo de producción creado", "before", 0, False),
    ChecklistItem("before.staging", "Testing en staging completado", "before", 0, False),
    ChecklistItem("before.scripts", "Scripts de despliegue preparados", "before", 0, True),
    ChecklistItem("before.team", "Equipo notificado del mantenimiento", "before", 0, True),
    ChecklistItem("before.window", "Ventana de mantenimiento programada", "before", 0, True),
    ChecklistItem("during.backup_verified", "Backup verificado", "during", 0, False),
    ChecklistItem("during.migrations", "Migraciones aplicadas exitosamente", "during", 0, False),
    ChecklistItem("during.build", "Aplicación construida correctamente", "during", 0, False),
    ChecklistItem("during.deployed", "Aplicación desplegada", "during", 0, False),
    ChecklistItem("during.post_checks", "Verificaciones post-despliegue completadas", "during", 0,
                  False),
    ChecklistItem("after.features", "Funcionalidades críticas verificadas", "after", 0, True),
    ChecklistItem("after.logs", "Logs monitoreados", "after", 0, False),
    ChecklistItem("after.team", "Equipo notificado del éxito", "after", 0, True),
    ChecklistItem("after.docs", "Documentación actualizada", "after", 0, True),
    # 2.2 Verificar Funcionalidades Críticas.
    ChecklistItem("p2.login", "Login del dashboard", "phase", 2, True),
    ChecklistItem("p2.virgin_medals", "Creación de medallas virgin", "phase", 2, True),
    ChecklistItem("p2.qr_codes", "Generación de QR codes", "phase", 2, True),
    ChecklistItem("p2.partners", "Gestión de partners", "phase", 2, True),
    ChecklistItem("p2.api", "API endpoints principales", "phase", 2, True),
    # 4.1 Verificaciones Inmediatas (Primeras 2 horas).
    ChecklistItem("p4.responds", "La aplicación responde correctamente", "phase", 4, False),
    ChecklistItem("p4.endpoints", "Los endpoints críticos funcionan", "phase", 4, False),
    ChecklistItem("p4.no_log_errors", "No hay errores en los logs", "phase", 4, False),
    ChecklistItem("p4.database", "La base de datos está accesible", "phase", 4, False),
    # Criterios de Éxito (shown with the phase 4 checks).
    ChecklistItem("success.migrations", "Todas las migraciones aplicadas exitosamente", "phase",
                  4, False),
    ChecklistItem("success.no_errors", "Aplicación funcionando sin errores", "phase", 4, True),
    ChecklistItem("success.features", "Todas las funcionalidades críticas operativas", "phase",
                  4, True),
    ChecklistItem("success.performance", "Rendimiento dentro de parámetros normales", "phase", 4,
                  True),
    ChecklistItem("success.no_data_loss", "Sin pérdida de datos", "phase", 4, False),
)

PLAN: tuple[Phase, ...] = (
    Phase(1, "1 Preparación", (
        Step("p1.connectivity", 1, "Verificar conexión a la base de datos", "connectivity"),
        Step("p1.facts", 1, "Verificar estado actual del servidor", "facts"),
        # Before the backup: the staging clone restored from it is compared with this snapshot.
        Step("p1.snapshot", 1, "Snapshot de integridad de producción", "integrity_snapshot",
             needs=("p1.connectivity",)),
        Step("p1.backup", 1, "Backup completo de producción", "backup",
             needs=("p1.connectivity",), satisfies=("before.backup",)),
        Step("p1.verify_backup", 1, "Verificar que el backup se creó correctamente",
             "verify_backup", needs=("p1.backup",), satisfies=("during.backup_verified",)),
        Step("p1.offbox", 1, "Copiar el backup fuera del servidor (opcional)", "backup_offbox",
             needs=("p1.verify_backup",), optional=True),
        Step("p1.migrations", 1, "Verificar migraciones aplicadas", "migration_status",
             needs=("p1.connectivity",)),
        Step("p1.lint", 1, "Revisar las migraciones pendientes (lint)", "migration_lint",
             needs=("p1.migrations",)),
        Step("p1.staging_db", 1, "Crear base de datos de staging", "staging_create",
             destructive=True, needs=("p1.verify_backup",)),
        Step("p1.staging_restore", 1, "Restaurar backup de producción en staging",
             "staging_restore", destructive=True, needs=("p1.staging_db",)),
        Step("p1.staging_integrity", 1, "Comparar integridad de staging con producción",
             "staging_snapshot", needs=("p1.snapshot", "p1.staging_restore")),
    )),
    Phase(2, "2 Testing en staging", (
        Step("p2.status", 2, "Verificar estado actual (staging)", "staging_migration_status"),
        Step("p2.migrate", 2, "Aplicar migraciones pendientes (staging)", "staging_migrate",
             needs=("p2.status",)),
        # Built beside production (releases_dir): app_dir, its dist/ and what pm2 runs from it
        # are not changed until Phase 3's deploy, and what ships is exactly this build.
        Step("p2.build", 2, "Construir la release (npm ci, generate, build)",
             "release_build", needs=("p2.migrate",), role="build",
             description="builds the release beside production, in its own directory"),
        Step("p2.start", 2, "npm run start:prod (instancia de staging)",
             "staging_start", needs=("p2.build",)),
        Step("p2.smoke", 2, "Verificar funcionalidades críticas (smoke checks)",
             "staging_smoke_checks", needs=("p2.start",)),
        Step("p2.features", 2, "Verificar funcionalidades críticas (manual)", "manual_checks",
             needs=("p2.start",)),
        Step("p2.integrity", 2, "Verificar integridad de datos", "staging_integrity",
             needs=("p2.migrate",), satisfies=("before.staging",)),
        # No needs: it also runs when the phase is aborted (Phase.cleanup), and stopping an
        # instance that is not running is not an error.
        Step("p2.stop", 2, "Detener la instancia de staging", "staging_stop",
             resets=("p2.start", "p2.smoke")),
    ), cleanup=("p2.stop",)),
    Phase(3, "3 Producción", (
        Step("p3.lock", 3, "Tomar el lock de despliegue", "lock_acquire", production_gate=True,
             role="lock"),
        # A fresh dump unless this run has a verified one younger than backup_max_age_hours.
        Step("p3.backup", 3, "Crea backup de la base de datos", "backup_fresh",
             needs=("p3.lock",), production_gate=True),
        Step("p3.verify_backup", 3, "Verifica el backup", "verify_backup",
             needs=("p3.backup",), production_gate=True, satisfies=("during.backup_verified",)),
        Step("p3.status", 3, "Verifica el estado actual", "verify_state",
             needs=("p3.lock",), production_gate=True,
             description="no failed or modified migration; Prisma's migration lock is free"),
        Step("p3.validate", 3, "Valida el schema", "validate_schema",
             needs=("p3.status",), production_gate=True,
             description="checks the release's prisma/schema.prisma with `prisma validate`"),
        Step("p3.migrate", 3, "Aplica migraciones pendientes", "migrate",
             destructive=True, needs=("p3.verify_backup", "p3.validate"), production_gate=True,
             satisfies=("during.migrations",), acknowledge=("lint",), role="migrate",
             half_done="the migrations may be half applied",
             description="runs `prisma migrate deploy` on production, detached on the server"),
        Step("p3.integrity", 3, "Verifica integridad", "integrity_compare",
             needs=("p3.migrate",), production_gate=True, satisfies=("success.no_data_loss",)),
        Step("p3.build", 3, "Construye la aplicación", "release_check",
             needs=("p3.migrate",), production_gate=True, satisfies=("during.build",),
             description="checks that the build tested on staging is the one that ships"),
        Step("p3.deploy", 3, "Despliega la aplicación", "deploy",
             destructive=True, needs=("p3.build",), production_gate=True,
             satisfies=("during.deployed",), role="deploy",
             half_done="the deploy may be half done",
             description="switches production to the new release, worker by worker"),
        # The post-deploy checks need the deploy: a health check of code that was not deployed
        # is not a post-deploy check.
        Step("p3.post_checks", 3, "Verifica post-despliegue (curl /health)", "post_deploy_gate",
             needs=("p3.deploy",), production_gate=True, satisfies=("during.post_checks",),
             description="health, workers online, no crash loop, no new error lines"),
        Step("p3.logs", 3, "Verificar logs de la aplicación (pm2 logs)", "deploy_logs",
             needs=("p3.deploy",), production_gate=True,
             description="pm2's error log lines written since the deploy"),
        Step("p3.migrations", 3, "Verificar estado de migraciones", "migration_status",
             needs=("p3.migrate",), production_gate=True, satisfies=("success.migrations",)),
        # Also run when the phase stops early (Phase.cleanup): the lock is never left behind.
        Step("p3.unlock", 3, "Liberar el lock de despliegue", "lock_release",
             needs=("p3.lock",), production_gate=True),
    ), cleanup=("p3.unlock",)),
    Phase(4, "4 Monitoreo", (
        Step("p4.health", 4, "La aplicación responde correctamente", "health",
             satisfies=("p4.responds",)),
        Step("p4.endpoints", 4, "Los endpoints críticos funcionan", "smoke_checks",
             satisfies=("p4.endpoints",)),
        Step("p4.logs", 4, "No hay errores en los logs", "log_errors",
             satisfies=("p4.no_log_errors", "after.logs")),
        Step("p4.database", 4, "La base de datos está accesible", "connectivity",
             satisfies=("p4.database",)),
        # Runs until the operator stops it, so "run the phase" leaves it to them (optional) and
        # it holds nothing: a look-up, it runs beside a rollback.
        Step("p4.metrics", 4, "Métricas: tiempo de respuesta, errores, memoria/CPU, conexiones",
             "monitor", optional=True, role="monitor",
             description="a live dashboard of latency, errors, memory/CPU and connections"),
    )),
    # The rollback: pick a backup and a scope (journaled as ``rollback_choice``, so it survives
    # a resume), then only the steps of that scope run; the others are skipped with the reason.
    # The app's stop and start are part of the swap (downtime = stop + two renames + start).
    Phase(ROLLBACK, "Rollback", (
        Step("rb.pick", 0, "Elegir backup y alcance", "rollback_pick",
             description="records the chosen backup and scope (code, data or both)"),
        Step("rb.preflight", 0, "Comprobaciones previas (solo lectura)", "rollback_preflight",
             needs=("rb.pick",),
             description="checks the backup, the role's rights, free disk and the release"),
        Step("rb.restore", 0, "Restaurar el backup al lado de producción",
             "rollback_restore", destructive=True, needs=("rb.preflight",),
             half_done="the restore into a new database is half done",
             description="restores the backup into a new database beside production"),
        Step("rb.verify", 0, "Verificar la base restaurada", "rollback_verify",
             needs=("rb.restore",),
             description="compares the restored database with the backup's fingerprints"),
        Step("rb.swap", 0, "Intercambiar bases por rename",
             "rollback_swap", destructive=True, needs=("rb.verify",),
             half_done="the database swap by rename is half done",
             description="swaps the databases by renaming them, keeping the failed one"),
        Step("rb.code", 0, "Volver a la release anterior", "rollback_code",
             destructive=True, needs=("rb.preflight",),
             half_done="the code rollback may be half done",
             description="switches the code back to the previous release"),
        Step("rb.health", 0, "Verificar que la aplicación responde", "health",
             needs=("rb.pick",)),
        Step("rb.report", 0, "Informe: lo apartado y la caída", "rollback_report",
             needs=("rb.pick",),
             description="says what the failed database holds and the measured downtime"),
    )),
)

#: The plan's "Comandos útiles", run from the command palette with the same engine (journaled,
#: confirmed when destructive). Not part of any phase; ``phase == -1``. The palette offers those
#: with a ``palette`` entry, in this order.
ACTIONS: tuple[Step, ...] = (
    Step("cmd.pm2_status", -1, "pm2 status", "pm2_status",
         palette=PaletteEntry("pm2 status", "State of the app's pm2 processes")),
    Step("cmd.pm2_logs", -1, "pm2 logs (últimas líneas)", "pm2_logs",
         palette=PaletteEntry("pm2 logs (last {lines} lines)",
                              "Type a number to change how many lines", lines=True)),
    Step("cmd.pm2_show", -1, "pm2 show", "pm2_show",
         palette=PaletteEntry("pm2 show", "Details of the app's pm2 process")),
    Step("cmd.pm2_restart", -1, "pm2 restart", "pm2_restart", destructive=True,
         palette=PaletteEntry("pm2 restart", "Destructive: restarts the app (drops requests in "
                              "fork mode); asks for confirmation")),
    Step("cmd.pm2_reload", -1, "pm2 reload", "pm2_reload", destructive=True,
         palette=PaletteEntry("pm2 reload", "Destructive: zero-downtime reload in cluster mode; "
                              "asks for confirmation")),
    Step("cmd.migration_status", -1, "Estado de migraciones", "migration_status",
         palette=PaletteEntry("Migration status", "Applied / pending / failed, from "
                              "_prisma_migrations and the folder")),
    Step("cmd.connectivity", -1, "Verificar conectividad a la DB", "connectivity",
         palette=PaletteEntry("Database connectivity check", "Read-only: connect, select 1, "
                              "server version (never prisma db pull)")),
    Step("cmd.health", -1, "curl /health", "health",
         palette=PaletteEntry("Health check (curl /health)", "GET the target's health URL")),
    Step("cmd.lock_status", -1, "Lock de despliegue", "lock_status",
         palette=PaletteEntry("Deploy lock status", "Who holds the deploy lock")),
    Step("cmd.lock_break", -1, "Romper el lock de despliegue", "lock_break", destructive=True,
         palette=PaletteEntry("Break the deploy lock", "Destructive: removes a stale lock after "
                              "showing its holder and run; asks for confirmation")),
    Step("cmd.pm2_stop", -1, "Detener la aplicación (pm2 stop)", "pm2_stop", destructive=True,
         palette=PaletteEntry("pm2 stop", "Destructive: stops the app (it serves nothing until "
                              "started); asks for confirmation")),
    Step("cmd.pm2_start", -1, "Iniciar la aplicación (pm2 start)", "pm2_start",
         destructive=True,
         palette=PaletteEntry("pm2 start", "Destructive: starts the app's pm2 processes; asks "
                              "for confirmation")),
    Step("cmd.rollback_kept", -1, "Bases apartadas por rollbacks (_failed_, _restore_)",
         "rollback_kept",
         palette=PaletteEntry("Kept databases (_failed_, _restore_)", "Read-only: databases "
                              "rollbacks set aside, with size and age; never dropped by itself")),
    Step("cmd.releases", -1, "Releases en disco", "releases_list",
         palette=PaletteEntry("Releases on disk", "Read-only: the releases kept for a code "
                              "rollback, with size and age")),
    # Housekeeping: one named database or release at a time, typed by name; never automatic
    # (the palette's housekeeping entries list them first).
    Step("cmd.kept_drop", -1, "Borrar una base apartada (DROP DATABASE)", "kept_drop",
         destructive=True),
    Step("cmd.release_remove", -1, "Borrar una release antigua (rm -rf)", "release_remove",
         destructive=True),
    Step("cmd.facts", -1, "Estado del servidor", "facts"),
)
# fmt: on

_PHASES = {p.number: p for p in PLAN}
_STEPS = {s.id: s for p in PLAN for s in p.steps} | {s.id: s for s in ACTIONS}
_ITEMS = {i.id: i for i in CHECKLIST}
_ROLES = {s.role: s for s in _STEPS.values() if s.role is not None}


def phase(number: int) -> Phase:
    """The phase ``number`` (0 = rollback); ``KeyError`` when unknown."""
    return _PHASES[number]


def step(step_id: str) -> Step:
    """The step (or command-palette action) ``step_id``; ``KeyError`` when unknown."""
    return _STEPS[step_id]


def checklist_item(item_id: str) -> ChecklistItem:
    """The checklist item ``item_id``; ``KeyError`` when unknown."""
    return _ITEMS[item_id]


def all_steps() -> tuple[Step, ...]:
    """Every plan step (phases 1..4 then rollback) followed by the palette actions."""
    return tuple(_STEPS.values())


def step_with_role(role: StepRole) -> Step:
    """The step that plays ``role`` (e.g. ``"deploy"``: the step that switches production)."""
    return _ROLES[role]
