"""vlad-tui: a terminal wizard for production deploys of backend-vlad."""

__version__ = "0.1.0"
