"""Pick one kept database to drop, or one old release to remove (palette: "Drop a kept
database…", "Remove an old release…").

The candidates are listed in a worker (read-only) with size and age; one that may not go now
(someone is connected, pm2 uses it, it is the previous release) is shown with the reason and
cannot be picked. Enter on one closes the picker; the app then runs the drop step, whose
confirmation shows the exact command and asks for the name.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from vlad_tui.tui.wizard import Wizard

Kind = Literal["database", "release"]


@dataclass(frozen=True)
class Candidate:
    """One line of the picker: ``key`` is what the drop step is given (name or release id)."""

    key: str
    text: str
    refusal: str | None = None


Loader = Callable[[], Awaitable[list[Candidate]]]

TITLES: dict[Kind, str] = {"database": "Drop a kept database", "release": "Remove an old release"}
INTRO: dict[Kind, str] = {
    "database": (
        "Databases rollbacks set aside (_failed_: production as it was before a rollback, "
        "with the rows written after its backup; _restore_: restores not kept). Pick one "
        "(enter); the next screen shows the DROP and asks for its name."
    ),
    "release": (
        "Releases on disk, oldest first. Those pm2 uses and the previous release (the code "
        "rollback's) cannot be picked. Pick one (enter); the next screen shows the rm and "
        "asks for its id."
    ),
}
EMPTY: dict[Kind, str] = {
    "database": "No _failed_ or _restore_ database: nothing to drop.",
    "release": "No release on disk.",
}


def option(candidate: Candidate) -> Option:
    text = Text(candidate.text)
    if candidate.refusal:
        text.stylize("dim")
        text.append(f"\n  kept: {candidate.refusal}", style="yellow")
    return Option(text, id=candidate.key, disabled=candidate.refusal is not None)


async def load_candidates(app: Wizard, kind: Kind) -> list[Candidate]:
    """The candidates of ``kind`` on the app's target (read-only)."""
    session = app.session
    if session is None:
        raise RuntimeError("no target chosen")
    now = app.clock()
    if kind == "release":
        releases = await session.old_releases()
        return [Candidate(c.id, c.summary(now), c.refusal) for c in releases]
    kept = await session.kept_databases()
    return [Candidate(c.name, c.kept.describe(now), c.refusal) for c in kept]


class HousekeepingScreen(ModalScreen[str | None]):
    """Returns the picked candidate's key (``None`` on Escape)."""

    CSS_PATH = "housekeeping.tcss"
    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="housekeeping.cancel")]

    app: Wizard  # type: ignore[assignment]

    def __init__(self, kind: Kind, loader: Loader | None = None) -> None:
        super().__init__()
        self.kind: Kind = kind
        self.loader = loader
        self.candidates: list[Candidate] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="housekeeping-dialog"):
            yield Static(INTRO[self.kind], id="housekeeping-intro")
            yield OptionList(id="housekeeping-list")
            yield Static(Text("loading…", style="dim"), id="housekeeping-status")

    def on_mount(self) -> None:
        dialog = self.query_one("#housekeeping-dialog")
        dialog.border_title = TITLES[self.kind]
        dialog.border_subtitle = "enter picks · escape closes"
        self.query_one(OptionList).focus()
        self.load()

    @work(group="housekeeping", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        status = self.query_one("#housekeeping-status", Static)
        started = time.monotonic()
        try:
            loader = self.loader or (lambda: load_candidates(self.app, self.kind))
            self.candidates = await loader()
        except Exception as exc:  # shown, not raised: the operator reads it and closes
            status.update(Text(f"Cannot list them: {exc}", style="bold red"))
            return
        listing = self.query_one(OptionList)
        listing.clear_options()
        listing.add_options([option(c) for c in self.candidates])
        free = sum(1 for c in self.candidates if c.refusal is None)
        if not self.candidates:
            status.update(Text(EMPTY[self.kind], style="dim"))
        else:
            status.update(
                Text(
                    f"{len(self.candidates)} listed, {free} can be picked "
                    f"({time.monotonic() - started:.1f} s)",
                    style="dim",
                )
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
