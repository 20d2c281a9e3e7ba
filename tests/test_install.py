"""The install is what was tested: the lock files pin what is installed, and the installed
command speaks only its own lines (no third-party warning reaches an operator).

These run the console script that ``scripts/setup.sh`` installs beside the interpreter, as the
README's quickstart does, in a subprocess with the operator's default warning filters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.rig.services import free_port
from vlad_tui import __version__
from vlad_tui.demo.pm2 import PM2_VERSION

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"


def installed_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``vlad-tui ARGS`` as installed into the virtual environment, with a clean environment."""
    script = Path(sys.executable).parent / "vlad-tui"
    assert script.exists(), f"{script} is missing: run scripts/setup.sh"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
    }
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def locked() -> dict[str, str]:
    """Each package the lock pins for this interpreter, with its version."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate():
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_version_prints_one_line_and_nothing_on_stderr(tmp_path: Path) -> None:
    result = installed_command(tmp_path, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"vlad-tui {__version__}\n", "")


def test_check_against_an_unreachable_host_says_one_problem_and_nothing_else(
    tmp_path: Path,
) -> None:
    closed = free_port()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = tmp_path / "config.toml"
    config.write_text(
        "[targets.production]\n"
        f'host = "127.0.0.1"\nport = {closed}\nuser = "deploy"\n'
        f'known_hosts = "{known_hosts}"\n'
    )
    result = installed_command(tmp_path, "--config", str(config), "check", "--target", "production")
    assert result.returncode == 1
    # asyncssh is imported (an SSH target): cryptography's DSA warnings must not show.
    assert result.stderr == ""
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1 and f"127.0.0.1:{closed}: connection refused" in problems[0]
    assert "Warning" not in result.stdout


def test_every_installed_distribution_is_the_locked_version() -> None:
    pins = locked()
    assert {"textual", "asyncssh", "asyncpg", "cryptography", "pytest"} <= pins.keys()
    wrong = {}
    for name, version in pins.items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = "missing"
        if found != version:
            wrong[name] = f"locked {version}, installed {found}"
    assert wrong == {}, "the environment is not the lock: run scripts/setup.sh"


def test_the_lock_holds_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    wanted = [*project["dependencies"], *(line for extra in extras for line in extra)]
    pins = locked()
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run scripts/upgrade-deps.sh"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])


def test_every_pin_carries_a_hash() -> None:
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=\S)", text)
    for block in blocks:
        if block.startswith("#") or not block.strip():
            continue
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_pm2_of_the_sandbox_is_the_locked_pm2() -> None:
    lock = json.loads((REPO / ".tools" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/pm2"]["version"] == PM2_VERSION
    package = json.loads((REPO / ".tools" / "package.json").read_text())
    assert package["dependencies"]["pm2"] == PM2_VERSION
