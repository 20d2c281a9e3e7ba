"""The plan's checklist: items tick themselves from step results; manual ones take ``space``.

Every phase screen shows the same items (one count across phases); the phase's own items come
first, marked ``»``, and the title counts them apart.
"""

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

#: Marks the items of the phase on screen.
OWN_MARK = "»"


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

    def __init__(
        self, items: Iterable[ChecklistItem], *, phase: int = 0, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.phase = phase
        self.items = {item.id: item for item in items}
        self.checked: dict[str, bool] = dict.fromkeys(self.items, False)

    @property
    def own(self) -> list[str]:
        """Ids of the items that belong to the phase on screen."""
        return [i.id for i in self.items.values() if self.phase and i.phase == self.phase]

    def _groups(self) -> list[tuple[str, list[ChecklistItem]]]:
        """(title, items): the phase's own items first, then before/during/after, then the
        other phases' checks."""
        items = list(self.items.values())
        groups: list[tuple[str, list[ChecklistItem]]] = []
        own = [i for i in items if self.phase and i.phase == self.phase]
        if own:
            groups.append((f"{OWN_MARK} Fase {self.phase} (esta fase)", own))
        for key, title in GROUP_TITLES.items():
            rest = [i for i in items if i.group == key and i not in own]
            by_phase = sorted({i.phase for i in rest})
            for number in by_phase:
                members = [i for i in rest if i.phase == number]
                groups.append((f"{title} {number}" if key == "phase" else title, members))
        known = set(GROUP_TITLES)
        for key in sorted({i.group for i in items} - known):
            groups.append((key, [i for i in items if i.group == key and i not in own]))
        return [(t, members) for t, members in groups if members]

    def on_mount(self) -> None:
        options: list[Option | None] = []
        for title, members in self._groups():
            if options:
                options.append(None)
            options.append(Option(Text(title, style="bold"), disabled=True))
            options.extend(Option(self._prompt(item.id), id=item.id) for item in members)
        self.add_options(options)
        self._update_title()

    def _prompt(self, item_id: str) -> Text:
        item = self.items[item_id]
        done = self.checked.get(item_id, False)
        mark = Text(f"{OWN_MARK} " if item_id in self.own else "  ", style="bold")
        box = Text("[x] " if done else "[ ] ", style="bold green" if done else "")
        text = Text(item.text, style="" if item_id in self.own or not item.phase else "dim")
        hint = Text("" if item.manual else " (auto)", style="dim")
        return Text.assemble(mark, box, text, hint)

    def _update_title(self) -> None:
        done = sum(self.checked.values())
        title = f"Checklist {done}/{len(self.items)}"
        own = self.own
        if own:
            own_done = sum(self.checked[i] for i in own)
            title += f" · {OWN_MARK} fase {self.phase}: {own_done}/{len(own)}"
        self.border_title = title

    def next_open(self, item_ids: Iterable[str] | None = None) -> str | None:
        """The first unticked manual item (of ``item_ids``, default: the phase's own)."""
        for item_id in self.own if item_ids is None else item_ids:
            item = self.items.get(item_id)
            if item is not None and item.manual and not self.checked.get(item_id):
                return item_id
        return None

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
