"""TOML configuration: targets, project settings, contacts, secret references.

:func:`resolve_config_path` finds the file (``--config`` > ``$VLAD_TUI_CONFIG`` > the platform
default), :func:`load_config` reads and validates it, :func:`write_template` writes a commented
starting point. Bad input only ever raises :class:`~vlad_tui.errors.ConfigError`, whose message
names the file, the dotted key and (when known) the line.

The modules: :mod:`.model` (the dataclasses and their keys), :mod:`.load` (reading and
checking, with :mod:`.target_rules` for ``[targets.NAME]``, :mod:`.reader` for typed values,
:mod:`.positions` for lines and :mod:`.messages` for wording) and :mod:`.template` (the
template and :func:`dump_config`).
"""

from vlad_tui.config.load import ENV_VAR, load_config, resolve_config_path
from vlad_tui.config.messages import key_text
from vlad_tui.config.model import (
    BACKUP_FORMATS,
    DEFAULT_CRITICAL_TABLES,
    DEFAULT_DATABASE_VARIABLE,
    DEFAULT_SMOKE_CHECKS,
    HTTP_METHODS,
    LOCAL_HOST,
    MAX_BACKUP_JOBS,
    MIN_KEEP_RELEASES,
    MONITOR_LEVELS,
    Config,
    Contact,
    DatabaseRef,
    Levels,
    MonitorConfig,
    Project,
    SmokeCheck,
    Target,
    parse_database_ref,
)
from vlad_tui.config.template import dump_config, render_template, write_template
from vlad_tui.errors import ConfigError

__all__ = [
    "BACKUP_FORMATS",
    "DEFAULT_CRITICAL_TABLES",
    "DEFAULT_DATABASE_VARIABLE",
    "DEFAULT_SMOKE_CHECKS",
    "ENV_VAR",
    "HTTP_METHODS",
    "LOCAL_HOST",
    "MAX_BACKUP_JOBS",
    "MIN_KEEP_RELEASES",
    "MONITOR_LEVELS",
    "Config",
    "ConfigError",
    "Contact",
    "DatabaseRef",
    "Levels",
    "MonitorConfig",
    "Project",
    "SmokeCheck",
    "Target",
    "dump_config",
    "key_text",
    "load_config",
    "parse_database_ref",
    "render_template",
    "resolve_config_path",
    "write_template",
]
