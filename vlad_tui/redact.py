"""The one place that learns secret values and scrubs them from everything that leaves us.

Every line bound for the screen, a log file, the journal or a report goes through
:func:`scrub` (or :func:`scrub_obj` for structured data). Secrets are learnt from database
URLs (:func:`add_url`), ``.env`` files (:func:`add_env`) and explicit values
(:func:`add_secret`). There is one process-wide :class:`Redactor`, :data:`REDACTOR`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from vlad_tui.dotenv import parse_dotenv

__all__ = [
    "MASK",
    "REDACTOR",
    "SECRET_KEY_MARKERS",
    "Redactor",
    "add_env",
    "add_secret",
    "add_url",
    "parse_dotenv",
    "reset",
    "scrub",
    "scrub_obj",
    "url_password",
]

MASK = "***"
#: An environment key containing one of these (case-insensitive) holds a secret.
SECRET_KEY_MARKERS = ("PASSWORD", "PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PRIVATE")
# Values under secret-looking keys that are plainly flags, not secrets; scrubbing them would
# mangle every log line ("true", "1").
_NOT_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none"})
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def url_password(url: str) -> str | None:
    """The password in a URL's userinfo (or its ``password=`` query parameter), as written."""
    url = url.strip()
    if not _URL_RE.match(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        if ":" in userinfo:
            return userinfo.partition(":")[2]
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if name.lower() == "password" and value:
            return value
    return None


class Redactor:
    """A set of known secrets and a scrubber that replaces each with ``***``, longest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def __len__(self) -> int:
        return len(self._secrets)

    def __contains__(self, value: object) -> bool:
        return value in self._secrets

    def add(self, secret: str | None) -> None:
        """Learn one secret value (empty and whitespace-only values are ignored)."""
        if not secret or not secret.strip():
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
            stripped = secret.strip()
            if stripped != secret:
                # Tools often print the value trimmed.
                self._secrets.add(stripped)
            self._rebuild()

    def add_many(self, secrets: Iterable[str | None]) -> None:
        """Learn several secret values."""
        for secret in secrets:
            self.add(secret)

    def add_url(self, url: str | None) -> str | None:
        """Learn the password of a (database) URL in every form it may be printed in.

        That is: as written, percent-decoded, and percent-encoded (both ``%20`` and ``+``
        styles). Returns the decoded password, or ``None`` when the URL has none.
        """
        if not url:
            return None
        raw = url_password(url)
        if not raw:
            return None
        decoded = unquote(raw)
        self.add_many({raw, decoded, quote(decoded, safe=""), quote_plus(decoded, safe="")})
        return decoded

    def add_env(self, env: Mapping[str, str] | str) -> None:
        """Learn secrets from an environment mapping (or ``.env`` text).

        Values of secret-looking keys (see :data:`SECRET_KEY_MARKERS`) and passwords inside
        any URL-valued entry (``DATABASE_URL``, ``SHADOW_DATABASE_URL``, …) are learnt.
        """
        if isinstance(env, str):
            env = parse_dotenv(env)
        for key, value in env.items():
            if not isinstance(value, str) or not value:
                continue
            if _URL_RE.match(value.strip()):
                self.add_url(value)
            if any(marker in key.upper() for marker in SECRET_KEY_MARKERS):
                if value.strip().lower() in _NOT_SECRET_VALUES:
                    continue
                if _URL_RE.match(value.strip()) and url_password(value) is None:
                    # A URL without credentials is an address, not a secret.
                    continue
                self.add(value)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def scrub_obj(self, obj: Any) -> Any:
        """Scrub every string inside dicts, lists and tuples (keys too); other values as is."""
        if self._pattern is None:
            return obj
        return self._scrub_obj(obj)

    def _scrub_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, Mapping):
            return {self._scrub_obj(k): self._scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple | set | frozenset):
            return [self._scrub_obj(v) for v in obj]
        return obj

    def reset(self) -> None:
        """Forget every secret (tests)."""
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def _rebuild(self) -> None:
        ordered = sorted(self._secrets, key=lambda s: (-len(s), s))
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))


#: The process-wide redactor.
REDACTOR = Redactor()


def add_secret(secret: str | None) -> None:
    """Learn one secret value."""
    REDACTOR.add(secret)


def add_url(url: str | None) -> str | None:
    """Learn the password of a URL (see :meth:`Redactor.add_url`)."""
    return REDACTOR.add_url(url)


def add_env(env: Mapping[str, str] | str) -> None:
    """Learn the secrets of an environment mapping or ``.env`` text."""
    REDACTOR.add_env(env)


def scrub(text: str) -> str:
    """Replace every known secret in ``text`` with ``***``."""
    return REDACTOR.scrub(text)


def scrub_obj(obj: Any) -> Any:
    """Scrub every string inside a JSON-like structure."""
    return REDACTOR.scrub_obj(obj)


def reset() -> None:
    """Forget every secret (for tests)."""
    REDACTOR.reset()
