"""Adapter: keeps inbound mail that matched nothing, durably, with a reason file beside it.

`<folder>/<UTC stamp>-<hash>.eml` holds the message exactly as received and
`<same name>.reason` one line per fact (why, what it looked like, when). Each is written
under a temporary name, fsynced, then renamed, so a crash leaves either the whole file
or none, and the caller acknowledges the message only after `keep` returns.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

__all__ = ["MailKeeper"]


class MailKeeper:
    """Writes kept messages into one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def keep(
        self,
        head: bytes,
        reason: Sequence[tuple[str, str]],
        now: datetime,
        rest: BinaryIO | None = None,
    ) -> Path:
        """Store `head` (and whatever `rest` still holds) with the reason lines; the path
        of the kept message."""
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(head).hexdigest()[:16]
        stem = f"{now:%Y%m%dT%H%M%S%fZ}-{digest}"
        path = self.folder / f"{stem}.eml"
        self._write(path, head, rest)
        lines = "".join(f"{key}: {value}\n" for key, value in reason)
        self._write(self.folder / f"{stem}.reason", lines.encode("utf-8"), None)
        self._sync_folder()
        return path

    def _write(self, path: Path, data: bytes, rest: BinaryIO | None) -> None:
        partial = path.with_name(f".{path.name}.part")
        with partial.open("wb") as out:
            out.write(data)
            if rest is not None:
                shutil.copyfileobj(rest, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)

    def _sync_folder(self) -> None:
        try:
            descriptor = os.open(self.folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(descriptor)
        except OSError:
            pass
        finally:
            os.close(descriptor)
