"""The per-launch Studio token: made at start, kept in ``~/.arkor/studio-token`` (0600), gone at exit.

The page Studio serves carries the token, and every ``/api`` call sends it back, so
another site open in the same browser, which cannot read Studio's page, cannot call its
API either. The file lets a script on this machine call the API of the Studio running
now; it is removed when Studio stops, unless a newer launch has replaced it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import TracebackType

from arkor._fs import atomic_write_text
from arkor._home import arkor_home, private_dir

TOKEN_FILENAME = "studio-token"


def token_path() -> Path:
    """Where the token of the Studio running now is kept: ``$ARKOR_HOME/studio-token``."""
    return arkor_home() / TOKEN_FILENAME


class StudioTokenFile:
    """A fresh token written owner-only on enter and removed on exit (Ctrl-C included)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or token_path()
        self.token = secrets.token_urlsafe(32)

    def __enter__(self) -> StudioTokenFile:
        private_dir(self.path.parent)
        atomic_write_text(self.path, self.token + "\n", mode=0o600)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the file, if it still holds this launch's token."""
        try:
            if self.path.read_text(encoding="utf-8").strip() == self.token:
                self.path.unlink()
        except FileNotFoundError:
            pass
