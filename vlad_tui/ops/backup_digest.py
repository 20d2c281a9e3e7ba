"""A backup's size and sha256, computed on the target or for a local copy.

Checksums are computed on the server (``openssl dgst -sha256`` when present — it uses the CPU's
SHA extensions — else ``sha256sum``). For a single-file backup (custom, plain) ``sha256`` is the
file's. A directory-format backup is hashed as the sha256 of the text
``"<sha256 hex>  ./<name>\\n"`` per file, files sorted by name in byte order (what
``cd DIR && sha256sum ./*`` prints under ``LC_ALL=C``); :func:`local_sha256` computes the same
value for a local copy.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vlad_tui.ops.backup import BackupError, last_error_line
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

# Prints "<bytes> <sha256>" for a file or a directory backup (see the module docstring).
# openssl is preferred when present: it uses the CPU's SHA extensions, several times faster
# than coreutils' sha256sum on a big dump; both print the same digest.
_DIGEST_SCRIPT = """\
if command -v openssl >/dev/null 2>&1; then
  h() {{ openssl dgst -sha256 -r | cut -d' ' -f1; }}
else
  h() {{ sha256sum | cut -d' ' -f1; }}
fi
p={path}
if [ -d "$p" ]; then
  d=$(cd -- "$p" && find . -maxdepth 1 -type f | LC_ALL=C sort \\
      | while IFS= read -r f; do printf '%s  %s\\n' "$(h < "$f")" "$f"; done | h) || exit 1
else
  d=$(h < "$p") || exit 1
fi
n=$(du -sb -- "$p" | cut -f1) || exit 1
printf '%s %s\\n' "$n" "$d"
"""


async def remote_digest(transport: Transport, path: str) -> tuple[int, str]:
    """(size, sha256) of a backup, computed on the target; :class:`BackupError`
    (rung ``sha256``) when it cannot be."""
    result = await transport.run(_DIGEST_SCRIPT.format(path=quote(path)))
    try:
        size, digest = result.stdout.split()
        if not result.ok or len(digest) != 64:
            raise ValueError
        return int(size), digest
    except ValueError:
        raise BackupError(
            f"sha256: cannot hash {path} on the target: {last_error_line(result)}",
            rung="sha256",
        ) from None


def local_sha256(path: Path) -> str:
    """sha256 of a local backup copy, defined as in the module docstring (blocking)."""

    def file_hash(p: Path) -> str:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    if not path.is_dir():
        return file_hash(path)
    names = sorted((p.name for p in path.iterdir() if p.is_file()), key=os.fsencode)
    listing = "".join(f"{file_hash(path / n)}  ./{n}\n" for n in names)
    return hashlib.sha256(listing.encode()).hexdigest()


__all__ = ["local_sha256", "remote_digest"]
