"""Fixtures with real services live in tests/rig/: PostgreSQL, OpenSSH sshd, pm2."""

from collections.abc import Iterator

import pytest

from tests.rig.marks import MARK, services_used, unmarked
from vlad_tui import redact

pytest_plugins = ["tests.rig.postgres", "tests.rig.sshd", "tests.rig.pm2"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs a real service must say so: ``pytest.mark.integration``. The fast
    tests run first, so a broken core fails in the first minute, not after the rigs."""
    bad = unmarked(items)  # type: ignore[arg-type]
    if bad:
        raise pytest.UsageError(
            "tests using a real service without @pytest.mark.integration "
            "(add `pytestmark = pytest.mark.integration`):\n  " + "\n  ".join(bad)
        )
    items.sort(key=lambda item: item.get_closest_marker(MARK) is not None)


@pytest.fixture(autouse=True)
def _service_tests_are_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """The same check for services pulled in at run time (``request.getfixturevalue``)."""
    yield
    used = services_used(request.fixturenames)
    if used and request.node.get_closest_marker(MARK) is None:
        pytest.fail(
            f"{request.node.nodeid} used {', '.join(used)} without @pytest.mark.{MARK}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    """The redactor is process-wide: a secret one test teaches it must not leak into the next."""
    redact.reset()
    yield
    redact.reset()
