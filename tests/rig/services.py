"""How a test reacts to a missing service: skip on a developer's machine, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(what: str, hint: str) -> None:
    """Stop the test: ``pytest.fail`` when ``CI`` is set (never skip there), else skip."""
    message = f"{what} is not available: {hint}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
