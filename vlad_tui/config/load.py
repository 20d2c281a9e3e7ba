"""Finding, reading and checking the configuration file.

:func:`resolve_config_path` finds it, :func:`load_config` reads and validates it. Bad input
only ever raises :class:`~vlad_tui.errors.ConfigError`, whose message names the file, the
dotted key and (when known) the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlad_tui import paths
from vlad_tui.config.messages import quoted, type_name
from vlad_tui.config.model import (
    CONTACT_KEYS,
    LEVEL_KEYS,
    MONITOR_KEYS,
    MONITOR_LEVELS,
    PROJECT_KEYS,
    TOP_KEYS,
    Config,
    Contact,
    Levels,
    MonitorConfig,
    Project,
)
from vlad_tui.config.positions import enclosing_table, lines_of
from vlad_tui.config.reader import TableReader
from vlad_tui.config.target_rules import read_target
from vlad_tui.errors import ConfigError

ENV_VAR = "VLAD_TUI_CONFIG"

_TABLE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}")
_TOML_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")
#: The ``[monitor]`` levels that are shares (of connections, of probes): at most 1.
_SHARES = ("connections_share", "non_2xx_rate")


def resolve_config_path(explicit: Path | str | None = None) -> Path:
    """The config file to use: ``explicit`` > ``$VLAD_TUI_CONFIG`` > the platform default."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return paths.config_file()


def load_config(path: Path | str) -> Config:
    """Read and validate the configuration file at ``path``.

    A literal database password is accepted only when the file is private (no group/other
    permission bits); it is then taught to :mod:`vlad_tui.redact`.
    """
    path = Path(path).expanduser()
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(path, text, err) from None
    return _config(TableReader(path, text), data)


def _read(path: Path) -> str:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "no configuration file here; create one with `vlad-tui init` "
            f"(or pass --config PATH, or set {ENV_VAR})",
            file=file,
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", file=file) from None
    except PermissionError:
        raise ConfigError("permission denied reading the configuration file", file=file) from None
    except OSError as err:
        raise ConfigError(
            f"cannot read the configuration file: {err.strerror}", file=file
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", file=file, line=line) from None


def _syntax_error(path: Path, text: str, err: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(err)
    line: int | None = None
    if match := _TOML_LINE.search(message):
        line, column = int(match[1]), int(match[2])
        message = f"{message[: match.start()]} (column {column})"
    elif match := _TOML_END.search(message):
        line = max(1, len(lines_of(text)))
        message = f"{message[: match.start()]} (at end of file)"
    key = enclosing_table(text, line) if line else ""
    return ConfigError(f"invalid TOML: {message}", file=str(path), key=key, line=line)


# --- the tables -------------------------------------------------------------------------------


def _config(reader: TableReader, data: dict[str, Any]) -> Config:
    reader.check_keys(data, TOP_KEYS, "")
    project = Project()
    if "project" in data:
        if not isinstance(data["project"], dict):
            raise reader.fail("project", f"expected a table, got {type_name(data['project'])}")
        project = _project(reader, data["project"])
    targets_table = data.get("targets")
    if targets_table is not None and not isinstance(targets_table, dict):
        raise reader.fail("targets", f"expected a table, got {type_name(targets_table)}")
    if not targets_table:
        raise reader.fail(
            "targets",
            "no targets defined; add a [targets.production] table (`vlad-tui init` writes "
            "an example)",
        )
    targets = {name: read_target(reader, name, table) for name, table in targets_table.items()}
    contacts: tuple[Contact, ...] = ()
    if "contacts" in data:
        raw = data["contacts"]
        if not isinstance(raw, list):
            raise reader.fail("contacts", f"expected [[contacts]] entries, got {type_name(raw)}")
        contacts = tuple(_contact(reader, i, entry) for i, entry in enumerate(raw, 1))
    monitor = MonitorConfig()
    if "monitor" in data:
        if not isinstance(data["monitor"], dict):
            raise reader.fail("monitor", f"expected a table, got {type_name(data['monitor'])}")
        monitor = _monitor(reader, data["monitor"])
    return Config(
        path=reader.path, project=project, targets=targets, contacts=contacts, monitor=monitor
    )


def _monitor(reader: TableReader, table: dict[str, Any]) -> MonitorConfig:
    reader.check_keys(table, MONITOR_KEYS, "monitor")
    kwargs: dict[str, Any] = {}
    for key in MONITOR_KEYS:
        if key in MONITOR_LEVELS:
            continue
        value = reader.positive(table, key, "monitor")
        if value is not None:
            kwargs[key] = value
    defaults = MonitorConfig()
    for key in MONITOR_LEVELS:
        raw = reader.get(table, key, "monitor", dict)
        if raw is None:
            continue
        prefix = f"monitor.{key}"
        reader.check_keys(raw, LEVEL_KEYS, prefix)
        default: Levels = getattr(defaults, key)
        warning = reader.positive(raw, "warning", prefix)
        critical = reader.positive(raw, "critical", prefix)
        levels = Levels(
            default.warning if warning is None else warning,
            default.critical if critical is None else critical,
        )
        if not levels.warning < levels.critical:
            raise reader.fail(prefix, "warning must be below critical")
        if key in _SHARES and levels.critical > 1:
            raise reader.fail(f"{prefix}.critical", "is a share: at most 1")
        kwargs[key] = levels
    return MonitorConfig(**kwargs)


def _project(reader: TableReader, table: dict[str, Any]) -> Project:
    reader.check_keys(table, PROJECT_KEYS, "project")
    kwargs: dict[str, Any] = {}
    for key, rule in PROJECT_RULES.items():
        value = rule(reader, table, key)
        if value is not None:
            kwargs[key] = value
    return Project(**kwargs)


def _critical_tables(
    reader: TableReader, table: dict[str, Any], key: str
) -> tuple[str, ...] | None:
    tables = reader.get(table, key, "project", list)
    if tables is None:
        return None
    for i, item in enumerate(tables):
        if not isinstance(item, str) or not _TABLE_NAME.fullmatch(item):
            shown = quoted(item) if isinstance(item, str) else type_name(item)
            raise reader.fail(
                f"project.{key}",
                f"item {i + 1} ({shown}) is not a table name (letters, digits, _; "
                "optionally schema.table)",
            )
    return tuple(tables)


def _text(reader: TableReader, table: dict[str, Any], key: str) -> str | None:
    return reader.text_value(table, key, "project")


def _positive(reader: TableReader, table: dict[str, Any], key: str) -> float | None:
    return reader.positive(table, key, "project")


def _local_dir(reader: TableReader, table: dict[str, Any], key: str) -> Path | None:
    directory = reader.text_value(table, key, "project")
    return None if directory is None else reader.local_dir(directory)


#: One rule per :class:`Project` key: its value, or ``None`` for the default.
PROJECT_RULES: dict[str, Callable[[TableReader, dict[str, Any], str], Any]] = {
    "name": _text,
    "critical_tables": _critical_tables,
    "backup_max_age_hours": _positive,
    "jobs_keep_days": _positive,
    "journal_dir": _local_dir,
    "local_backup_dir": _local_dir,
}


def _contact(reader: TableReader, index: int, entry: Any) -> Contact:
    prefix = f"contacts[{index}]"
    if not isinstance(entry, dict):
        raise reader.fail(prefix, f"expected a [[contacts]] table, got {type_name(entry)}")
    reader.check_keys(entry, CONTACT_KEYS, prefix)
    return Contact(
        role=reader.text_value(entry, "role", prefix, required=True) or "",
        name=reader.text_value(entry, "name", prefix, required=True) or "",
        phone=reader.text_value(entry, "phone", prefix, allow_empty=True) or "",
        email=reader.text_value(entry, "email", prefix, allow_empty=True) or "",
    )
