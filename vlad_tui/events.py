"""Events the core reports through a sink (a plain callable); UI-free.

The TUI turns them into Textual messages, the CLI prints them, tests collect them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line of a command's output, already redacted."""

    text: str
    stream: Stream = "stdout"
    ts: float = field(default_factory=time.time)


Sink = Callable[[OutputLine], None]


def discard(_: OutputLine) -> None:
    """A sink that drops everything."""
