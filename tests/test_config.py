"""Configuration: template round trip, validation messages, secrets policy, path resolution."""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import textwrap
from dataclasses import fields, replace
from pathlib import Path

import pytest

from vlad_tui import redact
from vlad_tui.config import (
    DEFAULT_SMOKE_CHECKS,
    ENV_VAR,
    Config,
    ConfigError,
    Project,
    SmokeCheck,
    Target,
    dump_config,
    load_config,
    parse_database_ref,
    render_template,
    resolve_config_path,
    write_template,
)
from vlad_tui.config.load import PROJECT_RULES
from vlad_tui.config.model import PROJECT_KEYS, TARGET_KEYS
from vlad_tui.config.target_rules import TARGET_RULES

MINIMAL = """\
[targets.production]
host = "prod.example.com"
user = "deploy"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# --- template ---------------------------------------------------------------------------------


def test_template_round_trip(tmp_path: Path) -> None:
    path = write_template(tmp_path / "nested" / "dir" / "config.toml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.path == path
    assert set(config.targets) == {"production", "staging"}
    prod = config.target("production")
    # Port, known_hosts and the rest fall through to ~/.ssh/config unless set.
    assert (prod.host, prod.user, prod.port) == ("prod.example.com", "deploy", None)
    assert prod.known_hosts is None and prod.ssh_config is None
    assert prod.ssh_label == "deploy@prod.example.com"
    assert prod.database_ref.kind == "dotenv"
    assert prod.database_ref.dotenv_path(prod.app_dir) == "/srv/backend-vlad/.env"
    assert prod.health_url == "http://127.0.0.1:3335/health"
    assert config.project.critical_tables == (
        "users",
        "medals",
        "virgin_medals",
        "partners",
        "medal_fronts",
    )
    assert [c.role for c in config.contacts] == ["Lead developer", "DevOps", "DBA", "Support"]
    # Every key a target understands is documented in the template.
    for key in ("identity_file", "pm2_home", "staging_database", "connect_timeout", "env:VAR"):
        assert key in render_template()
    for key in TARGET_KEYS:
        assert f"{key} = " in render_template(), key
    # Phases 1-2 settings, as written in the template (the defaults).
    assert prod.migrate_command == "npx prisma migrate deploy"
    assert (prod.generate_command, prod.build_command) == ("npx prisma generate", "npm run build")
    assert prod.start_command == "dist/main.js" and prod.prisma_status_command is None
    assert (prod.staging_name, prod.staging_port) == ("backend-vlad-staging", 3336)
    assert (prod.backup_format, prod.backup_jobs) == ("custom", 2)
    assert prod.smoke_checks == (SmokeCheck("GET", "/health", 200),) == DEFAULT_SMOKE_CHECKS


def test_template_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# mine\n")
    with pytest.raises(ConfigError) as info:
        write_template(path)
    assert "--force" in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_text() == "# mine\n"
    path.chmod(0o644)
    write_template(path, force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path).targets


def test_template_leaves_existing_parent_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    write_template(tmp_path / "config.toml")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "keys", "names"),
    [
        (TARGET_RULES, TARGET_KEYS, {f.name for f in fields(Target)} - {"name"}),
        (PROJECT_RULES, PROJECT_KEYS, {f.name for f in fields(Project)}),
    ],
    ids=["target", "project"],
)
def test_every_key_has_exactly_one_rule(rules: dict, keys: tuple, names: set[str]) -> None:
    """A new field is a new key: without a rule it would be accepted and then ignored."""
    assert set(keys) == names
    assert set(rules) - names == set(), "a rule for no field"
    assert names - set(rules) == set(), "a field without a rule"


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    err = error_of(tmp_path / "nope.toml")
    assert "vlad-tui init" in str(err)
    assert str(tmp_path / "nope.toml") in str(err)


def test_directory_and_binary_files(tmp_path: Path) -> None:
    assert "directory" in str(error_of(tmp_path))
    path = tmp_path / "bin.toml"
    path.write_bytes(b"# ok\n\xff\xfe\n")
    err = error_of(path)
    assert err.line == 2
    assert "UTF-8" in str(err)


def test_syntax_error_names_file_line_and_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [project]
        name = "backend-vlad"

        [targets.production]
        host = "prod.example.com"
        port = = 22
        """,
    )
    err = error_of(path)
    assert err.line == 6
    assert err.key == "targets.production"
    message = str(err)
    assert message.startswith(f"{path}:6 [targets.production]: invalid TOML")
    assert "(at line" not in message


def test_syntax_error_at_end_of_document(tmp_path: Path) -> None:
    path = write(tmp_path, '[targets.production]\nhost = "unterminated')
    err = error_of(path)
    assert err.line == 2
    assert "end of file" in str(err)


def test_duplicate_key_is_a_syntax_error_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'host = "again"\nport = 22\n')
    err = error_of(path)
    assert err.line == 4


def test_wrong_type_names_key_line_and_expected_type(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'port = "22"\n')
    err = error_of(path)
    assert err.key == "targets.production.port"
    assert err.line == 4
    assert str(err) == f"{path}:4 [targets.production.port]: expected an integer, got a string"


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ("port = 0\n", "port", "out of range"),
        ("port = 70000\n", "port", "out of range"),
        ("port = true\n", "port", "expected an integer, got a boolean"),
        ('health_url = "ftp://h/health"\n', "health_url", "http(s)"),
        ('health_url = "http://h:99999/x"\n', "health_url", "not a valid URL"),
        ('pm2_name = ""\n', "pm2_name", "must not be empty"),
        ('pm2_name = "-backend"\n', "pm2_name", 'does not start with "-"'),
        ('staging_pm2_name = "-stg"\n', "staging_pm2_name", 'does not start with "-"'),
        ('app_dir = "srv/app"\n', "app_dir", "absolute"),
        ('database = "mysql://u@h/db"\n', "database", "dotenv:PATH"),
        ('database = "env:"\n', "database", "variable name"),
        ('database = "postgresql://"\n', "database", "no host"),
        ('staging_database = "a b"\n', "staging_database", "database name"),
        ("connect_timeout = -1\n", "connect_timeout", "greater than 0"),
        ('known_hosts = ["a"]\n', "known_hosts", "expected a string, got an array"),
        ("ssh_config = 1\n", "ssh_config", "expected a string, got an integer"),
        ('migrate_command = ""\n', "migrate_command", "must not be empty"),
        ('build_command = "npm run\\nbuild"\n', "build_command", "single line"),
        ("generate_command = 1\n", "generate_command", "expected a string, got an integer"),
        ('start_command = "dist/main.js \'x"\n', "start_command", "cannot be split"),
        ('staging_pm2_name = "backend-vlad"\n', "staging_pm2_name", "must differ from pm2_name"),
        ("staging_port = 0\n", "staging_port", "out of range"),
        ("staging_port = 3335\n", "staging_port", "app's port 3335"),
        ('backup_format = "custon"\n', "backup_format", 'did you mean "custom"?'),
        ('backup_format = "tar"\n', "backup_format", "custom, directory or plain"),
        ("backup_jobs = 0\n", "backup_jobs", "1 to 64"),
        ('smoke_checks = "/health"\n', "smoke_checks", "expected an array, got a string"),
    ],
)
def test_target_validation(tmp_path: Path, extra: str, key: str, fragment: str) -> None:
    path = write(tmp_path, MINIMAL + extra)
    err = error_of(path)
    assert err.key == f"targets.production.{key}"
    assert err.line == 4
    assert fragment in str(err)
    assert str(path) in str(err)


def test_ssh_settings_fall_through_unless_set(tmp_path: Path) -> None:
    path = write(tmp_path, '[targets.production]\nhost = "prod-alias"\n')
    prod = load_config(path).target("production")
    assert (prod.user, prod.port, prod.ssh_config) == (None, None, None)
    assert prod.ssh_label == "prod-alias"
    path = write(tmp_path, MINIMAL + 'port = 2222\nssh_config = "~/ssh/vlad.conf"\n')
    prod = load_config(path).target("production")
    assert prod.ssh_label == "deploy@prod.example.com:2222"
    assert prod.ssh_config == Path.home() / "ssh" / "vlad.conf"
    path = write(tmp_path, '[targets.production]\nhost = "local"\nssh_config = "x"\n')
    err = error_of(path)
    assert err.key == "targets.production.ssh_config" and "does not use SSH" in str(err)


@pytest.mark.parametrize(
    ("host", "fragment"),
    [('"deploy@prod"', '"user"'), ('"-oProxyCommand=x"', "not a valid host"), ('""', "empty")],
)
def test_bad_hosts(tmp_path: Path, host: str, fragment: str) -> None:
    path = write(tmp_path, f"[targets.production]\nhost = {host}\n")
    err = error_of(path)
    assert err.key == "targets.production.host"
    assert fragment in str(err)


def test_phase_settings_round_trip(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        migrate_command = "npm run migrate:deploy"
        generate_command = "npx prisma generate --no-engine"
        build_command = "npm ci && npm run build"
        start_command = "dist/server.js"
        prisma_status_command = "npx --no-install prisma migrate status"
        staging_pm2_name = "vlad-stg"
        staging_port = 4000
        backup_format = "directory"
        backup_jobs = 4
        smoke_checks = [
            { path = "/health" },
            { method = "post", path = "/auth/login", expect = 401 },
        ]
        """
    )
    target = load_config(write(tmp_path, text)).target()
    assert target.migrate_command == "npm run migrate:deploy"
    assert target.build_command == "npm ci && npm run build"
    assert target.prisma_status_command == "npx --no-install prisma migrate status"
    assert (target.staging_name, target.staging_port) == ("vlad-stg", 4000)
    assert (target.backup_format, target.backup_jobs) == ("directory", 4)
    assert target.smoke_checks == (
        SmokeCheck("GET", "/health", 200),
        SmokeCheck("POST", "/auth/login", 401),
    )
    assert Target("x", pm2_name="api").staging_name == "api-staging"
    # dump_config writes them back (the demo sandbox's config goes through it).
    again = write(tmp_path, dump_config([target]), name="again.toml")
    assert load_config(again).target() == replace(target, known_hosts=target.known_hosts)


@pytest.mark.parametrize(
    ("checks", "key", "fragment"),
    [
        ('["/health"]', "smoke_checks[1]", "expected a table like"),
        (
            '[{ path = "/a" }, { method = "GET" }]',
            "smoke_checks[2].path",
            'missing required key "path"',
        ),
        ('[{ path = "health" }]', "smoke_checks[1].path", 'a path like "/health"'),
        ('[{ path = "/a b" }]', "smoke_checks[1].path", "no spaces"),
        ('[{ path = "/a", methd = "GET" }]', "smoke_checks[1].methd", 'did you mean "method"?'),
        ('[{ path = "/a", method = "FETCH" }]', "smoke_checks[1].method", "unknown HTTP method"),
        ('[{ path = "/a", expect = 42 }]', "smoke_checks[1].expect", "not an HTTP status"),
        ('[{ path = "/a", expect = "200" }]', "smoke_checks[1].expect", "expected an integer"),
    ],
)
def test_smoke_check_validation(tmp_path: Path, checks: str, key: str, fragment: str) -> None:
    err = error_of(write(tmp_path, MINIMAL + f"smoke_checks = {checks}\n"))
    assert err.key == f"targets.production.{key}"
    assert err.line == 4
    assert fragment in str(err)


def test_smoke_checks_as_array_of_tables(tmp_path: Path) -> None:
    text = MINIMAL + '[[targets.production.smoke_checks]]\npath = "/health"\n'
    text += '[[targets.production.smoke_checks]]\npath = "/v"\nexpect = 999\n'
    err = error_of(write(tmp_path, text))
    assert err.key == "targets.production.smoke_checks[2].expect"
    assert err.line == 8


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "prot = 2222\n")
    err = error_of(path)
    assert err.key == "targets.production.prot"
    assert err.line == 4
    assert 'unknown key "prot"; did you mean "port"?' in str(err)


def test_unknown_top_level_and_contact_keys(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, '[projet]\nname = "x"\n' + MINIMAL))
    assert err.key == "projet"
    assert err.line == 1
    assert 'did you mean "project"?' in str(err)

    text = MINIMAL + '[[contacts]]\nrole = "DBA"\nname = "Ana"\n[[contacts]]\nrole = "Ops"\n'
    err = error_of(write(tmp_path, text + 'name = "Bo"\nphnoe = "1"\n'))
    assert err.key == "contacts[2].phnoe"
    assert err.line == 10
    assert 'did you mean "phone"?' in str(err)


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, MINIMAL + "zzz = 1\n"))
    assert "known keys: host, user, port" in str(err)


def test_contact_requires_role_and_name(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, MINIMAL + '[[contacts]]\nrole = "DBA"\n'))
    assert err.key == "contacts[1].name"
    assert "missing required key" in str(err)


def test_no_targets(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, '[project]\nname = "backend-vlad"\n'))
    assert err.key == "targets"
    assert "no targets" in str(err)
    err = error_of(write(tmp_path, "[targets]\n"))
    assert err.key == "targets"
    assert err.line == 1


def test_critical_tables_must_be_identifiers(tmp_path: Path) -> None:
    path = write(tmp_path, '[project]\ncritical_tables = ["users", "medals; drop"]\n' + MINIMAL)
    err = error_of(path)
    assert err.key == "project.critical_tables"
    assert err.line == 2
    assert "item 2" in str(err)
    ok = write(tmp_path, '[project]\ncritical_tables = ["public.users", "Medal"]\n' + MINIMAL)
    assert load_config(ok).project.critical_tables == ("public.users", "Medal")


def test_unknown_target_name_did_you_mean(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '[targets.staging]\nhost = "local"\n'))
    with pytest.raises(ConfigError) as info:
        config.target("prodution")
    assert 'did you mean "production"?' in str(info.value)
    with pytest.raises(ConfigError, match="--target"):
        config.target()
    assert config.target("staging").is_local


def test_local_host_and_home_expansion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [targets.here]
        host = "local"
        app_dir = "~/backend-vlad"
        identity_file = "~/.ssh/id_ed25519"
        """,
    )
    target = load_config(path).target()
    assert target.is_local
    assert target.app_dir == str(Path.home() / "backend-vlad")
    assert target.identity_file == Path.home() / ".ssh" / "id_ed25519"


# --- secrets ----------------------------------------------------------------------------------

SECRET_URL = "postgresql://vlad:Canary%2FPw9@postgres:5432/peludosclick"


@pytest.mark.fault(
    "A configuration file readable by others holds a literal database password",
    did="refuses to load it and names the file, the key, the line and the `chmod 600` that "
    "fixes it, without showing the password",
    lost=0,
)
def test_literal_password_refused_when_file_is_readable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + f'database = "{SECRET_URL}"\n', mode=0o644)
    err = error_of(path)
    message = str(err)
    assert err.key == "targets.production.database"
    assert err.line == 4
    assert "0644" in message
    assert f"chmod 600 {path}" in message
    assert "env:" in message and "dotenv:" in message
    assert "Canary" not in message


def test_literal_password_accepted_when_private_and_learnt(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + f'database = "{SECRET_URL}"\n', mode=0o600)
    target = load_config(path).target("production")
    assert target.database_ref.kind == "url"
    assert target.database_ref.has_password
    assert redact.scrub(SECRET_URL) == "postgresql://vlad:***@postgres:5432/peludosclick"
    assert redact.scrub("Canary/Pw9") == "***"


def test_url_without_password_is_fine_anywhere(tmp_path: Path) -> None:
    url = "postgresql://vlad@postgres:5432/peludosclick"
    path = write(tmp_path, MINIMAL + f'database = "{url}"\n', mode=0o644)
    assert load_config(path).target().database_ref.value == url


def test_database_references() -> None:
    ref = parse_database_ref("dotenv:/etc/vlad.env#PRISMA_URL")
    assert (ref.kind, ref.value, ref.variable) == ("dotenv", "/etc/vlad.env", "PRISMA_URL")
    assert ref.dotenv_path("/srv/x") == "/etc/vlad.env"
    ref = parse_database_ref("env:PROD_DATABASE_URL")
    assert (ref.kind, ref.value) == ("env", "PROD_DATABASE_URL")
    assert not ref.has_password


@pytest.mark.fault(
    "A damaged configuration file (400 random mutations of the template)",
    did="Each one either loaded or was refused in one line naming the file; never a traceback",
    lost=0,
)
def test_mutated_configs_only_raise_config_error(tmp_path: Path) -> None:
    """Whatever the damage, the operator gets a ConfigError, never a traceback."""
    template = render_template()
    rng = random.Random(1234)
    alphabet = ['"', "'", "[", "]", "=", "\n", "#", "0", "x", ".", "{", "}", ",", " ", "-"]
    path = tmp_path / "config.toml"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        chars = list(template)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            match rng.randint(0, 2):
                case 0:
                    del chars[pos]
                case 1:
                    chars.insert(pos, rng.choice(alphabet))
                case _:
                    chars[pos] = rng.choice(alphabet)
        path.write_text("".join(chars), encoding="utf-8")
        try:
            load_config(path)
            outcomes["ok"] += 1
        except ConfigError as err:
            assert str(err).startswith(str(path))
            assert "\n" not in str(err)
            outcomes["error"] += 1
    assert outcomes["error"] > 50


# --- paths ------------------------------------------------------------------------------------


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_config_path(None) == tmp_path / "xdg" / "vlad-tui" / "config.toml"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env.toml"))
    assert resolve_config_path(None) == tmp_path / "from-env.toml"
    assert resolve_config_path(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"


def test_env_var_config_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL, name="via-env.toml")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert load_config(resolve_config_path()).target().host == "prod.example.com"


def test_importing_creates_no_directories(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.pop(ENV_VAR, None)
    code = (
        "import vlad_tui.paths as p, vlad_tui.config as c, vlad_tui.journal as j, "
        "vlad_tui.report, vlad_tui.redact\n"
        "print(c.resolve_config_path(None)); print(p.state_dir()); print(p.data_dir())\n"
        "print(j.Journal.default().list_runs())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        str(tmp_path / "config" / "vlad-tui" / "config.toml"),
        str(tmp_path / "state" / "vlad-tui"),
        str(tmp_path / "data" / "vlad-tui"),
        "[]",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ensure_private_dir(tmp_path: Path) -> None:
    from vlad_tui.paths import ensure_private_dir

    before = stat.S_IMODE(tmp_path.stat().st_mode)
    old = os.umask(0o022)
    try:
        created = ensure_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert created.is_dir()
    assert stat.S_IMODE(created.stat().st_mode) == 0o700
    assert stat.S_IMODE(created.parent.stat().st_mode) == 0o700  # the parent it made
    assert stat.S_IMODE(tmp_path.stat().st_mode) == before  # what existed is left alone
    created.chmod(0o755)
    assert ensure_private_dir(created) == created
    assert stat.S_IMODE(created.stat().st_mode) == 0o700


def test_journal_and_local_backup_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlad_tui import paths
    from vlad_tui.config import Project

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = load_config(write(tmp_path, MINIMAL))
    assert default.journal_dir == paths.runs_dir()
    assert default.local_backup_dir == paths.backups_dir()
    sub = tmp_path / "sub"
    sub.mkdir()
    text = '[project]\njournal_dir = "runs"\nlocal_backup_dir = "~/copies"\n\n' + MINIMAL
    config = load_config(write(sub, text))
    assert config.journal_dir == sub / "runs"  # relative to the config file
    assert config.local_backup_dir == tmp_path / "home" / "copies"
    # dump_config writes them back (and leaves unset ones out), load_config reads them again.
    dumped = dump_config(config.targets.values(), config.project)
    assert load_config(write(tmp_path, dumped, name="again.toml")).journal_dir == sub / "runs"
    assert "journal_dir" not in dump_config(config.targets.values(), Project())
    assert "journal_dir = " in render_template() and "local_backup_dir = " in render_template()
    assert "must not be empty" in str(error_of(write(tmp_path, '[project]\njournal_dir = ""\n')))
