"""The `vlad-tui` command line, run as a real subprocess against real sshd, PostgreSQL and pm2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.rig.pm2 import SampleApp
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui import __version__
from vlad_tui.config import Project, Target, dump_config

pytestmark = pytest.mark.integration


def vlad(tmp_path: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
    }
    env.pop("VLAD_TUI_CONFIG", None)
    argv = [sys.executable, "-m", "vlad_tui"]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def write_config(tmp_path: Path, *targets: Target) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(dump_config(targets, Project()))
    return path


@pytest.fixture
def ssh_config(tmp_path: Path, sample_app: SampleApp, sshd: SshdServer) -> Path:
    return write_config(tmp_path, sample_app.target("production", sshd=sshd))


def test_version_and_help(tmp_path: Path) -> None:
    assert vlad(tmp_path, "--version").stdout.strip() == f"vlad-tui {__version__}"
    for command in ("init", "check", "runs", "report"):
        result = vlad(tmp_path, command, "--help")
        assert result.returncode == 0 and "usage: vlad-tui" in result.stdout


def test_check_over_ssh_prints_facts_and_exits_0(
    tmp_path: Path, ssh_config: Path, sample_app: SampleApp, peludosclick
) -> None:
    result = vlad(tmp_path, "check", "--target", "production", config=ssh_config)
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL 1" in result.stdout
    for table, count in peludosclick.counts.items():
        assert table in result.stdout and str(count) in result.stdout
    assert "online" in result.stdout

    as_json = vlad(tmp_path, "check", "--target", "production", "--json", config=ssh_config)
    assert as_json.returncode == 0, as_json.stderr
    facts = json.loads(as_json.stdout)
    assert facts["row_counts"] == peludosclick.counts
    assert facts["problems"] == []
    assert {p["status"] for p in facts["pm2"]} == {"online"}
    assert len(facts["pm2"]) == sample_app.instances


def test_check_wrong_ssh_port_exits_1_with_one_line(
    tmp_path: Path, sample_app: SampleApp, sshd: SshdServer
) -> None:
    closed = free_port()
    config = write_config(tmp_path, sample_app.target("production", sshd=sshd, port=closed))
    result = vlad(tmp_path, "check", "--target", "production", config=config)
    assert result.returncode == 1
    # The reason is printed once: the PROBLEM line, not again on stderr.
    both = result.stdout + result.stderr
    assert both.count("connection refused") == 1, both
    [problem] = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert f"127.0.0.1:{closed}" in problem
    assert result.stderr == ""
    assert "Traceback" not in both
    as_json = vlad(tmp_path, "check", "--target", "production", "--json", config=config)
    assert as_json.returncode == 1 and len(as_json.stderr.strip().splitlines()) == 1


def test_check_broken_config_exits_2_naming_file_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[targets.production]\nhost = "local"\nport = "twenty-two"\n')
    result = vlad(tmp_path, "check", "--target", "production", config=config)
    assert result.returncode == 2
    assert f"{config}:3" in result.stderr and "targets.production.port" in result.stderr

    config.write_text('[targets.production]\nhost = "local"\nport = 22\npm2_nmae = "x"\n')
    result = vlad(tmp_path, "check", "--target", "production", config=config)
    assert (
        result.returncode == 2 and "did you mean" in result.stderr and "pm2_name" in result.stderr
    )

    config.write_text('[targets.production\nhost = "local"\n')
    result = vlad(tmp_path, "check", "--target", "production", config=config)
    assert result.returncode == 2 and f"{config}:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_unknown_target_and_missing_config_exit_2(tmp_path: Path, ssh_config: Path) -> None:
    result = vlad(tmp_path, "check", "--target", "prod", config=ssh_config)
    assert result.returncode == 2 and "production" in result.stderr
    result = vlad(tmp_path, "check", "--target", "x", config=tmp_path / "nope.toml")
    assert result.returncode == 2 and "vlad-tui init" in result.stderr
    assert vlad(tmp_path, "check").returncode == 2  # --target is required


def test_check_unhealthy_app_exits_1(tmp_path: Path, sample_app: SampleApp) -> None:
    config = write_config(tmp_path, sample_app.target("production", pm2_name="not-running"))
    result = vlad(tmp_path, "check", "--target", "production", config=config)
    assert result.returncode == 1
    assert "not-running" in result.stdout and "PROBLEM" in result.stdout


def test_init_names_the_config_in_its_hint_unless_it_is_the_default(tmp_path: Path) -> None:
    elsewhere = tmp_path / "cfg" / "config.toml"
    done = vlad(tmp_path, "init", "--path", str(elsewhere))
    assert f"then run: vlad-tui --config {elsewhere} check --target production" in done.stdout
    default = vlad(tmp_path, "init")
    assert default.returncode == 0, default.stderr
    assert "then run: vlad-tui check --target production" in default.stdout
    assert (tmp_path / "xdg-config" / "vlad-tui" / "config.toml").exists()


def test_init_writes_template_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.toml"
    assert vlad(tmp_path, "init", "--path", str(path)).returncode == 0
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text(path.read_text() + "\n# mine\n")
    again = vlad(tmp_path, "init", "--path", str(path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert path.read_text().endswith("# mine\n")
    assert vlad(tmp_path, "init", "--path", str(path), "--force").returncode == 0
    assert "# mine" not in path.read_text()


def test_runs_and_report_read_the_journal(tmp_path: Path) -> None:
    from vlad_tui.journal import Journal

    journal = Journal(tmp_path / "xdg-state" / "vlad-tui" / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    run.step_started("p1.connectivity", title="Verificar conexión")
    run.step_finished("p1.connectivity", status="ok", exit_status=0, duration=0.2)
    listing = vlad(tmp_path, "runs")
    assert run.run_id in listing.stdout and "unfinished" in listing.stdout
    report = vlad(tmp_path, "report", run.run_id, "--format", "json")
    assert report.returncode == 0 and json.loads(report.stdout)["run_id"] == run.run_id
    assert vlad(tmp_path, "report", "nope").returncode != 0


def test_runs_and_report_use_the_configured_journal_dir(tmp_path: Path) -> None:
    from vlad_tui.journal import Journal

    config = tmp_path / "config.toml"
    config.write_text('[project]\njournal_dir = "my-runs"\n\n[targets.production]\n')
    run = Journal(tmp_path / "my-runs").start_run("production", operator="ana@bastion")
    run.close()
    listing = vlad(tmp_path, "runs", config=config)
    assert run.run_id in listing.stdout, listing.stderr
    assert vlad(tmp_path, "report", run.run_id, config=config).returncode == 0
    assert "no runs yet" in vlad(tmp_path, "runs").stdout  # the user's journal is another


def test_canary_password_never_reaches_output_or_files(
    tmp_path: Path, ssh_config: Path, sample_app: SampleApp
) -> None:
    """The DATABASE_URL password comes through dotenv: it must not appear anywhere we write."""
    from vlad_tui.db import parse_database_url

    password = parse_database_url(sample_app.database_url).password
    assert password
    forms = {password, quote(password, safe="")}
    outputs = [
        vlad(tmp_path, "check", "--target", "production", config=ssh_config),
        vlad(tmp_path, "check", "--target", "production", "--json", config=ssh_config),
        vlad(tmp_path, "runs"),
    ]
    for result in outputs:
        for form in forms:
            assert form not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(form.encode() in data for form in forms), path


def test_resume_without_target_opens_the_target_of_the_run(tmp_path: Path) -> None:
    from vlad_tui.cli import _target_to_resume
    from vlad_tui.config import load_config
    from vlad_tui.journal import Journal

    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[project]\njournal_dir = "runs"\n\n[targets.production]\n\n[targets.staging]\n'
    )
    config = load_config(config_path)
    assert _target_to_resume(config, "") is None  # nothing to resume
    done = Journal(tmp_path / "runs").start_run("staging", operator="ana")
    done.finish("ok")
    done.close()
    assert _target_to_resume(config, "") is None  # finished runs are not resumed
    run = Journal(tmp_path / "runs").start_run("production", operator="ana")
    run.close()
    assert _target_to_resume(config, "").name == "production"
    assert _target_to_resume(config, done.run_id).name == "staging"


def test_check_reads_the_journal_of_the_config(
    tmp_path: Path, sample_app: SampleApp, sshd: SshdServer
) -> None:
    """``[project] journal_dir`` (the demo's own, say): the backups journaled there are the
    ones ``check`` knows, not those of the user's default journal."""
    from vlad_tui.journal import Journal

    backups = tmp_path / "backups"
    backups.mkdir()
    dump = backups / "backup_produccion_20261201_120000.dump"
    dump.write_bytes(b"PGDMP" + b"\0" * 64)
    target = sample_app.target("production", sshd=sshd, backup_dir=str(backups))
    path = tmp_path / "config.toml"
    path.write_text(dump_config([target], Project(journal_dir=tmp_path / "runs")))
    run = Journal(tmp_path / "runs").start_run("production", operator="ana@bastion")
    run.artifact(
        "p1.verify_backup", "backup", path=str(dump), format="custom", size=dump.stat().st_size,
        sha256="ab" * 32, created_at=dump.stat().st_mtime, verified=True,
    )  # fmt: skip
    run.close()
    result = vlad(tmp_path, "check", "--target", "production", "--json", config=path)
    facts = json.loads(result.stdout)
    assert facts["backup"] is not None and facts["backup"]["path"] == str(dump), facts["backup"]
    assert facts["backup"]["run_id"] == run.run_id
