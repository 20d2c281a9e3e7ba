"""Redaction: learning secrets from URLs and .env files, scrubbing text and structures."""

from __future__ import annotations

from vlad_tui import redact
from vlad_tui.redact import MASK, Redactor, parse_dotenv, url_password


def test_url_password_is_learnt_and_scrubbed() -> None:
    url = "postgresql://vlad:s3cr3t-Pw@postgres:5432/peludosclick?schema=public"
    assert redact.add_url(url) == "s3cr3t-Pw"
    assert redact.scrub(url) == "postgresql://vlad:***@postgres:5432/peludosclick?schema=public"
    assert redact.scrub("PGPASSWORD=s3cr3t-Pw pg_dump") == "PGPASSWORD=*** pg_dump"


def test_url_password_in_every_encoding() -> None:
    url = "postgres://vlad:p%40ss%2Fw%20rd%25@db.internal/peludosclick"
    assert redact.add_url(url) == "p@ss/w rd%"
    for form in ("p%40ss%2Fw%20rd%25", "p@ss/w rd%", "p%40ss%2Fw+rd%25"):
        assert redact.scrub(f"x {form} y") == f"x {MASK} y", form
    # Printed as-is by a tool that decodes the URL.
    assert "p@ss" not in redact.scrub("connecting as vlad with password p@ss/w rd%")


def test_url_without_password_learns_nothing() -> None:
    assert redact.add_url("postgresql://vlad@postgres:5432/peludosclick") is None
    assert redact.add_url("not a url") is None
    assert len(redact.REDACTOR) == 0
    assert redact.scrub("vlad@postgres") == "vlad@postgres"


def test_password_query_parameter() -> None:
    assert url_password("postgresql:///db?host=/run/pg&password=qwerty123") == "qwerty123"


def test_dotenv_secret_keys_and_urls() -> None:
    text = """
# backend-vlad .env
export DATABASE_URL="postgresql://vlad:db-Pa55word@postgres:5432/peludosclick?schema=public"
JWT_SECRET='jwt secret value'
AWS_ACCESS_KEY_ID=AKIAEXAMPLEKEY
MAIL_PASS=mailpass99   # inline comment
STRIPE_TOKEN = "tok_\\"quoted\\""
PORT=3335
NODE_ENV=production
FEATURE_PRIVATE_BETA=true
HEALTH_URL=http://127.0.0.1:3335/health
"""
    values = parse_dotenv(text)
    assert values["MAIL_PASS"] == "mailpass99"
    assert values["STRIPE_TOKEN"] == 'tok_"quoted"'
    assert values["JWT_SECRET"] == "jwt secret value"
    redact.add_env(values)
    line = (
        'db-Pa55word jwt secret value AKIAEXAMPLEKEY mailpass99 tok_"quoted" '
        "production 3335 true http://127.0.0.1:3335/health"
    )
    assert redact.scrub(line) == (
        "*** *** *** *** *** production 3335 true http://127.0.0.1:3335/health"
    )


def test_add_env_accepts_dotenv_text() -> None:
    redact.add_env("SECRET_KEY=abc123def\nDATABASE_URL=postgres://u:zz9zz9@h/db\n")
    assert redact.scrub("abc123def / zz9zz9") == "*** / ***"


def test_longest_secret_first() -> None:
    redactor = Redactor()
    redactor.add("abc")
    redactor.add("abcdef")
    # Scrubbing the short one first would leave "***def" behind.
    assert redactor.scrub("xx abcdef yy abc") == "xx *** yy ***"


def test_short_secrets_scrubbed_whitespace_ignored() -> None:
    redactor = Redactor()
    redactor.add("")
    redactor.add("   ")
    redactor.add(None)
    assert len(redactor) == 0
    redactor.add("q7")
    assert redactor.scrub("q7 and q7!") == "*** and ***!"
    redactor.add("  padded secret \n")
    assert redactor.scrub("value: padded secret") == "value: ***"


def test_regex_metacharacters_are_literal() -> None:
    redact.add_secret("a.b*c(d)")
    assert redact.scrub("a.b*c(d) aXbbc(d)") == "*** aXbbc(d)"


def test_scrub_obj_recurses() -> None:
    redact.add_secret("hunter22")
    obj = {
        "cmd": "echo hunter22",
        "nested": [{"k": "hunter22"}, ("x", "hunter22"), 5, None, True],
        "hunter22": 1.5,
    }
    assert redact.scrub_obj(obj) == {
        "cmd": "echo ***",
        "nested": [{"k": "***"}, ["x", "***"], 5, None, True],
        "***": 1.5,
    }


def test_reset_forgets() -> None:
    redact.add_secret("forget-me")
    assert redact.scrub("forget-me") == MASK
    redact.reset()
    assert redact.scrub("forget-me") == "forget-me"


def test_parse_dotenv_edge_cases() -> None:
    text = (
        "A=1\r\n"
        "  export B = two words  \n"
        "C=\n"
        'D="multi\nline"\n'
        "E='no $escape \\n here'\n"
        "F=value#notacomment\n"
        "not a line\n"
        "1BAD=x\n"
        "G=`back tick`\n"
        'H="unterminated\n'
        "A=override\n"
    )
    assert parse_dotenv(text) == {
        "A": "override",
        "B": "two words",
        "C": "",
        "D": "multi\nline",
        "E": "no $escape \\n here",
        "F": "value#notacomment",
        "G": "back tick",
        "H": '"unterminated',
    }
