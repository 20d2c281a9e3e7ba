"""An input field whose editing keys take effect in the order they were typed.

Textual inserts a printable key in the focused :class:`~textual.widgets.Input`'s own handler,
but runs a key bound to an action (backspace, delete, the cursor keys, enter) only once the key
has bubbled up to the app, a few message queues later. Keys that arrive in one burst, as from a
fast typist over a laggy SSH link, then apply out of order: ``produccion``, four backspaces and
``tion`` came out as ``produccion`` again, and the confirmation said the name did not match.
:class:`TypedInput` runs the input's own bindings where the printable keys go, in order.
This is Textual's open issue #6605; its pull request #6631 makes the same change in Textual,
after which this class can go.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding
from textual.widgets import Input


def _input_actions() -> dict[str, str]:
    """Every key of :class:`Input`'s own bindings, and the action it runs."""
    actions: dict[str, str] = {}
    for binding in Input.BINDINGS:
        if isinstance(binding, Binding):
            for key in binding.key.split(","):
                actions[key.strip()] = binding.action
    return actions


class TypedInput(Input):
    """An :class:`Input` for typed names and reasons: keys act in the order they arrive."""

    ACTIONS: ClassVar[dict[str, str]] = _input_actions()

    async def on_key(self, event: events.Key) -> None:
        action = self.ACTIONS.get(event.key)
        if action is None:
            return  # printable keys: Input's own handler inserts them, in order
        event.stop()  # not bubbled: the app would run the binding later, out of order
        await self.run_action(action)
