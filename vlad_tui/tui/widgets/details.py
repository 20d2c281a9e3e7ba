"""The selected step: what it runs, what it needs, why it is locked, and its artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from vlad_tui import format as fmt
from vlad_tui.runbook.gate import OPEN, GateResult
from vlad_tui.tui.widgets._css import sibling_css

if TYPE_CHECKING:
    from vlad_tui.runbook.model import Step


def format_value(key: str, value: Any) -> str:
    """One line for an artifact value: times local with age, sizes with a unit, absent "–"."""
    return fmt.field(key, value)


def render_details(
    step: Step,
    *,
    status: str,
    gate: GateResult = OPEN,
    error: str | None = None,
    artifacts: list[tuple[str, dict]] | None = None,
    findings: dict[str, list[dict[str, str]]] | None = None,
    found_at: list[str] | None = None,
) -> Text:
    """Plain Text (never markup: artifact values can come from the target).

    ``findings``: what this step found that awaits acknowledgement (heading → items);
    ``found_at``: where the findings a locked step waits for were found.
    """
    out = Text()
    out.append(step.title, style="bold")
    out.append(f"\n{step.id} · {step.operation} · {status}", style="dim")
    skipped = next(
        (d for k, d in artifacts or [] if k == "confirmation" and d.get("needed") is False), None
    )
    if step.destructive and skipped is not None:
        out.append(
            f"\nDestructive, but not this time: {fmt.value(skipped.get('reason'))}. "
            "No confirmation was asked (journaled).",
            style="bold yellow",
        )
    elif step.destructive:
        out.append("\nDestructive: asks for a typed confirmation first.", style="bold red")
    if step.needs:
        out.append(f"\nNeeds: {', '.join(step.needs)}")
    if step.production_gate:
        out.append("\nProduction gate: phase 2 passed + a recent verified backup.")
    reason = gate.text
    if status == "unavailable":
        out.append(f"\nUnavailable: {reason}", style="italic")
    elif gate.locked and status in ("locked", "pending"):
        out.append(f"\nLocked: {reason}", style="cyan")
        if _overridable(step, gate):
            out.append("\n(override: ctrl+p → Override production gate)", style="dim")
        unacknowledged = gate.has("unacknowledged")
        if unacknowledged and found_at:
            out.append(
                f"\nAcknowledge them where they were found: {'; '.join(found_at)}: select the "
                "step there and press k.",
                style="bold yellow",
            )
        elif unacknowledged:
            out.append("\n(acknowledge the findings: k)", style="dim")
    if error:
        out.append(f"\nError: {error}", style="bold red")
    for heading, items in (findings or {}).items():
        out.append(f"\nNeeds your acknowledgement (k): {heading}", style="bold yellow")
        for item in items:
            out.append(f"\n  • {item.get('text', '')}")
    for kind, data in artifacts or []:
        out.append(f"\n\n{kind}", style="bold")
        for key, value in data.items():
            if key == "acknowledge":  # shown above while pending, as a list of findings
                continue
            out.append(f"\n  {key}: ", style="dim")
            out.append(format_value(key, value))
    return out


def _overridable(step: Step, gate: GateResult) -> bool:
    """The override helps only when the production gate is what holds the step (not when a
    step it needs cannot run in this version)."""
    from vlad_tui.runbook.model import step as get_step
    from vlad_tui.tui.widgets.note import blocked_for_good

    if not step.production_gate or not gate.has("production"):
        return False
    return not any(blocked_for_good(get_step(n)) for n in step.needs)


class Details(VerticalScroll):
    """Scrollable details of one step."""

    DEFAULT_CSS = sibling_css(__file__)

    def compose(self):
        yield Static(id="details-body")

    def on_mount(self) -> None:
        self.border_title = "Details"

    def show(self, text: Text) -> None:
        self.query_one("#details-body", Static).update(text)
