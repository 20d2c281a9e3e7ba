"""Migration lint with the real squawk binary (PyPI ``squawk-cli``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rig.services import missing
from vlad_tui.demo.seed import MIGRATIONS_DIR, PENDING_MIGRATIONS
from vlad_tui.errors import VladError
from vlad_tui.ops.lint import (
    BREAKING_RULES,
    LintFinding,
    breaking,
    find_squawk,
    lint_sql,
    summary,
)

HARMLESS, FLAGGED = PENDING_MIGRATIONS


@pytest.fixture(scope="module")
def squawk() -> str:
    found = find_squawk()
    if found is None:
        missing("squawk", "pip install squawk-cli")
    return found


def _pending() -> dict[str, str]:
    return {
        name: (MIGRATIONS_DIR / name / "migration.sql").read_text() for name in PENDING_MIGRATIONS
    }


async def test_sample_pending_migrations_one_breaking_one_harmless(squawk: str) -> None:
    findings = await lint_sql(_pending(), squawk=squawk)
    bad = breaking(findings)
    assert [(f.migration, f.rule) for f in bad] == [(FLAGGED, "adding-not-nullable-field")]
    finding = bad[0]
    sql_lines = _pending()[FLAGGED].splitlines()
    # 1-based positions, pointing into the ALTER … SET NOT NULL statement.
    assert "SET NOT NULL" in sql_lines[finding.line - 1]
    assert sql_lines[finding.line - 1][finding.column - 1 :].startswith("SET NOT NULL")
    assert finding.level == "warning" and "NOT NULL" in finding.message
    assert finding.describe().startswith(f"{FLAGGED}:{finding.line}:{finding.column} ")
    assert "[BREAKING]" in finding.describe()
    # The harmless one may get lock/timeout advice, never a breaking finding.
    harmless = [f for f in findings if f.migration == HARMLESS]
    assert not any(f.breaking for f in harmless)
    # Prisma's type mapping is not the migration's fault: excluded by default.
    assert not any(f.rule in ("prefer-identity", "prefer-bigint-over-int") for f in findings)
    # Ordered by migration, then position.
    keys = [(PENDING_MIGRATIONS.index(f.migration), f.line, f.column) for f in findings]
    assert keys == sorted(keys)
    assert summary(findings).endswith(f"1 breaking (adding-not-nullable-field in {FLAGGED})")


async def test_breaking_rules_are_real_squawk_rules(squawk: str) -> None:
    statements = {
        "ban-drop-column": 'ALTER TABLE "medals" DROP COLUMN "image";',
        "ban-drop-table": 'DROP TABLE "partners";',
        "changing-column-type": 'ALTER TABLE "medals" ALTER COLUMN "pet_name" TYPE TEXT;',
        "adding-required-field": 'ALTER TABLE "users" ADD COLUMN "nick" TEXT NOT NULL;',
        "renaming-column": 'ALTER TABLE "users" RENAME COLUMN "phonenumber" TO "phone";',
        "renaming-table": 'ALTER TABLE "partners" RENAME TO "partner";',
        "ban-drop-not-null": 'ALTER TABLE "users" ALTER COLUMN "email" DROP NOT NULL;',
        "ban-truncate-cascade": 'TRUNCATE "users" CASCADE;',
        "ban-concurrent-index-creation-in-transaction": (
            'CREATE INDEX CONCURRENTLY "medals_pet_idx" ON "medals"("pet_name");\n'
            'ALTER TABLE "medals" ADD COLUMN "notes" TEXT;'
        ),
        "syntax-error": 'ALTER TABLE "users" ADD COLUMN;',
    }
    files = {f"2025010100000{i}_{rule}": sql for i, (rule, sql) in enumerate(statements.items())}
    findings = await lint_sql(files, squawk=squawk)
    for (name, _), rule in zip(files.items(), statements, strict=True):
        mine = {f.rule for f in findings if f.migration == name}
        assert rule in mine, (rule, mine)
        assert rule in BREAKING_RULES
    syntax = next(f for f in findings if f.rule == "syntax-error")
    assert syntax.level == "error" and syntax.breaking


async def test_non_breaking_advice_and_clean_sql(squawk: str) -> None:
    findings = await lint_sql(
        {
            "001_index": 'CREATE INDEX "medals_owner_idx" ON "medals"("owner_id");',
            "002_select": "SELECT 1;",
        },
        squawk=squawk,
    )
    rules = {f.rule for f in findings if f.migration == "001_index"}
    assert "require-concurrent-index-creation" in rules  # reported, but a warning only
    assert not breaking(findings)
    assert not [f for f in findings if f.migration == "002_select"]
    assert await lint_sql({}, squawk=squawk) == []
    assert summary([]) == "no findings"
    included = await lint_sql({"003": 'CREATE TABLE "t" ("id" SERIAL);'}, squawk=squawk, exclude=())
    assert "prefer-identity" in {f.rule for f in included}


async def test_missing_squawk_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VladError, match="pip install squawk-cli"):
        await lint_sql({"001": "SELECT 1;"}, squawk=str(tmp_path / "squawk"))
    not_squawk = tmp_path / "fake-squawk"
    not_squawk.write_text("#!/bin/sh\necho 'segfault' >&2\nexit 3\n")
    not_squawk.chmod(0o755)
    with pytest.raises(VladError, match=r"squawk failed \(exit 3\): segfault"):
        await lint_sql({"001": "SELECT 1;"}, squawk=str(not_squawk))


def test_finding_to_dict_round_trip() -> None:
    f = LintFinding("001_x", "ban-drop-column", 3, 22, "Dropping a column…", "warning", True)
    assert LintFinding(**f.to_dict()) == f
