"""Screens of the app; each has a ``.tcss`` file beside it."""
