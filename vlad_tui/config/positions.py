"""Where keys are in a TOML file, so an error can name its line.

``tomllib`` gives values but no positions; this scans the lines for table headers and
``key = value`` lines (best effort).
"""

from __future__ import annotations

import re
import tomllib

from vlad_tui.config.messages import key_text

_KEY_PART = re.compile(r"""[ \t]*(?:([A-Za-z0-9_-]+)|("(?:[^"\\\n]|\\.)*")|('[^'\n]*'))[ \t]*""")


def lines_of(text: str) -> list[str]:
    """The file's lines as TOML counts them: only ``\\n`` ends one (``str.splitlines`` also
    splits at U+0085, U+2028 and U+2029, which TOML allows inside strings and comments)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _key_part(token: str) -> str:
    if token.startswith('"'):
        try:  # TOML's own escapes (\u00e9, \"): let tomllib decode them
            return next(iter(tomllib.loads(f"{token} = 0")))
        except (tomllib.TOMLDecodeError, StopIteration):
            return token[1:-1]
    return token.strip("'")


def _parse_key(raw: str, pos: int) -> tuple[str, int] | None:
    """The dotted key (bare, "basic" and 'literal' parts) at ``raw[pos:]`` and where it ends."""
    parts: list[str] = []
    while match := _KEY_PART.match(raw, pos):
        parts.append(key_text(_key_part(match[1] or match[2] or match[3])))
        pos = match.end()
        if not raw.startswith(".", pos):
            return ".".join(parts), pos
        pos += 1
    return None


def _line_key(raw: str) -> tuple[str, str] | None:
    """``("array" | "table" | "key", dotted key)`` of a header or ``key = value`` line."""
    stripped = raw.lstrip()
    offset = len(raw) - len(stripped)
    for opener, closer, kind in (("[[", "]]", "array"), ("[", "]", "table"), ("", "=", "key")):
        if not stripped.startswith(opener):
            continue
        parsed = _parse_key(raw, offset + len(opener))
        if parsed is not None and raw.startswith(closer, parsed[1]):
            return kind, parsed[0]
        if opener:
            return None
    return None


def enclosing_table(text: str, line: int) -> str:
    """The table header in force before ``line`` (best effort, for syntax errors)."""
    name = ""
    for raw in lines_of(text)[: line - 1]:
        found = _line_key(raw)
        if found is not None and found[0] != "key":
            name = found[1]
    return name


def key_lines(text: str) -> dict[str, int]:
    """Map dotted keys (``targets.production.port``, ``contacts[1].name``) to line numbers."""
    found: dict[str, int] = {}
    section = ""
    counts: dict[str, int] = {}
    for number, raw in enumerate(lines_of(text), 1):
        line_key = _line_key(raw)
        if line_key is None:
            continue
        kind, name = line_key
        if kind == "array":
            counts[name] = counts.get(name, 0) + 1
            section = f"{name}[{counts[name]}]"
            found.setdefault(name, number)
            found.setdefault(section, number)
        elif kind == "table":
            section = name
            found.setdefault(section, number)
        else:
            found.setdefault(f"{section}.{name}" if section else name, number)
    return found


def line_of(lines: dict[str, int], key: str) -> int | None:
    """The line of ``key`` in :func:`key_lines`, else of the nearest enclosing key there."""
    probe = key
    while probe:
        if probe in lines:
            return lines[probe]
        # An inline array of tables has no header per entry: try the array's own key.
        unindexed = re.sub(r"\[\d+\]$", "", probe)
        if unindexed != probe and unindexed in lines:
            return lines[unindexed]
        probe = probe.rpartition(".")[0]
    return None
