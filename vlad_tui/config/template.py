"""The commented configuration template (``vlad-tui init``) and :func:`dump_config`, which
writes a configuration back as TOML."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from vlad_tui import paths
from vlad_tui.config.model import Contact, Project, SmokeCheck, Target
from vlad_tui.errors import ConfigError


def render_template() -> str:
    """A commented configuration template (production and staging targets, contacts)."""
    return resources.files("vlad_tui.config").joinpath("template.toml").read_text(encoding="utf-8")


def write_template(path: Path | str, force: bool = False) -> Path:
    """Write :func:`render_template` to ``path`` (mode 0600); refuse to overwrite without force.

    A missing parent directory is created private (0700); an existing one is left alone.
    """
    path = Path(path).expanduser()
    file = str(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError("already exists; use --force to overwrite it", file=file)
    if path.is_dir():
        raise ConfigError("is a directory, not a configuration file", file=file)
    try:
        if not path.parent.exists():
            paths.ensure_private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(render_template())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise ConfigError(
            f"cannot write the configuration file: {err.strerror}", file=file
        ) from None
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, SmokeCheck):
        inner = ", ".join(
            f"{f.name} = {_toml_value(getattr(value, f.name))}" for f in fields(value)
        )
        return "{ " + inner + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML string


def dump_config(
    targets: Iterable[Target], project: Project | None = None, contacts: Iterable[Contact] = ()
) -> str:
    """TOML text for these targets: the inverse of :func:`~vlad_tui.config.load_config`
    (defaults left out)."""
    lines: list[str] = []
    if project is not None:
        lines.append("[project]")
        lines += [
            f"{f.name} = {_toml_value(getattr(project, f.name))}"
            for f in fields(project)
            if getattr(project, f.name) is not None
        ]
    for target in targets:
        lines.append(f"\n[targets.{target.name}]")
        for f in fields(target):
            value = getattr(target, f.name)
            if f.name != "name" and value is not None and value != f.default:
                lines.append(f"{f.name} = {_toml_value(value)}")
    for contact in contacts:
        lines.append("\n[[contacts]]")
        lines += [f"{f.name} = {_toml_value(getattr(contact, f.name))}" for f in fields(contact)]
    return "\n".join(lines) + "\n"
