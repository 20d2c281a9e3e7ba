"""`vlad-tui demo`: the sandbox from real parts (PostgreSQL, the sample app under pm2, sshd)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2, find_pm2
from tests.rig.services import missing
from vlad_tui.config import load_config
from vlad_tui.demo import sandbox as sandbox_mod
from vlad_tui.demo.cluster import find_bin_dir
from vlad_tui.demo.sandbox import MissingTool, Sandbox

pytestmark = pytest.mark.integration


def demo_env() -> dict[str, str]:
    pm2 = find_pm2()
    if pm2 is None or find_bin_dir() is None:
        missing("pm2 and PostgreSQL", "bash scripts/setup.sh")
    env = dict(os.environ)
    env["PATH"] = f"{pm2.parent}{os.pathsep}{env['PATH']}"  # no npm install in tests
    return env


def vlad(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlad_tui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def demo_dir() -> Iterator[Path]:
    env = demo_env()
    root = Path(tempfile.mkdtemp(prefix="vlad-demo-")) / "sandbox"
    root.parent.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must enter it
    try:
        result = vlad("demo", "--setup-only", "--dir", str(root), env=env)
        assert result.returncode == 0, result.stderr
        yield root
    finally:
        vlad("demo", "--teardown", "--dir", str(root), env=env)


def test_setup_builds_a_healthy_sandbox_with_two_local_targets(demo_dir: Path) -> None:
    config = load_config(demo_dir / "config.toml")
    assert sorted(config.targets) == ["production", "staging"]
    assert all(t.is_local for t in config.targets.values())
    assert (demo_dir / "config.toml").stat().st_mode & 0o777 == 0o600
    assert (demo_dir / "app" / ".env").stat().st_mode & 0o777 == 0o600
    assert "DATABASE_URL" in (demo_dir / "app" / ".env").read_text()
    assert "DATABASE_URL" not in (demo_dir / "config.toml").read_text()  # dotenv: reference
    check = vlad(
        "--config",
        str(demo_dir / "config.toml"),
        "check",
        "--target",
        "production",
        "--json",
        env=demo_env(),
    )
    assert check.returncode == 0, check.stderr
    assert '"users": 120' in check.stdout and '"status": "online"' in check.stdout


def test_production_runs_revision_1_while_app_holds_revision_2_to_deploy(demo_dir: Path) -> None:
    state = Sandbox(demo_dir).state()
    assert state is not None

    def get(path: str) -> dict:
        url = f"http://127.0.0.1:{state.app_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    assert get("/build")["build"] == sandbox_mod.FIRST_BUILD
    assert get("/version")["version"] == sandbox_mod.FIRST_VERSION
    package = json.loads((demo_dir / "app" / "package.json").read_text())
    assert package["version"] == sandbox_mod.NEXT_VERSION
    production = load_config(demo_dir / "config.toml").target("production")
    assert production.validate_command == sandbox_mod.VALIDATE
    assert production.install_command == sandbox_mod.INSTALL


def test_running_it_again_reuses_the_sandbox(demo_dir: Path) -> None:
    before = (demo_dir / "state.json").read_text()
    again = vlad("demo", "--setup-only", "--dir", str(demo_dir), env=demo_env())
    assert again.returncode == 0, again.stderr
    assert (demo_dir / "state.json").read_text() == before
    assert "restarted" not in again.stdout  # everything was running: nothing to say


def test_running_it_again_says_what_it_restarted(demo_dir: Path) -> None:
    state = Sandbox(demo_dir).state()
    assert state is not None
    Pm2(Path(state.pm2_bin), demo_dir / "pm2").run("stop", sandbox_mod.APP_NAME)  # cmd.pm2_stop
    again = vlad("demo", "--setup-only", "--dir", str(demo_dir), env=demo_env())
    assert again.returncode == 0, again.stderr
    assert "restarted: backend-vlad (was stopped in pm2)" in again.stdout
    assert "Detener la aplicación" in again.stdout
    assert Sandbox(demo_dir).is_up()


def test_the_demo_keeps_its_runs_and_copies_inside_and_the_cli_finds_them(
    demo_dir: Path,
) -> None:
    from vlad_tui.journal import Journal

    config = load_config(demo_dir / "config.toml")
    assert config.journal_dir == demo_dir / "runs"
    assert config.local_backup_dir == demo_dir / "local-backups"  # gone with --teardown
    run = Journal(config.journal_dir).start_run("production", operator="ana@demo")
    run.step_started("p1.connectivity", title="Verificar conexión")
    run.close()
    cfg = ["--config", str(demo_dir / "config.toml")]
    listing = vlad(*cfg, "runs", env=demo_env())
    assert run.run_id in listing.stdout and "unfinished" in listing.stdout, listing.stderr
    report = vlad(*cfg, "report", run.run_id, env=demo_env())
    assert report.returncode == 0 and f"# Run {run.run_id}" in report.stdout


def test_teardown_stops_everything_and_removes_the_dir() -> None:
    env = demo_env()
    root = Path(tempfile.mkdtemp(prefix="vlad-demo-")) / "ssh"
    root.parent.chmod(0o755)
    try:
        built = vlad("demo", "--setup-only", "--ssh", "--dir", str(root), env=env)
        assert built.returncode == 0, built.stderr
        state = Sandbox(root).state()
        assert state is not None and state.ssh_port is not None
        config = load_config(root / "config.toml")
        assert config.targets["production"].port == state.ssh_port  # through sshd
        check = vlad(
            "--config", str(root / "config.toml"), "check", "--target", "production", env=env
        )
        assert check.returncode == 0, check.stderr
        ports = (state.pg_port, state.app_port, state.ssh_port)
        assert all(listening(p) for p in ports)
    finally:
        gone = vlad("demo", "--teardown", "--dir", str(root), env=env)
    assert gone.returncode == 0
    assert not root.exists()
    assert not any(listening(p) for p in ports)


def test_missing_tools_are_named_with_the_package_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sandbox_mod, "find_bin_dir", lambda: None)
    with pytest.raises(MissingTool, match="apt-get install postgresql"):
        Sandbox(tmp_path / "x").setup()
    env = {**os.environ, "PATH": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "-m", "vlad_tui", "demo", "--setup-only", "--dir", str(tmp_path / "y")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Node.js" in result.stderr and "apt-get install nodejs" in result.stderr
    assert not (tmp_path / "y").exists()
