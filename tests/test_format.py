"""How values read to the operator: times local with age, sizes with a unit that fits, "–"."""

from __future__ import annotations

import time

from vlad_tui import format as fmt
from vlad_tui.tui.widgets.details import render_details


def test_size_picks_the_unit_that_fits() -> None:
    assert fmt.size(0) == "0 B"
    assert fmt.size(512) == "512 B"
    assert fmt.size(37 * 1024 + 200) == "37.2 KiB"  # a small dump is not "0.0 MiB"
    assert fmt.size(52_428_800) == "50.0 MiB"
    assert fmt.size(3 * 1024**3) == "3.0 GiB"
    assert fmt.size(None) == "–"


def test_when_is_local_time_with_its_age() -> None:
    now = 1_796_158_236.62
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 300))
    assert fmt.when(now - 300, now=now) == f"{local} (5 min ago)"
    assert fmt.when(now, now=now).endswith("(just now)")
    assert fmt.when(now - 3 * 3600 - 5 * 60, now=now).endswith("(3 h 05 min ago)")
    assert fmt.when(now - 2 * 86400, now=now).endswith("(2 d 0 h ago)")
    assert fmt.when(None) == "–"


def test_value_never_shows_python_reprs() -> None:
    assert fmt.value(None) == "–"
    assert fmt.value("") == "–"
    assert fmt.value(True) == "yes"
    assert fmt.value(0.5) == "0.5"
    assert fmt.value([1, 2]) == "1, 2"
    assert fmt.value({"a": 1, "size": 2048}) == "a=1, size=2.0 KiB"
    assert fmt.value([{"name": "a"}, {"name": "b"}]) == "name=a; name=b"
    for shown in (fmt.value({"x": None}), fmt.value([None])):
        assert "None" not in shown and "{" not in shown


def test_field_formats_by_key() -> None:
    now = time.time()
    assert fmt.field("acquired_at", now - 60).endswith("(1 min ago)")
    assert fmt.field("taken_at", now).endswith("(just now)")
    assert fmt.field("size", 37 * 1024) == "37.0 KiB"
    assert fmt.field("free_bytes", 2 * 1024**3) == "2.0 GiB"
    assert fmt.field("prisma_version", None) == "–"
    assert fmt.field("pid", 1234) == "1234"  # not a time, not a size
    assert fmt.field("started_at", 12) == "12"  # too small to be a timestamp


def test_details_show_no_raw_values() -> None:
    from vlad_tui.runbook.model import step

    text = render_details(
        step("p3.lock"),
        status="ok",
        artifacts=[
            ("lock", {"holder": "ana", "acquired_at": 1796158236.62}),
            ("migrations", {"prisma_version": None}),
            ("backup", {"size": 37 * 1024}),
        ],
    ).plain
    assert "1796158236" not in text and "None" not in text
    assert "prisma_version: –" in text
    assert "size: 37.0 KiB" in text
    assert "acquired_at: " + time.strftime("%Y-%m-%d", time.localtime(1796158236.62)) in text
