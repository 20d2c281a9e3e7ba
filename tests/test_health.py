"""Health check of the real sample app under pm2, through a real SSH port forward."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.rig.pm2 import SampleApp
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.ops.health import check_health
from vlad_tui.transport import LocalTransport, SshTransport

pytestmark = pytest.mark.integration


@pytest.fixture
async def ssh(
    sshd: SshdServer, sample_app: SampleApp
) -> AsyncIterator[tuple[Target, SshTransport]]:
    target = sshd.target(health_url=sample_app.health_url, app_dir=str(sample_app.app_dir))
    transport = SshTransport(target)
    try:
        yield target, transport
    finally:
        await transport.close()


async def test_health_through_ssh_forward(ssh: tuple[Target, SshTransport]) -> None:
    target, transport = ssh
    result = await check_health(target, transport)
    assert result.ok, result.describe()
    assert result.status == 200
    assert '"status":"ok"' in result.body.replace(" ", "")
    assert 0 < result.latency < 5
    assert result.describe().startswith(f"GET {target.health_url}: HTTP 200 in ")
    # The request went through the forward, not straight to the port.
    app_port = urlsplit(target.health_url).port
    assert app_port is not None
    endpoint = await transport.forward("127.0.0.1", app_port)
    assert endpoint.path is not None and endpoint.port == app_port


async def test_http_error_is_not_ok(ssh: tuple[Target, SshTransport]) -> None:
    target, transport = ssh
    url = target.health_url.replace("/health", "/no-such-page")
    result = await check_health(target, transport, url=url)
    assert result.status == 404 and not result.ok
    assert "Cannot GET /no-such-page" in result.body
    assert result.to_dict()["ok"] is False


async def test_nothing_listening_is_a_clear_failure(ssh: tuple[Target, SshTransport]) -> None:
    target, transport = ssh
    url = f"http://127.0.0.1:{free_port()}/health"
    result = await check_health(target, transport, url=url, timeout=5)
    assert result.status is None and not result.ok
    assert result.error
    assert "no answer" in result.describe()


async def test_local_transport_and_bad_url() -> None:
    target = Target("production", health_url=f"http://127.0.0.1:{free_port()}/health")
    transport = LocalTransport()
    result = await check_health(target, transport, timeout=2)
    assert result.status is None and "refused" in (result.error or "").lower()
    with pytest.raises(VladError, match="not an http"):
        await check_health(target, transport, url="ftp://example.com/health")
