"""How values are shown to the operator: times, sizes, absent values (UI-free, one place).

Used by the Details pane, the run report and the operations' output lines, so a backup's size
or a lock's age reads the same everywhere: ``when`` gives local time with age, ``size`` a unit
that fits, ``value`` "–" for an absent value, and ``field`` picks one of them by the key's name
(``*_at`` → time, ``size``/``*_bytes`` → size).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

#: Shown for an absent value (``None``, empty string).
ABSENT = "–"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
#: Epoch seconds earlier than this (2001-09-09) are not taken for timestamps.
_EPOCH_MIN = 1e9
_TIME_KEYS = ("_at", "_time", "timestamp")
_SIZE_KEYS = ("size", "_bytes", "bytes")


def size(n: float | int | None) -> str:
    """``512 B``, ``37.2 KiB``, ``1.5 MiB``, ``2.0 GiB``: the largest unit under 1024."""
    if n is None:
        return ABSENT
    amount = float(n)
    for unit in _UNITS:
        if abs(amount) < 1024 or unit == _UNITS[-1]:
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """``just now``, ``42 s``, ``5 min``, ``3 h 05 min``, ``2 d 4 h``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def when(ts: float | int | None, *, now: float | None = None) -> str:
    """Local time with its age: ``2026-12-01 23:14:05 (5 min ago)``; "–" when absent."""
    if ts is None or isinstance(ts, bool):
        return ABSENT
    ts = float(ts)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    delta = (time.time() if now is None else now) - ts
    if delta < -1:
        return f"{stamp} (in {age(-delta)})"
    return f"{stamp} ({age(delta)} ago)" if delta >= 1 else f"{stamp} (just now)"


def value(x: Any) -> str:
    """One line for any value: absent → "–", booleans yes/no, compact floats, lists and
    mappings joined (never Python's ``repr``)."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return ABSENT
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.3f}".rstrip("0").rstrip(".")
    if isinstance(x, Mapping):
        return ", ".join(f"{k}={field(str(k), v)}" for k, v in x.items()) or ABSENT
    if isinstance(x, list | tuple | set | frozenset):
        # Records (pm2 processes, migrations) are told apart by "; ", plain items by ", ".
        sep = "; " if any(isinstance(v, Mapping) for v in x) else ", "
        return sep.join(value(v) for v in x) or ABSENT
    return str(x)


def is_time_key(key: str) -> bool:
    return key.endswith(_TIME_KEYS)


def is_size_key(key: str) -> bool:
    return key == "size" or key.endswith(_SIZE_KEYS)


def field(key: str, x: Any, *, now: float | None = None) -> str:
    """``x`` formatted for its key: ``*_at`` epoch seconds as :func:`when`, ``size`` and
    ``*_bytes`` as :func:`size`, everything else as :func:`value`."""
    number = isinstance(x, int | float) and not isinstance(x, bool)
    if number and is_time_key(key) and x >= _EPOCH_MIN:
        return when(x, now=now)
    if number and is_size_key(key):
        return size(x)
    return value(x)
