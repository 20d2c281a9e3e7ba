"""docs/reliability.md is the rendering of the suite's fault markers, and the markers are sound.

The suite is collected (not run) by ``scripts/reliability.py`` in a child pytest; the rules of
the markers are checked on made-up items so each refusal is seen.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability", REPO / "scripts/reliability.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reliability", module)
    spec.loader.exec_module(module)
    return module


rel = _load()


def marked(nodeid: str, *args: object, **kwargs: object) -> object:
    return rel.Marked(nodeid, args, kwargs)


GOOD = {"did": "Refused, naming the holder", "lost": 0}


def test_the_published_table_is_the_suites() -> None:
    rows, problems = rel.build(rel.collect())
    assert not problems, "the fault markers need fixing:\n" + "\n".join(problems)
    assert rows, "no test carries @pytest.mark.fault"
    current = rel.DOC.read_text("utf-8") if rel.DOC.exists() else ""
    rendered = rel.render(rows)
    assert current == rendered, (
        f"docs/reliability.md differs from the suite's markers; run {rel.COMMAND}\n"
        + rel.diff(current, rendered)
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (("A lock held",), {"lost": 0}, "lacks did="),
        (("A lock held",), {"did": "  ", "lost": 0}, "lacks did="),
        ((), {"did": "Refused", "lost": 0}, "names no fault"),
        (("A lock held",), {"did": "Refused", "lost": 1}, "lost=1"),
        (("A lock held",), {"did": "Refused", "lost": "0"}, "lost='0'"),
        (("A lock held",), {"did": "Refused", "lost": False}, "lost=False"),
        (("A lock held",), {"did": "Refused", "lots": 0}, "unknown marker argument(s) lots"),
        (("A lock held", "again"), {"did": "Refused"}, "give the fault once"),
        (("A lock held",), {"did": "Refused", "area": "weather"}, "no area"),
    ],
)
def test_a_bad_marker_is_refused_with_its_test(
    args: tuple[object, ...], kwargs: dict[str, object], fragment: str
) -> None:
    rows, problems = rel.build([marked("tests/test_lock.py::test_x", *args, **kwargs)])
    assert rows == []
    assert len(problems) == 1 and problems[0].startswith("tests/test_lock.py::test_x: ")
    assert fragment in problems[0]


def test_two_rows_with_the_same_fault_are_refused() -> None:
    _, problems = rel.build(
        [
            marked("tests/test_lock.py::test_a", "A lock held", **GOOD),
            marked("tests/faults/test_two_operators.py::test_b", "a lock  held.", **GOOD),
        ]
    )
    assert problems == [
        "two rows say the same fault 'A lock held': tests/test_lock.py::test_a and "
        "tests/faults/test_two_operators.py::test_b"
    ]


def test_a_parametrized_test_is_one_row_unless_its_parameters_differ() -> None:
    rows, problems = rel.build(
        [
            marked("tests/test_lock.py::test_a[local]", "A lock held", **GOOD),
            marked("tests/test_lock.py::test_a[ssh]", "A lock held", **GOOD),
            marked("tests/faults/test_disk.py::test_b[remote]", "Disk full remotely", **GOOD),
            marked("tests/faults/test_disk.py::test_b[local]", "Disk full locally", **GOOD),
        ]
    )
    assert not problems
    assert [row.test for row in rows] == [
        "tests/faults/test_disk.py::test_b[remote]",
        "tests/faults/test_disk.py::test_b[local]",
        "tests/test_lock.py::test_a",
    ]


@pytest.mark.parametrize(
    ("nodeid", "fault", "area", "expected"),
    [
        ("tests/faults/test_killed.py::t", "SIGHUP during the migrate", None, "process killed"),
        ("tests/faults/test_disk.py::t", "The backup directory full", None, "disk"),
        ("tests/faults/test_host_keys.py::t", "An unknown key", None, "host keys"),
        ("tests/test_phase3.py::t", "The SSH connection dropped mid-migrate", None, "connection"),
        ("tests/test_phase3.py::t", "A second operator deploys", None, "operators"),
        ("tests/test_rollback_flow.py::t", "A corrupted backup offered", None, "backups"),
        ("tests/test_phase3.py::t", "The app crash-looping", None, "application"),
        ("tests/faults/test_environment.py::t", "The pm2 daemon killed", None, "application"),
        ("tests/test_phase3.py::t", "vlad-tui killed during the swap", None, "process killed"),
        ("tests/test_phase3.py::t", "The SSH connection dropped", "database", "database"),
        ("tests/test_phase3.py::t", "Something odd", None, None),
    ],
)
def test_the_area_comes_from_the_marker_the_module_or_the_fault(
    nodeid: str, fault: str, area: str | None, expected: str | None
) -> None:
    assert rel.area_of(nodeid, fault, area) == expected


def test_the_rendering_groups_by_area_in_order_and_escapes_cells() -> None:
    rows, problems = rel.build(
        [
            marked("tests/test_lock.py::test_a", "A lock held", did="Refused | said so.", lost=0),
            marked("tests/test_config.py::test_b", "a damaged file", did="refused it", lost=0),
            marked("tests/faults/test_killed.py::test_c", "vlad-tui killed", **GOOD),
        ]
    )
    assert not problems
    text = rel.render(rows)
    killed, operators, config = (
        text.index("## vlad-tui killed"),
        text.index("## Two operators"),
        text.index("## Configuration"),
    )
    assert killed < operators < config < text.index("## How to regenerate")
    assert "## PostgreSQL" not in text  # no row, no heading
    assert (
        "| A lock held | Refused \\| said so | 0 | [`tests/test_lock.py::test_a`]"
        "(../tests/test_lock.py) |" in text
    )
    assert "| A damaged file | Refused it | 0 |" in text
    assert "| vlad-tui killed | Refused, naming the holder | 0 |" in text
    assert "3 faults, proven by 3 tests." in text
    assert rel.COMMAND in text


def test_a_module_skipped_at_collection_stops_the_rendering(tmp_path: Path) -> None:
    """Its rows would vanish from the page without a word (a missing import, a skip)."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_skipped.py").write_text(
        textwrap.dedent(
            """
            import pytest

            pytest.skip("no such service", allow_module_level=True)

            @pytest.mark.fault("A lock held", did="Refused", lost=0)
            def test_held():
                assert True
            """
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    fault: a row\n")
    with pytest.raises(rel.CollectionFailed, match=r"test_skipped\.py.*no such service"):
        rel.collect(tmp_path)
