"""libpq's password file, matched against the URL as written (pure, no service)."""

from __future__ import annotations

from pathlib import Path

from vlad_tui import pgpass


def passfile(tmp_path: Path, text: str, mode: int = 0o600) -> dict[str, str]:
    path = tmp_path / ".pgpass"
    path.write_text(text)
    path.chmod(mode)
    return {"HOME": str(tmp_path)}


def test_first_matching_line_wins_with_wildcards_and_escapes(tmp_path: Path) -> None:
    env = passfile(
        tmp_path,
        "# comment\n"
        "db.internal:5432:other:vlad:nope\n"
        "db.internal:5432:*:vlad:pa\\:ss\\\\w:rd\n"
        "*:*:*:*:fallback\n",
    )
    assert pgpass.lookup("db.internal", 5432, "peludosclick", "vlad", environ=env) == "pa:ss\\w:rd"
    assert pgpass.lookup("db.internal", 5432, "other", "vlad", environ=env) == "nope"
    assert pgpass.lookup("elsewhere", 6432, "x", "y", environ=env) == "fallback"


def test_a_socket_host_matches_localhost(tmp_path: Path) -> None:
    env = passfile(tmp_path, "localhost:5432:*:vlad:local\n")
    assert pgpass.lookup("/run/postgresql", 5432, "db", "vlad", environ=env) == "local"
    assert pgpass.lookup("127.0.0.1", 5432, "db", "vlad", environ=env) is None


def test_a_file_readable_by_others_is_ignored_as_libpq_does(tmp_path: Path) -> None:
    env = passfile(tmp_path, "*:*:*:*:secret\n", mode=0o644)
    assert pgpass.lookup("h", 5432, "d", "u", environ=env) is None


def test_pgpassword_wins_and_pgpassfile_moves_the_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.write_text("*:*:*:*:from-pgpassfile\n")
    other.chmod(0o600)
    env = {"HOME": str(tmp_path), "PGPASSFILE": str(other)}
    assert pgpass.lookup("h", 1, "d", "u", environ=env) == "from-pgpassfile"
    assert pgpass.lookup("h", 1, "d", "u", environ={**env, "PGPASSWORD": "pw"}) == "pw"
    assert pgpass.lookup("h", 1, "d", "u", environ={"HOME": str(tmp_path / "none")}) is None
