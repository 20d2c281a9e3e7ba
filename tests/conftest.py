"""Fixtures with real services live in tests/rig/: PostgreSQL, OpenSSH sshd, pm2."""

from collections.abc import Iterator

import pytest

from vlad_tui import redact

pytest_plugins = ["tests.rig.postgres", "tests.rig.sshd", "tests.rig.pm2"]


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    """The redactor is process-wide: a secret one test teaches it must not leak into the next."""
    redact.reset()
    yield
    redact.reset()
