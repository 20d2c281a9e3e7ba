"""Configuration fuzzing (hypothesis): whatever the file holds, ``vlad-tui check`` exits 2 with
one line naming the file, the dotted key and the line where that key is — never a traceback.

Two kinds of documents: valid TOML built from a valid configuration with random keys, values
and types put at (or removed from) every configuration key, rendered here with the line of
every key recorded (so the expected line does not come from the code under test); and invalid
bytes (random bytes, and valid documents with bytes inserted, replaced or cut). Each runs the
real CLI entry in-process (``cli.main(["--config", FILE, "check", "--target", ...])``) against a
target the file does not define, so a configuration that loads ends at the target look-up
(exit 2 naming that target) without connecting anywhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vlad_tui import cli, redact
from vlad_tui.config import load_config
from vlad_tui.config.model import (
    CONTACT_KEYS,
    MONITOR_KEYS,
    MONITOR_LEVELS,
    PROJECT_KEYS,
    SMOKE_KEYS,
    TARGET_KEYS,
)

ABSENT = "fuzz-absent"  # the target asked for: never in the file, so nothing connects
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,  # nothing written into the repository
    derandomize=True,  # the same examples on every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BASE: dict[str, Any] = {
    "project": {
        "name": "backend-vlad",
        "critical_tables": ["users", "medals"],
        "backup_max_age_hours": 24,
        "jobs_keep_days": 7,
        "journal_dir": "runs",
        "local_backup_dir": "backups",
    },
    "targets": {
        "production": {
            "host": "prod.example.com",
            "user": "deploy",
            "port": 22,
            "known_hosts": "~/.ssh/known_hosts",
            "identity_file": "~/.ssh/id_ed25519",
            "ssh_config": "~/.ssh/config",
            "app_dir": "/srv/backend-vlad",
            "pm2_name": "backend-vlad",
            "pm2_bin": "pm2",
            "pm2_home": "/home/deploy/.pm2",
            "health_url": "http://127.0.0.1:3335/health",
            "backup_dir": "/var/backups/backend-vlad",
            "jobs_dir": "/tmp",
            "database": "dotenv:.env",
            "staging_database": "peludosclick_staging",
            "connect_timeout": 10,
            "migrate_command": "npx prisma migrate deploy",
            "install_command": "npm ci",
            "generate_command": "npx prisma generate",
            "build_command": "npm run build",
            "validate_command": "npx --no-install prisma validate",
            "start_command": "dist/main.js",
            "prisma_status_command": "npx prisma migrate status",
            "staging_pm2_name": "backend-vlad-staging",
            "staging_port": 3336,
            "backup_format": "custom",
            "backup_jobs": 2,
            "smoke_checks": [{"method": "GET", "path": "/health", "expect": 200}],
            "releases_dir": "/srv/backend-vlad-releases",
            "keep_releases": 5,
        }
    },
    "contacts": [{"role": "on-call", "name": "Ana", "phone": "+34 600 000 000", "email": ""}],
    "monitor": {
        "interval": 2,
        "retention_days": 30,
        "latency_ms": {"warning": 300, "critical": 1000},
        "non_2xx_rate": {"warning": 0.05, "critical": 0.2},
    },
}


def test_the_catalogue_covers_every_key() -> None:
    """Every key the validator knows is in the base document, so each gets fuzzed."""
    target = BASE["targets"]["production"]
    assert set(PROJECT_KEYS) == set(BASE["project"])
    assert set(TARGET_KEYS) == set(target)
    assert set(CONTACT_KEYS) == set(BASE["contacts"][0])
    assert set(SMOKE_KEYS) == set(target["smoke_checks"][0])
    assert set(MONITOR_KEYS) >= set(BASE["monitor"]) and set(MONITOR_LEVELS) <= set(MONITOR_KEYS)


# --- rendering TOML, with the line of each key ---------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else toml_string(key)


def shown(key: str) -> str:
    """A key as the messages name it: bare, else quoted (so ``""`` or ``"a.b"`` stay visible)."""
    if _BARE.fullmatch(key):
        return key
    text = json.dumps(key, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def render(doc: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """TOML text for ``doc`` and the line of every key, dotted the way the validator names
    keys (``targets.production.port``, ``contacts[1].name``)."""
    lines: list[str] = []
    where: dict[str, int] = {}

    def emit(table: dict[str, Any], dotted: str, header: str | None) -> None:
        plain = {
            k: v
            for k, v in table.items()
            if not isinstance(v, dict)
            and not (dotted == "" and k == "contacts" and _is_table_array(v))
        }
        if header is not None and (plain or not any(isinstance(v, dict) for v in table.values())):
            lines.append(header)
            where.setdefault(dotted, len(lines))
        for key, value in plain.items():
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
            where[f"{dotted}.{shown(key)}" if dotted else shown(key)] = len(lines)
        for key, value in table.items():
            name = f"{dotted}.{shown(key)}" if dotted else shown(key)
            path = f"{header[1:-1]}.{toml_key(key)}" if header else toml_key(key)
            if isinstance(value, dict):
                emit(value, name, f"[{path}]")
        if dotted == "" and _is_table_array(table.get("contacts")):
            for i, entry in enumerate(table["contacts"], 1):
                lines.append("[[contacts]]")
                where.setdefault("contacts", len(lines))
                where[f"contacts[{i}]"] = len(lines)
                for key, value in entry.items():
                    lines.append(f"{toml_key(key)} = {toml_value(value)}")
                    where[f"contacts[{i}].{shown(key)}"] = len(lines)

    emit(doc, "", None)
    return "\n".join(lines) + "\n", where


def expected_line(key: str, where: dict[str, int]) -> int | None:
    """The line of ``key``, else of the nearest enclosing key the file has."""
    probe = key
    while probe:
        if probe in where:
            return where[probe]
        unindexed = re.sub(r"\[\d+\]$", "", probe)
        if unindexed != probe and unindexed in where:
            return where[unindexed]
        probe = probe.rpartition(".")[0]
    return None


# --- documents --------------------------------------------------------------------------------

NEAR_MISSES = st.sampled_from(
    [
        "",
        " ",
        "/",
        "~",
        "~/x",
        "local",
        "-oProxyCommand=x",
        "a@b",
        "x y",
        "http://",
        "http://h:99999/x",
        "ftp://h/x",
        "postgresql://u:s3cret@h/db",
        "postgresql://u@h/db",
        "env:",
        "env:1X",
        "dotenv:",
        "dotenv:.env#",
        "a\nb",
        "'unbalanced",
        "custom",
        "plain",
        "GET",
        "get",
        "/health",
        "/srv/backend-vlad",
        "/srv/backend-vlad/releases",
        "backend-vlad",
        "é",
        "\x00",
    ]
)
SCALARS = st.one_of(
    NEAR_MISSES,
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 22, 3335, 65535, 65536, -1, 600]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
KEYS = st.one_of(
    st.sampled_from(["x", "prod", "a.b", "a]b", 'q"t', "é", " ", ""]), st.text(max_size=6)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into ``doc`` (tables, arrays of tables, leaves)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            if isinstance(value, dict):
                yield (*prefix, i)
                yield from paths(value, (*prefix, i))


def copy(doc: Any) -> Any:
    return json.loads(json.dumps(doc))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """The base configuration with one to three random changes."""
    doc = copy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        all_paths = list(paths(doc))
        if not all_paths:
            break
        path = draw(st.sampled_from(all_paths))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["set", "set", "set", "delete", "add", "rename"]))
        if action == "set":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif action == "rename" and isinstance(parent, dict):
            new = draw(KEYS)
            if new not in parent:
                parent[new] = parent.pop(path[-1])
    return doc


# --- running the CLI --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vlad-config-fuzz-") as d:
        yield Path(d)


def run_check(path: Path) -> tuple[int, str]:
    """``vlad-tui --config PATH check --target fuzz-absent`` in-process: (exit code, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    redact.reset()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--config", str(path), "check", "--target", ABSENT])
    return code, err.getvalue()


_MESSAGE = re.compile(r"vlad-tui: (?P<file>.+?)(?::(?P<line>\d+))?(?: \[(?P<key>[^\n]*?)\])?: ")


def parse(path: Path, said: str) -> tuple[int | None, str | None]:
    """(line, key) of the one-line message about ``path``."""
    assert "Traceback" not in said
    assert said.endswith("\n") and said.count("\n") == 1, said
    assert said[:-1].isprintable(), said  # no control character reaches the terminal
    match = _MESSAGE.match(said)
    assert match is not None and match["file"] == str(path), said
    return (int(match["line"]) if match["line"] else None), match["key"]


def test_the_base_document_is_valid(workdir: Path) -> None:
    text, _ = render(BASE)
    path = workdir / "base.toml"
    path.write_text(text)
    path.chmod(0o600)
    load_config(path)
    code, said = run_check(path)
    assert code == cli.EXIT_USAGE and f'no target "{ABSENT}"' in said


@pytest.mark.fault(
    "Configuration with random keys, values and types at every key (hypothesis)",
    did="Exited 2 with one line naming the file, the dotted key and the line it is on; never a "
    "traceback, and nothing was connected to.",
    lost=0,
)
@SETTINGS
@given(doc=documents(), private=st.booleans())
def test_random_values_at_every_key_name_the_file_key_and_line(
    workdir: Path, doc: dict[str, Any], private: bool
) -> None:
    text, where = render(doc)
    path = workdir / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600 if private else 0o644)
    code, said = run_check(path)
    assert code == cli.EXIT_USAGE, said
    line, key = parse(path, said)
    assert key, said
    if f'no target "{ABSENT}"' in said:
        # A valid configuration: only the target asked for is not in it. The same file
        # lists the runs of its journal (none) and exits 0.
        event("valid configuration")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["--config", str(path), "runs"]) == cli.EXIT_OK
        return
    event("refused, with a line" if line is not None else "refused, key not in the file")
    assert line == expected_line(key, where), f"{said}\n{text}"
    if line is not None:
        # The key named is on that line (or it is the table the missing key belongs in).
        assert 1 <= line <= text.count("\n")


def damaged(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for position, length, replacement in edits:
        at = position % (len(out) + 1)
        out[at : at + length] = replacement
    return bytes(out)


BASE_BYTES = render(BASE)[0].encode()
BAD_BYTES = st.one_of(
    st.binary(max_size=200),
    st.builds(
        damaged,
        st.just(BASE_BYTES),
        st.lists(
            st.tuples(
                st.integers(0, len(BASE_BYTES)),
                st.integers(0, 8),
                st.one_of(
                    st.binary(max_size=4),
                    st.sampled_from([b'"', b"'", b"[", b"]]", b"=", b"\n", b"{", b",", b"\xff"]),
                ),
            ),
            min_size=1,
            max_size=4,
        ),
    ),
)


@pytest.mark.fault(
    "Configuration file that is not TOML: random bytes, or a valid file with bytes cut or "
    "inserted (hypothesis)",
    did="Exited 2 with one line naming the file and the line of the damage (and the table it is "
    "in); never a traceback.",
    lost=0,
)
@SETTINGS
@given(data=BAD_BYTES)
def test_damaged_bytes_name_the_file_and_line(workdir: Path, data: bytes) -> None:
    path = workdir / "damaged.toml"
    path.write_bytes(data)
    path.chmod(0o600)
    code, said = run_check(path)
    assert code == cli.EXIT_USAGE, said
    line, key = parse(path, said)
    syntax = "invalid TOML" in said or "not UTF-8" in said
    event("not TOML (or not UTF-8)" if syntax else "TOML, refused by the validator")
    if syntax:
        assert line is not None and 1 <= line <= max(1, data.count(b"\n") + 1), said
    else:
        assert key, said  # it parsed: the validator names the key
