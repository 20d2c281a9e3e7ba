"""Target picker: shown when several targets are configured and none was given."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from vlad_tui.config import Target


def describe(target: Target) -> Text:
    text = Text(target.name, style="bold")
    where = "this machine" if target.is_local else target.ssh_label
    text.append(f"  {where}  {target.app_dir}", style="dim")
    return text


class PickerScreen(ModalScreen[str | None]):
    """Returns the chosen target's name (``None`` on Escape)."""

    CSS_PATH = "picker.tcss"
    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="picker.cancel")]

    def __init__(self, targets: list[Target]) -> None:
        super().__init__()
        self.targets = targets

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-dialog"):
            yield Static("Choose a target (enter):")
            yield OptionList(*(Option(describe(t), id=t.name) for t in self.targets))

    def on_mount(self) -> None:
        self.query_one("#picker-dialog").border_title = "Target"
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
