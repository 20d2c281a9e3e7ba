"""asyncssh, imported without third-party deprecation noise on the operator's terminal.

asyncssh still names cryptography's DSA classes, which cryptography 48+ deprecates with a
``UserWarning`` at each use: ten lines before anything of vlad-tui's, and ``check``'s one-line
answer broken. Silenced narrowly: this category, raised from asyncssh's own modules. Import
asyncssh from here, never directly.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh\.")

import asyncssh  # noqa: E402  (after the filter, on purpose)

__all__ = ["asyncssh"]
