"""Fixtures with real services live in tests/rig/: PostgreSQL, OpenSSH sshd, pm2."""

pytest_plugins = ["tests.rig.postgres", "tests.rig.sshd", "tests.rig.pm2"]
