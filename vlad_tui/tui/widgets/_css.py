"""Load a widget's stylesheet from the ``.tcss`` file next to its module."""

from __future__ import annotations

from pathlib import Path


def sibling_css(module_file: str) -> str:
    """The text of ``<module>.tcss`` (used as the widget's ``DEFAULT_CSS``)."""
    return Path(module_file).with_suffix(".tcss").read_text(encoding="utf-8")
