"""Shell text builders and output helpers (pure logic; a few run a real /bin/sh)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from vlad_tui.errors import CommandFailed, CommandTimeout, TransportError
from vlad_tui.events import OutputLine
from vlad_tui.redact import scrub
from vlad_tui.transport.base import CommandResult
from vlad_tui.transport.shell import (
    MAX_LINE,
    Capture,
    LineSplitter,
    command_failed,
    detached_launcher,
    env_prefix,
    follow_job,
    kill_group_script,
    killable,
    pgid_marker,
    quote,
    short,
    with_secrets,
)


def sh(script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script], input=stdin, capture_output=True, text=True, timeout=10
    )


def test_quote_is_shlex_quote() -> None:
    assert quote is shlex.quote
    assert quote("a b'c") == "'a b'\"'\"'c'"


def test_with_secrets_reads_each_secret_from_stdin() -> None:
    command, stdin = with_secrets('echo "$A|$B"', {"A": "x y", "B": "p'q\\n"})
    assert command == 'IFS= read -r A; export A; IFS= read -r B; export B; echo "$A|$B"'
    assert stdin == "x y\np'q\\n\n"
    assert "x y" not in command


def test_with_secrets_values_reach_the_command_and_the_rest_of_stdin_follows() -> None:
    secret = "  spaces, 'quotes' \\ and $dollars  "
    command, stdin = with_secrets(
        'printf "[%s]\\n" "$PGPASSWORD"; sh -c "cat"', {"PGPASSWORD": secret}
    )
    done = sh(command, stdin + "after\n")
    assert done.returncode == 0
    assert done.stdout == f"[{secret}]\nafter\n"


def test_with_secrets_registers_values_with_the_redactor() -> None:
    with_secrets("true", {"TOKEN": "canary-redact-7f3a9c"})
    assert scrub("leak canary-redact-7f3a9c here") == "leak *** here"


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"1BAD": "x"}, "not a valid environment variable name"),
        ({"A-B": "x"}, "not a valid environment variable name"),
        ({"A; rm -rf /": "x"}, "not a valid environment variable name"),
        ({"A": "two\nlines"}, "newline"),
        ({"A": "cr\rhere"}, "newline"),
    ],
)
def test_with_secrets_rejects_bad_names_and_values(secrets: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        with_secrets("true", secrets)


def test_env_prefix_quotes_values() -> None:
    assert env_prefix({"PM2_HOME": "/x"}) == "PM2_HOME=/x "
    prefix = env_prefix({"A": "it's here", "B": "$(reboot)"})
    assert prefix == "A='it'\"'\"'s here' B='$(reboot)' "
    assert sh(prefix + """sh -c 'printf "%s|%s" "$A" "$B"'""").stdout == "it's here|$(reboot)"
    with pytest.raises(ValueError):
        env_prefix({"X=1 Y": "z"})


def test_short_is_one_line_and_bounded() -> None:
    assert short("echo   a\n  b") == "echo a b"
    assert len(short("x" * 500, limit=40)) == 40


def test_killable_reports_its_process_group_and_keeps_the_exit_status() -> None:
    marker = pgid_marker()
    done = sh(killable("echo out; echo err >&2; exit 7", marker))
    assert done.returncode == 7
    assert done.stdout == "out\n"
    first, second = done.stderr.splitlines()
    assert first.startswith(marker + " ") and int(first.split()[1]) > 1
    assert second == "err"


def test_killable_turns_a_signal_into_an_exit_status() -> None:
    done = sh(killable("kill -s TERM $$", pgid_marker()))
    assert done.returncode == 128 + 15


def test_killable_keeps_stdin_for_the_command() -> None:
    command, stdin = with_secrets('echo "got $S"', {"S": "v"})
    done = sh(killable(command, pgid_marker()), stdin)
    assert done.stdout == "got v\n"


def test_kill_group_script_is_harmless_for_a_missing_group() -> None:
    done = sh(kill_group_script(2_000_000_000, 0.2))
    assert done.returncode == 0


def test_detached_launcher_quotes_every_path() -> None:
    script = detached_launcher("echo hi", "/tmp/a b", "job1", has_stdin=False)
    assert "'/tmp/a b/vlad-tui-jobs/job1'" in script
    assert "</dev/null" in script
    assert "mkfifo" in detached_launcher("cat", "/tmp", "job2", has_stdin=True)


def test_line_splitter_handles_crlf_split_utf8_and_a_final_partial_line() -> None:
    splitter = LineSplitter()
    data = "héllo\r\nwörld\nlast".encode()
    lines = []
    for i in range(len(data)):  # one byte at a time: characters split across chunks
        lines += splitter.feed(data[i : i + 1])
    assert lines == ["héllo", "wörld"]
    assert splitter.flush() == ["last"]
    assert splitter.flush() == []


def test_line_splitter_cuts_overlong_lines_and_replaces_invalid_bytes() -> None:
    splitter = LineSplitter()
    lines = splitter.feed(b"x" * (MAX_LINE * 2 + 5))
    assert lines == ["x" * MAX_LINE, "x" * MAX_LINE]
    assert splitter.feed(b"\xff\n") == ["xxxxx\ufffd"]


def test_capture_redacts_delivers_and_keeps_only_the_tail() -> None:
    with_secrets("true", {"SECRET": "canary-capture-91b2"})
    seen: list[OutputLine] = []
    capture = Capture(seen.append, limit=21)  # room for three 7-char lines
    for i in range(10):
        capture.add(f"line {i}", "stdout")
    capture.add("pw=canary-capture-91b2", "stderr")
    assert [line.text for line in seen][-1] == "pw=***"
    assert seen[-1].stream == "stderr"
    assert capture.text("stdout") == "line 7\nline 8\nline 9\n"
    assert capture.text("stderr") == "pw=***\n"


def test_command_failed_names_command_status_and_last_stderr_line() -> None:
    result = CommandResult(exit_status=2, duration=0.1, stderr="warn\nfatal: boom\n")
    error = command_failed("deploy@prod:22", "pg_dump -Fc x", result)
    assert isinstance(error, CommandFailed) and isinstance(error, TransportError)
    assert str(error) == "deploy@prod:22: `pg_dump -Fc x` failed (exit status 2): fatal: boom"
    assert error.exit_status == 2
    killed = CommandResult(exit_status=None, duration=0.1, signal="SIGKILL")
    assert "signal SIGKILL" in str(command_failed("x", "y", killed))


def test_command_result_says_how_it_ended_and_its_last_line() -> None:
    failed = CommandResult(exit_status=3, duration=0.1, stdout="data\n", stderr="a\n  b: no  \n\n")
    assert failed.ended == "exit status 3"
    assert failed.last_line() == "b: no" and failed.failure() == "(exit status 3): b: no"
    quiet = CommandResult(exit_status=1, duration=0.1, stdout="out 1\nout 2\n")
    assert quiet.reason() == "out 2" and quiet.reason(stdout=False) == "exit status 1"
    assert quiet.failure(stdout=False) == "(exit status 1)"
    assert CommandResult(None, 0.1, signal="SIGTERM").failure() == "(signal SIGTERM)"
    assert CommandResult(None, 0.1).reason() == "signal unknown"
    assert CommandResult(1, 0.1, stderr="x" * 500).last_line(300) == "x" * 300


class FakeLog:
    """A job log that grows between polls (pure logic of follow_job, no transport)."""

    def __init__(self, chunks: list[bytes], status: int) -> None:
        self.chunks = chunks
        self.data = b""
        self.status = status
        self.reads: list[int] = []

    async def read(self, offset: int) -> tuple[bytes, int | None]:
        self.reads.append(offset)
        done = not self.chunks
        if self.chunks:
            self.data += self.chunks.pop(0)
        return self.data[offset:], (self.status if done else None)


async def test_follow_job_consumes_whole_lines_and_returns_the_status() -> None:
    log = FakeLog([b"one\ntw", b"o\nthree", b"\nfour"], status=3)
    offsets: list[int] = []
    lines: list[OutputLine] = []
    status = await follow_job(
        log.read, 0, offsets.append, sink=lines.append, poll=0, timeout=5, label="job"
    )
    assert status == 3
    assert [line.text for line in lines] == ["one", "two", "three", "four"]
    assert offsets == [4, 8, 14, 18]
    assert log.reads == [0, 4, 8, 14]


async def test_follow_job_resumes_from_an_offset_without_repeating() -> None:
    log = FakeLog([b"one\ntwo\n", b"three\n"], status=0)
    lines: list[OutputLine] = []
    await follow_job(log.read, 4, lambda _: None, sink=lines.append, poll=0, timeout=5, label="j")
    assert [line.text for line in lines] == ["two", "three"]


async def test_follow_job_times_out_and_detects_a_job_killed_without_status() -> None:
    async def never(offset: int) -> tuple[bytes, int | None]:
        return b"", None

    with pytest.raises(CommandTimeout, match="still running"):
        await follow_job(never, 0, lambda _: None, sink=None, poll=0.01, timeout=0.05, label="j")

    async def dead() -> bool:
        return False

    with pytest.raises(TransportError, match="without an exit status"):
        await follow_job(
            never, 0, lambda _: None, sink=None, poll=0, timeout=5, label="j", alive=dead
        )
