"""The plan's checklist: items tick themselves from step results; manual ones take ``space``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from vlad_tui.tui.widgets._css import sibling_css

if TYPE_CHECKING:
    from vlad_tui.runbook.model import ChecklistItem

GROUP_TITLES = {
    "before": "Antes del despliegue",
    "during": "Durante el despliegue",
    "after": "Después del despliegue",
    "phase": "Verificaciones de la fase",
}


class Checklist(OptionList):
    """Checklist items grouped before / during / after / phase checks."""

    DEFAULT_CSS = sibling_css(__file__)

    BINDINGS: ClassVar = [Binding("space", "tick", "Tick", key_display="␣", id="checklist.tick")]

    class TickRequested(Message):
        """The operator asked to flip a manual item."""

        def __init__(self, item_id: str, checked: bool) -> None:
            super().__init__()
            self.item_id = item_id
            self.checked = checked

    def __init__(self, items: Iterable[ChecklistItem], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items = {item.id: item for item in items}
        self.checked: dict[str, bool] = dict.fromkeys(self.items, False)

    def on_mount(self) -> None:
        self.border_title = "Checklist"
        options: list[Option | None] = []
        groups = [g for g in GROUP_TITLES if any(i.group == g for i in self.items.values())]
        groups += sorted({i.group for i in self.items.values()} - set(GROUP_TITLES))
        for group in groups:
            if options:
                options.append(None)
            options.append(
                Option(Text(GROUP_TITLES.get(group, group), style="bold"), disabled=True)
            )
            for item in self.items.values():
                if item.group == group:
                    options.append(Option(self._prompt(item.id), id=item.id))
        self.add_options(options)
        self._update_title()

    def _prompt(self, item_id: str) -> Text:
        item = self.items[item_id]
        done = self.checked.get(item_id, False)
        box = Text("[x] " if done else "[ ] ", style="bold green" if done else "")
        text = Text(item.text)
        hint = Text("" if item.manual else " (auto)", style="dim")
        return Text.assemble(box, text, hint)

    def _update_title(self) -> None:
        done = sum(self.checked.values())
        self.border_title = f"Checklist {done}/{len(self.items)}"

    def set_checked(self, item_id: str, checked: bool) -> None:
        """Reflect an item's state (ignores items not shown here)."""
        if item_id not in self.items:
            return
        self.checked[item_id] = checked
        self.replace_option_prompt(item_id, self._prompt(item_id))
        self._update_title()

    @property
    def highlighted_item(self) -> ChecklistItem | None:
        if self.highlighted is None:
            return None
        option_id = self.get_option_at_index(self.highlighted).id
        return self.items.get(option_id) if option_id else None

    def action_tick(self) -> None:
        item = self.highlighted_item
        if item is None:
            return
        if not item.manual:
            self.notify("This item ticks itself when its step succeeds.", severity="warning")
            return
        self.post_message(self.TickRequested(item.id, not self.checked.get(item.id, False)))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_tick()
