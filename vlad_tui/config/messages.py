"""How configuration errors show what the file said: quoted values, dotted keys, TOML types
and "did you mean" hints."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any

#: The TOML type of a value, as the messages name it (bool before int: a bool is an int).
TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def quoted(value: str) -> str:
    """A value from the file, quoted on one line (quotes and anything unprintable escaped)."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def key_text(part: str) -> str:
    """One part of a dotted key as the messages show it: bare, else a quoted TOML string
    (so ``""``, ``"a.b"`` and ``"a]b"`` stay visible and unambiguous)."""
    return part if _BARE_KEY.fullmatch(part) else quoted(part)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean "X"?`` for the closest of ``choices``, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def type_name(value: Any) -> str:
    """The TOML type of ``value`` ("an integer", "a table", …)."""
    for kind, name in TOML_TYPES:
        if isinstance(value, kind):
            return name
    return "a date/time" if value is not None else "nothing"
