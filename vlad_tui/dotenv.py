"""A small, forgiving ``.env`` parser (the format Prisma and NestJS read)."""

from __future__ import annotations

import re

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines into a dict; later keys win.

    Understands ``export KEY=…``, blank lines, ``#`` comments (whole-line, and after an
    unquoted value when preceded by whitespace), single, double and backtick quotes (double
    quotes take ``\\n``-style escapes and may span lines). Malformed lines are skipped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    result: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        eol = text.find("\n", pos)
        if eol == -1:
            eol = end
        line = text[pos:eol].strip()
        if not line or line.startswith("#") or "=" not in line:
            pos = eol + 1
            continue
        if re.match(r"export\s", line):
            line = line[len("export") :].lstrip()
        key = line.partition("=")[0]
        key = key.strip()
        if not _KEY.fullmatch(key):
            pos = eol + 1
            continue
        value_start = pos + text[pos:eol].index("=") + 1
        while value_start < eol and text[value_start] in " \t":
            value_start += 1
        quote = text[value_start] if value_start < eol else ""
        if quote in ("'", '"', "`"):
            parsed = _scan_quoted(text, value_start + 1, quote)
            if parsed is not None:
                value, after = parsed
                result[key] = value
                next_eol = text.find("\n", after)
                pos = end if next_eol == -1 else next_eol + 1
                continue
        result[key] = _unquoted(text[value_start:eol])
        pos = eol + 1
    return result


def _scan_quoted(text: str, start: int, quote: str) -> tuple[str, int] | None:
    """Read a quoted value starting after its opening quote; ``None`` if never closed."""
    out: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and quote == '"' and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
        out.append(ch)
        i += 1
    return None


def _unquoted(raw: str) -> str:
    match = re.search(r"\s#", raw)
    if match:
        raw = raw[: match.start()]
    return raw.strip()
