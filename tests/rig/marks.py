"""Every test that uses a real service carries the ``integration`` mark.

The rig's fixtures (:data:`SERVICE_FIXTURES`) start real PostgreSQL, sshd and pm2. The conftest
refuses a collection where a test requests one of them without the mark, and fails a test that
pulled one in at run time (``request.getfixturevalue``) without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

#: Fixtures of tests/rig that need a real service.
SERVICE_FIXTURES = frozenset({"pg", "peludosclick", "sshd", "pm2", "sample_app"})
MARK = "integration"


class _Item(Protocol):
    nodeid: str
    fixturenames: list[str]

    def get_closest_marker(self, name: str) -> object | None: ...


def services_used(fixturenames: Iterable[str]) -> list[str]:
    return sorted(SERVICE_FIXTURES.intersection(fixturenames))


def unmarked(items: Iterable[_Item]) -> list[str]:
    """``nodeid (fixtures)`` of every item that uses a service fixture without the mark."""
    return [
        f"{item.nodeid} ({', '.join(used)})"
        for item in items
        if (used := services_used(item.fixturenames)) and item.get_closest_marker(MARK) is None
    ]
