"""Widgets shared by the screens; each loads its styles from the ``.tcss`` file beside it."""
