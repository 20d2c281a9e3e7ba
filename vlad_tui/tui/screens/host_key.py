"""The host key of a server vlad-tui has never seen: show it, ask, remember the answer.

:class:`HostKeyScreen` shows the host, port, key type and SHA256 fingerprint and asks the
operator to type the host name (or ``trust``) after comparing the fingerprint out of band;
Escape refuses. :func:`ask_to_trust` runs the whole decision: the modal, then on yes the key is
appended to the known_hosts file the target reads (checking stays on: the next connection
verifies the key like any other), and the decision is journaled either way as a short run
(``meta.kind = "host_key"``) naming the fingerprint and who decided.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from vlad_tui.errors import TransportError
from vlad_tui.tui.screens.confirm import keep_early_key
from vlad_tui.tui.widgets.typed_input import TypedInput

if TYPE_CHECKING:
    from vlad_tui.config import Target
    from vlad_tui.errors import HostKeyUnknown
    from vlad_tui.journal import Journal
    from vlad_tui.tui.wizard import Wizard

TRUST_WORD = "trust"


def answers(typed: str, host: str) -> bool:
    """Whether ``typed`` trusts the key: the host name exactly, or the word ``trust``."""
    return typed in (host, TRUST_WORD)


def render_key(error: HostKeyUnknown) -> Text:
    """Plain Text (never markup): what identifies the key."""
    out = Text()
    for label, value in (
        ("Host        ", error.host),
        ("Port        ", str(error.port)),
        ("Key type    ", error.algorithm or "?"),
        ("Fingerprint ", error.fingerprint or "?"),
    ):
        out.append(label, style="bold")
        out.append(f"{value}\n")
    out.append("Trusting it appends the key to ", style="dim")
    out.append(error.known_hosts, style="dim")
    return out


class HostKeyScreen(ModalScreen[bool]):
    """Returns True when the operator typed the host name (or ``trust``); False on Escape."""

    CSS_PATH = "host_key.tcss"
    AUTO_FOCUS = "#host-key-input"
    BINDINGS: ClassVar = [Binding("escape", "refuse", "Do not trust", id="host_key.refuse")]

    def __init__(self, error: HostKeyUnknown) -> None:
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        host = self.error.host
        with Vertical(id="host-key-dialog"):
            yield Static(
                Text("This server's host key is not in known_hosts", style="bold"),
                id="host-key-title",
            )
            yield Static(render_key(self.error), id="host-key-details")
            yield Static(
                Text(
                    "Compare the fingerprint with the one the server's administrator gives "
                    "you (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the server). A "
                    "different one means someone may be in the middle: do not trust it.",
                    style="yellow",
                ),
                id="host-key-warning",
            )
            prompt = Text("Type ")
            prompt.append(host, style="bold reverse")
            prompt.append(" (or ")
            prompt.append(TRUST_WORD, style="bold reverse")
            prompt.append(") to trust this key:")
            yield Static(prompt, id="host-key-prompt")
            yield TypedInput(id="host-key-input", select_on_focus=False)
            hint = Text("escape: do not trust, stay disconnected", style="dim")
            yield Static(hint, id="host-key-why")
            with Horizontal(id="host-key-buttons"):
                yield Button("Do not trust", id="refuse", variant="primary")
                yield Button("Trust", id="trust", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#host-key-dialog").border_title = "Unknown host key"

    @property
    def typed(self) -> str:
        return self.query_one("#host-key-input", Input).value

    def on_key(self, event: events.Key) -> None:
        keep_early_key(self, self.query_one("#host-key-input", Input), event, self._submit)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#trust", Button).disabled = not answers(self.typed, self.error.host)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit(event.value)

    def _submit(self, typed: str | None = None) -> None:
        if answers(self.typed if typed is None else typed, self.error.host):
            self.dismiss(True)
            return
        text = f"Type {self.error.host} or {TRUST_WORD} exactly (escape: do not trust)."
        self.query_one("#host-key-why", Static).update(Text(text, style="bold red"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "trust":
            self._submit()
        else:
            self.dismiss(False)

    def action_refuse(self) -> None:
        self.dismiss(False)


def journal_decision(
    journal: Journal | None, target: Target, error: HostKeyUnknown, *, trusted: bool
) -> str | None:
    """Journal the decision as a finished run of its own; its run id (None without a journal)."""
    if journal is None:
        return None
    decision = "trusted" if trusted else "refused"
    run = journal.start_run(target.name, meta={"kind": "host_key", "decision": decision})
    try:
        run.record(
            "host_key",
            decision=decision,
            host=error.host,
            port=error.port,
            algorithm=error.algorithm,
            fingerprint=error.fingerprint,
            known_hosts=error.known_hosts if trusted else "",
            operator=run.operator,
        )
        run.finish("ok")
    finally:
        run.close()
    return run.run_id


async def ask_to_trust(app: Wizard, target: Target, error: HostKeyUnknown) -> bool:
    """Ask the operator about ``error``'s key (in a worker); True once it is trusted.

    On yes the key goes into ``error.known_hosts``; on no nothing is written but the journal.
    A key that could not be read from the server is never offered.
    """
    from vlad_tui.transport import known_hosts

    if not error.public_key:
        return False
    trusted = await app.push_screen(HostKeyScreen(error), wait_for_dismiss=True)
    if trusted:
        try:
            await asyncio.to_thread(
                known_hosts.append, error.known_hosts, error.host, error.port, error.public_key
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TransportError(
                f"cannot add the host key to {error.known_hosts}: {reason}; it is not trusted"
            ) from None
    journal_decision(app.journal_or_none, target, error, trusted=bool(trusted))
    return bool(trusted)
