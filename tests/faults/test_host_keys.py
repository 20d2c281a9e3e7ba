"""Host keys against a real OpenSSH sshd: an unknown key is shown and asked about, a changed
key is refused with both fingerprints.

The TUI's modal is driven with Pilot (``App.run_test``) over the real server; trusting writes
the key into the target's known_hosts file, which the next connection verifies like any other
(checking is never turned off). ``check`` (no one to ask) keeps refusing and says how to trust.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from tests.rig.pilot import wait_until
from tests.rig.sshd import SshdServer
from vlad_tui import cli
from vlad_tui.config import Config, Project, Target
from vlad_tui.errors import HostKeyChanged, HostKeyUnknown
from vlad_tui.journal import Journal
from vlad_tui.transport import known_hosts
from vlad_tui.transport.ssh import SshTransport
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.screens.host_key import HostKeyScreen

pytestmark = pytest.mark.integration
SIZE = (80, 24)


def screen_text(app: VladApp) -> str:
    """The text of every Static on the current screen, as rendered at the terminal's width."""
    console = Console(width=SIZE[0], color_system=None, record=True)
    for widget in app.screen.query(Static):
        console.print(widget.content)
    return console.export_text()


def host_key_runs(journal: Journal) -> list[dict]:
    """The journaled host key decisions, oldest first."""
    events = []
    for run in reversed(journal.list_runs()):
        if run.meta.get("kind") == "host_key":
            [event] = journal.load(run.run_id).events_of("host_key")
            assert run.status == "ok"
            events.append(event)
    return events


def app_for(target: Target, tmp_path: Path) -> tuple[VladApp, Journal]:
    journal = Journal(tmp_path / "runs")
    config = Config(tmp_path / "config.toml", Project(), {target.name: target})
    return make_app(config, target=target, journal=journal, environ={}), journal


def changed_known_hosts(sshd: SshdServer, path: Path) -> str:
    """Write a known_hosts naming another key for the server; that key's fingerprint."""
    other = sshd.make_key(f"other_host_{secrets.token_hex(3)}")
    algorithm, blob = Path(f"{other}.pub").read_text().split()[:2]
    path.write_text(f"[127.0.0.1]:{sshd.port} {algorithm} {blob}\n")
    fingerprint = os.popen(f"ssh-keygen -l -E sha256 -f {other}.pub").read().split()[1]
    return fingerprint


@pytest.mark.fault(
    "Unknown host key (first connection to a server), trusted by the operator",
    did="Showed the host, port, key type and SHA256 fingerprint, asked for the host name, "
    "appended the key to the target's known_hosts, journaled who trusted which fingerprint, "
    "then connected with checking still on.",
    lost=0,
)
async def test_unknown_host_key_is_shown_trusted_journaled_and_connects(
    sshd: SshdServer, tmp_path: Path
) -> None:
    file = tmp_path / "ssh" / "known_hosts"  # not there yet: trusting creates it, 0600
    target = sshd.target(known_hosts=file)
    app, journal = app_for(target, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HostKeyScreen), what="the modal")
        await pilot.pause(0.1)
        shown = screen_text(app)
        joined = "".join(line.strip() for line in shown.splitlines())  # a long path wraps
        for text in ("127.0.0.1", str(sshd.port), "ssh-ed25519", sshd.host_fingerprint):
            assert text in shown, text
        assert str(file) in joined, shown
        assert not file.exists()  # nothing written before the answer
        await pilot.press(*"127.0.0.1", "enter")
        await wait_until(
            pilot, lambda: app.connection_state.startswith("connected"), what="connect"
        )
        assert not isinstance(app.screen, HostKeyScreen)
    assert file.stat().st_mode & 0o777 == 0o600
    algorithm, blob = sshd.known_hosts.read_text().split()[1:3]
    assert file.read_text() == f"[127.0.0.1]:{sshd.port} {algorithm} {blob}\n"
    [decision] = host_key_runs(journal)
    assert decision["decision"] == "trusted"
    assert decision["fingerprint"] == sshd.host_fingerprint
    assert decision["host"] == "127.0.0.1" and decision["port"] == sshd.port
    assert decision["operator"] and decision["known_hosts"] == str(file)
    # The next connection verifies the key from the file: no question, no new line.
    fresh = SshTransport(target)
    try:
        assert (await fresh.run("echo ok")).stdout == "ok\n"
    finally:
        await fresh.close()
    assert file.read_text().count("\n") == 1


@pytest.mark.fault(
    "Unknown host key refused by the operator",
    did="Wrote nothing to known_hosts, journaled the refusal with the fingerprint, and the "
    "overview says the host key was not trusted; nothing ran on the server.",
    lost=0,
)
async def test_refused_host_key_writes_nothing_and_says_why(
    sshd: SshdServer, tmp_path: Path
) -> None:
    file = tmp_path / "known_hosts"
    file.write_text("# kept as it is\n")
    app, journal = app_for(sshd.target(known_hosts=file), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HostKeyScreen), what="the modal")
        # A wrong answer keeps the modal open and says what to type.
        await pilot.press(*"yes", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HostKeyScreen)
        why = screen_text(app)
        assert "Type 127.0.0.1 or trust exactly" in why
        await pilot.press("escape")
        await wait_until(pilot, lambda: "not trusted" in app.connection_state, what="the refusal")
        await pilot.pause(0.2)
        overview = " ".join(screen_text(app).split())
        assert "not connected: the host key of 127.0.0.1" in overview
        assert sshd.host_fingerprint in overview
        assert app.facts is None and app.engine is None  # no facts, no run started
    assert file.read_text() == "# kept as it is\n"
    [decision] = host_key_runs(journal)
    assert decision["decision"] == "refused"
    assert decision["fingerprint"] == sshd.host_fingerprint
    assert decision["known_hosts"] == ""


def test_check_refuses_an_unknown_key_with_the_fingerprint_and_how_to_trust_it(
    sshd: SshdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    file = tmp_path / "known_hosts"
    file.write_text("")
    config = tmp_path / "config.toml"
    config.write_text(
        "[project]\n"
        f'journal_dir = "{tmp_path / "runs"}"\n'
        "[targets.production]\n"
        f'host = "127.0.0.1"\nport = {sshd.port}\nuser = "{sshd.user}"\n'
        f'known_hosts = "{file}"\nidentity_file = "{sshd.identity_file}"\n'
        "connect_timeout = 5\n"
    )
    code = cli.main(["--config", str(config), "check", "--target", "production", "--no-monitor"])
    out = capsys.readouterr()
    said = out.out + out.err
    assert code == cli.EXIT_UNHEALTHY
    assert f"unknown host key ssh-ed25519 {sshd.host_fingerprint}" in said
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {file}" in said
    assert "Traceback" not in said
    assert file.read_text() == ""  # never trusted without asking


async def test_the_transport_error_carries_the_key(sshd: SshdServer, tmp_path: Path) -> None:
    file = tmp_path / "known_hosts"
    t = SshTransport(sshd.target(known_hosts=file))
    with pytest.raises(HostKeyUnknown) as info:
        await t.connect()
    await t.close()
    error = info.value
    algorithm, blob = sshd.known_hosts.read_text().split()[1:3]
    assert (error.host, error.port) == ("127.0.0.1", sshd.port)
    assert error.algorithm == algorithm and error.fingerprint == sshd.host_fingerprint
    assert error.public_key == f"{algorithm} {blob}"
    assert error.known_hosts == str(file)


@pytest.mark.fault(
    "Changed host key (the server offers a key other than the one in known_hosts)",
    did="Refused to connect without asking, and showed both the fingerprint known_hosts "
    "expects and the one the server offered, with a possible man-in-the-middle warning.",
    lost=0,
)
async def test_changed_host_key_is_refused_with_both_fingerprints(
    sshd: SshdServer, tmp_path: Path
) -> None:
    file = tmp_path / "known_hosts"
    expected = changed_known_hosts(sshd, file)
    before = file.read_text()
    t = SshTransport(sshd.target(known_hosts=file))
    with pytest.raises(HostKeyChanged) as info:
        await t.connect()
    await t.close()
    error = info.value
    assert error.expected == (f"ssh-ed25519 {expected}",)
    assert error.offered == f"ssh-ed25519 {sshd.host_fingerprint}"
    assert expected in str(error) and sshd.host_fingerprint in str(error)

    app, journal = app_for(sshd.target(known_hosts=file), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "cannot connect" in app.connection_state, what="refusal")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, HostKeyScreen)  # never asked
        overview = " ".join(screen_text(app).split())
        assert "HOST KEY CHANGED" in overview
        assert expected in overview and sshd.host_fingerprint in overview
        assert app.facts is None
    assert file.read_text() == before
    assert host_key_runs(journal) == []


def test_known_hosts_entry_and_append(tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc"
    assert known_hosts.entry("db.example.com", 22, key) == f"db.example.com {key}"
    assert known_hosts.entry("10.0.0.1", 2222, f"{key} comment") == f"[10.0.0.1]:2222 {key}"
    for host, public in (("a b", key), ("h", "ssh-ed25519"), ("h", "rm -rf /"), ("h\n", key)):
        with pytest.raises(ValueError):
            known_hosts.entry(host, 22, public)
    file = tmp_path / "known_hosts"
    file.write_text("old.example.com ssh-ed25519 AAAA")  # no newline at the end
    file.chmod(0o644)
    known_hosts.append(file, "new.example.com", 22, key)
    assert file.read_text().splitlines() == [
        "old.example.com ssh-ed25519 AAAA",
        f"new.example.com {key}",
    ]
    assert file.stat().st_mode & 0o777 == 0o644  # an existing file keeps its mode


async def test_a_known_hosts_that_cannot_be_written_trusts_nothing(
    sshd: SshdServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    file = blocker / "known_hosts"
    app, journal = app_for(sshd.target(known_hosts=file), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HostKeyScreen), what="the modal")
        await pilot.press(*"trust", "enter")
        await wait_until(
            pilot, lambda: "cannot connect" in app.connection_state, what="the failure"
        )
        assert f"cannot add the host key to {file}: Not a directory; it is not trusted" in (
            app.connection_state
        )
        assert app.facts is None
    assert blocker.read_text() == ""
    assert host_key_runs(journal) == []
