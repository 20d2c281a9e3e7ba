"""Smoke checks against the real sample app under pm2, through a real SSH port forward."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.rig.pm2 import SampleApp
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import SmokeCheck, Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine
from vlad_tui.ops.smoke import base_url_of, order_checks, run_smoke_checks
from vlad_tui.transport import SshTransport

pytestmark = pytest.mark.integration


@pytest.fixture
async def ssh(
    sshd: SshdServer, sample_app: SampleApp
) -> AsyncIterator[tuple[Target, SshTransport]]:
    target = sample_app.target("production", sshd=sshd)
    transport = SshTransport(target)
    try:
        yield target, transport
    finally:
        await transport.close()


async def test_checks_through_the_tunnel_health_first(
    ssh: tuple[Target, SshTransport], sample_app: SampleApp
) -> None:
    target, transport = ssh
    checks = [
        SmokeCheck("GET", "/version", 200),
        SmokeCheck("GET", "/no-such-page", 200),  # answers 404: fails
        SmokeCheck("GET", "/no-such-page", 404),  # a 404 that is expected: passes
        SmokeCheck("GET", "/health", 404),  # expects 404, gets 200: fails
        SmokeCheck("HEAD", "/health", 404),  # the sample only serves GET /health
        SmokeCheck("POST", "/health", 404),
    ]
    lines: list[OutputLine] = []
    base = base_url_of(target.health_url)
    assert base == f"http://127.0.0.1:{sample_app.port}"
    results = await run_smoke_checks(target, transport, base, checks, sink=lines.append)

    got = [(r.check.method, r.check.path, r.check.expect, r.status, r.ok) for r in results]
    assert got == [
        ("GET", "/health", 404, 200, False),
        ("HEAD", "/health", 404, 404, True),
        ("POST", "/health", 404, 404, True),
        ("GET", "/version", 200, 200, True),
        ("GET", "/no-such-page", 200, 404, False),
        ("GET", "/no-such-page", 404, 404, True),
    ]
    assert all(0 < r.latency < 5 for r in results)
    version = results[3]
    assert '"name":"backend-vlad"' in version.body.replace(" ", "")
    assert [line.stream for line in lines] == [
        "stderr",
        "stdout",
        "stdout",
        "stdout",
        "stderr",
        "stdout",
    ]
    assert lines[4].text == (
        f"FAILED GET {base}/no-such-page: HTTP 404 (expected 200) in "
        f"{results[4].latency * 1000:.0f} ms"
    )
    data = results[4].to_dict()
    assert data["ok"] is False and data["status"] == 404 and data["expect"] == 200
    assert "Cannot GET /no-such-page" in data["body"]


async def test_nothing_listening_fails_every_check(ssh: tuple[Target, SshTransport]) -> None:
    target, transport = ssh
    base = f"http://127.0.0.1:{free_port()}"
    results = await run_smoke_checks(target, transport, base, [SmokeCheck()], timeout=5)
    assert len(results) == 1
    assert results[0].status is None and not results[0].ok and results[0].error
    assert "no answer" in results[0].describe()
    with pytest.raises(VladError, match="not an http"):
        await run_smoke_checks(target, transport, "ftp://h", [SmokeCheck()])


def test_order_and_base_url() -> None:
    checks = [SmokeCheck("GET", "/a"), SmokeCheck("GET", "/healthz"), SmokeCheck("GET", "/b")]
    assert [c.path for c in order_checks(checks, "/healthz")] == ["/healthz", "/a", "/b"]
    assert [c.path for c in order_checks(checks)] == ["/a", "/healthz", "/b"]
    assert base_url_of("https://h.example/health?x=1") == "https://h.example"
    assert base_url_of("http://127.0.0.1:3335/health", port=3336) == "http://127.0.0.1:3336"
