"""End-to-end: the wizard on the ``vlad-tui demo`` sandbox, over a real loopback sshd."""
