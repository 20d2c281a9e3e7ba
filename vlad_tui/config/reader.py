"""Typed reads from a parsed TOML table whose errors name the file, the dotted key and its line."""

from __future__ import annotations

import shlex
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlad_tui.config.messages import TOML_TYPES, did_you_mean, key_text, quoted, type_name
from vlad_tui.config.positions import key_lines, line_of
from vlad_tui.errors import ConfigError


class TableReader:
    """Reads values out of the tables of the file at ``path`` (whose text is ``text``).

    The getters return ``None`` for an absent key that is not required; anything else that is
    wrong raises (returns, for :meth:`fail`) a :class:`ConfigError`.
    """

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self._lines: dict[str, int] | None = None

    # errors

    def fail(self, key: str, message: str) -> ConfigError:
        """The error about dotted ``key``, with the line of the key (or of its table)."""
        if self._lines is None:
            self._lines = key_lines(self.text)
        return ConfigError(message, file=str(self.path), key=key, line=line_of(self._lines, key))

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        """Refuse a key not in ``allowed`` (with the closest one, or the list)."""
        for key in table:
            if key not in allowed:
                dotted = f"{prefix}.{key_text(key)}" if prefix else key_text(key)
                hint = did_you_mean(key, allowed) or f"; known keys: {', '.join(allowed)}"
                raise self.fail(dotted, f"unknown key {quoted(key)}{hint}")

    def check_pm2_name(self, key: str, value: str) -> None:
        """pm2 would read a name starting with "-" as an option; a name is one line."""
        if not value.strip() or value.startswith("-") or "\n" in value or "\r" in value:
            raise self.fail(key, 'must be one line that does not start with "-" (a pm2 name)')

    def require_private(self, key: str) -> None:
        """Refuse a password in ``key`` unless the file has no group/other permission bits."""
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            mode = 0o777
        if mode & 0o077:
            fix = f"chmod 600 {shlex.quote(str(self.path))}"
            raise self.fail(
                key,
                f"the URL contains a password but the file is readable by others "
                f"(mode {mode:04o}); run `{fix}`, or keep the password out of "
                'the file: database = "env:VAR" or "dotenv:.env" (or PGPASSWORD / ~/.pgpass)',
            )

    # typed getters

    def get(
        self, table: Mapping[str, Any], key: str, prefix: str, kind: type, *, required: bool = False
    ) -> Any:
        """``table[key]`` if it is a ``kind`` (an int counts as a float, a bool as neither)."""
        dotted = f"{prefix}.{key}"
        if key not in table:
            if required:
                raise self.fail(dotted, f"missing required key {quoted(key)}")
            return None
        value = table[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            expected = dict(TOML_TYPES)[kind]
            raise self.fail(dotted, f"expected {expected}, got {type_name(value)}")
        return value

    def text_value(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        *,
        required: bool = False,
        allow_empty: bool = False,
    ) -> str | None:
        """A string, not blank unless ``allow_empty``."""
        value = self.get(table, key, prefix, str, required=required)
        if value is not None and not allow_empty and not value.strip():
            raise self.fail(f"{prefix}.{key}", "must not be empty")
        return value

    def positive(self, table: Mapping[str, Any], key: str, prefix: str) -> float | None:
        """A number greater than 0, as a float."""
        value = self.get(table, key, prefix, float)
        if value is not None and not value > 0:
            raise self.fail(f"{prefix}.{key}", "must be greater than 0")
        return None if value is None else float(value)

    def command(self, table: Mapping[str, Any], key: str, prefix: str) -> str | None:
        """A one-line shell command, stripped."""
        value = self.text_value(table, key, prefix)
        if value is None:
            return None
        if any(c in value for c in "\n\r\0"):
            raise self.fail(f"{prefix}.{key}", "must be a single line")
        return value.strip()

    def local_dir(self, text: str) -> Path:
        """A directory on this machine: ``~`` expanded, relative to the config file's dir."""
        path = Path(text.strip()).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()
