"""Where Arkor keeps per-user state: ``~/.arkor``, or ``ARKOR_HOME`` when set.

The home and every folder Arkor makes in it are the owner's alone (0700), and so are the
files in them (0600): tokens, datasets, adapters and logs are nobody else's to read.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077
"""The umask worker processes run under, so what they write (adapters, checkpoints) is private."""


def arkor_home() -> Path:
    """The per-user folder (credentials, the model store, the local plane's data)."""
    configured = os.environ.get("ARKOR_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".arkor"


def private_dir(path: Path) -> Path:
    """Make ``path`` and leave it owner-only; missing parents are made owner-only too.

    An existing ``path`` this user owns that others may read (made by an older Arkor, or
    under a permissive umask) is tightened; one owned by someone else is left as it is.
    """
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        path.chmod(PRIVATE_DIR_MODE)
    return path
