"""Command line: the TUI by default; ``init``, ``check``, ``runs``, ``report``.

Exit codes: 0 success, 1 something unreachable or unhealthy, 2 usage or configuration error.
Heavy imports (Textual, asyncssh, asyncpg) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vlad_tui import __version__
from vlad_tui.errors import ConfigError, VladError

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlad-tui",
        description="Deploy wizard for backend-vlad: preparation, staging test, production "
        "deploy, monitoring and rollback. With no command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"vlad-tui {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config file (default: $VLAD_TUI_CONFIG, else the user config dir)",
    )
    parser.add_argument("--target", metavar="NAME", help="open the TUI on this target")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN_ID",
        help="resume an unfinished run (the newest one for the target when no id is given)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="write a commented config template")
    init.add_argument("--path", type=Path, metavar="P", help="where to write it")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    check = sub.add_parser(
        "check",
        help="connect to a target, print its facts and one round of monitoring samples against "
        "the baseline (journaled as a daily check; exit 1 when unhealthy or a threshold is "
        "breached)",
    )
    check.add_argument("--target", dest="check_target", metavar="NAME", required=True)
    check.add_argument("--json", action="store_true", help="print the facts as JSON")
    check.add_argument(
        "--no-monitor", action="store_true", help="only the facts: no monitoring round"
    )

    sub.add_parser("runs", help="list journaled runs, newest first")

    demo = sub.add_parser(
        "demo",
        help="build a local sandbox (PostgreSQL, the sample app under pm2) and open the wizard",
    )
    demo.add_argument("--dir", type=Path, metavar="D", help="sandbox directory")
    demo.add_argument("--size", choices=("small", "medium"), default="small")
    demo.add_argument(
        "--ssh", action="store_true", help="reach the sandbox through a loopback OpenSSH sshd"
    )
    demo.add_argument("--setup-only", action="store_true", help="build it, do not open the TUI")
    demo.add_argument("--teardown", action="store_true", help="stop its processes, remove it")

    report = sub.add_parser("report", help="print the report of a journaled run")
    report.add_argument("run_id", metavar="RUN_ID")
    report.add_argument("--format", choices=("md", "json"), default="md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        match args.command:
            case "init":
                return cmd_init(args)
            case "check":
                return asyncio.run(cmd_check(args))
            case "runs":
                return cmd_runs(args)
            case "demo":
                return cmd_demo(args)
            case "report":
                return cmd_report(args)
            case _:
                return cmd_tui(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except VladError as exc:
        _err(str(exc))
        return EXIT_UNHEALTHY
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _err(message: str) -> None:
    print(f"vlad-tui: {message}", file=sys.stderr)


def _load(args: argparse.Namespace):  # -> Config
    from vlad_tui.config import load_config, resolve_config_path

    return load_config(resolve_config_path(args.config))


def _command(config_path: Path, rest: str) -> str:
    """``vlad-tui [--config PATH] REST``: ``--config`` only when another file would be read."""
    import shlex

    from vlad_tui.config import resolve_config_path

    same = resolve_config_path(None).expanduser().absolute() == config_path.absolute()
    flag = "" if same else f" --config {shlex.quote(str(config_path))}"
    return f"vlad-tui{flag} {rest}"


def cmd_init(args: argparse.Namespace) -> int:
    from vlad_tui.config import resolve_config_path, write_template

    path = write_template(args.path or resolve_config_path(args.config), force=args.force)
    print(f"wrote {path} — edit it, then run: {_command(path, 'check --target production')}")
    return EXIT_OK


async def cmd_check(args: argparse.Namespace) -> int:
    from vlad_tui.session import Session

    config = _load(args)
    # Headless: the journal is the config's (the demo's, or [project] journal_dir's).
    session = Session(config, config.target(args.check_target))
    round_ = None
    try:
        facts = await session.read_state()
        if facts.reachable and not args.no_monitor:
            round_ = await session.daily_check()
    finally:
        await session.close()
    healthy = facts.ok and (round_ is None or round_.ok)
    if args.json:
        # The JSON (with its "problems") is for programs; stderr says the reason to a person.
        data = facts.to_dict()
        if round_ is not None:
            data["monitor"] = round_.to_dict()
        print(json.dumps(data, indent=2, default=str))
        for problem in facts.problems:
            _err(problem)
        for finding in round_.breached if round_ is not None else ():
            _err(f"{finding.level}: {finding.metric}: {finding.text}")
    else:
        print(facts.render_text())  # its PROBLEM lines say each reason, once
        if round_ is not None:
            print("\n".join(round_.render_text()))
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def _journal(args: argparse.Namespace):  # -> Journal
    """The journal of the config (``[project] journal_dir``); without a config file at the
    default place, the user's journal."""
    from vlad_tui.config import resolve_config_path
    from vlad_tui.journal import Journal

    path = resolve_config_path(args.config)
    if args.config is None and not path.exists():
        return Journal.default()
    return Journal(_load(args).journal_dir)


def cmd_runs(args: argparse.Namespace) -> int:
    runs = _journal(args).list_runs()
    if not runs:
        print("no runs yet")
        return EXIT_OK
    from datetime import datetime

    for run in runs:
        started = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M")
        status = "unfinished" if run.unfinished else run.status
        line = f"{run.run_id}  {started}  {run.target:<12} {status:<10} {run.operator}"
        if run.meta.get("kind") == "daily_check":
            deploy = run.meta.get("deploy_run")
            line += f"  daily check{f' of {deploy}' if deploy else ' (no deploy journaled)'}"
        elif run.meta.get("kind") == "host_key":
            line += f"  host key {run.meta.get('decision', '?')}"
        print(line)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from vlad_tui.report import daily_checks_of, render_report

    journal = _journal(args)
    record = journal.load(args.run_id)
    checks = daily_checks_of(journal, args.run_id)
    print(render_report(record, args.format, daily_checks=checks))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from vlad_tui.config import load_config
    from vlad_tui.demo.sandbox import MissingTool, Sandbox

    sandbox = Sandbox(args.dir)
    if args.teardown:
        sandbox.teardown()
        return EXIT_OK
    try:
        config_path = sandbox.setup(args.size, ssh=args.ssh)
    except MissingTool as exc:
        _err(str(exc))
        return EXIT_USAGE
    print(f"demo ready: {_command(config_path, '')}".rstrip())
    if args.setup_only:
        return EXIT_OK
    from vlad_tui.tui.app import make_app

    config = load_config(config_path)  # journals into the sandbox ([project] journal_dir)
    _follow_terminal_size()
    make_app(config, target=config.target("production")).run()
    print(f"resume this rehearsal with: {_command(config_path, '--resume')}")
    print(
        f"the sandbox keeps running; remove it with: vlad-tui demo --teardown --dir {sandbox.root}"
    )
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    config = _load(args)
    target = config.target(args.target) if args.target or len(config.targets) == 1 else None
    if target is None and args.resume is not None:
        target = _target_to_resume(config, args.resume)
    from vlad_tui.tui.app import make_app

    _follow_terminal_size()
    make_app(config, target=target, resume=args.resume).run()
    return EXIT_OK


def _follow_terminal_size() -> None:
    """Drop exported ``COLUMNS``/``LINES`` before the TUI starts.

    Textual reads the size through :func:`shutil.get_terminal_size`, which prefers those
    variables to the terminal's own size: exported by a shell profile, they pin the screen to
    one size, and a resized terminal (a window dragged smaller, tmux) shows a garbled screen.
    """
    if sys.stdout.isatty():
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


def _target_to_resume(config, run_id: str):  # -> Target | None
    """The target of the run ``--resume`` names (or of the newest unfinished run)."""
    from vlad_tui.journal import Journal

    runs = [r for r in Journal(config.journal_dir).list_runs() if r.target in config.targets]
    chosen = next((r for r in runs if r.run_id == run_id or (not run_id and r.unfinished)), None)
    return config.targets[chosen.target] if chosen is not None else None
