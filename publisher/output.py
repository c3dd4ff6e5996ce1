"""The output folder: atomic writes that skip unchanged bytes, so mtimes and ETags don't churn.

A reader (the web server, rsync, a CDN) sees either the old file or the new one, never
half a file: bytes go to a temporary file in the same folder, then are
`os.replace`d over the target.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["OutputDir", "WriteLog"]


@dataclass
class WriteLog:
    """What a build did to the folder (relative POSIX paths)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class OutputDir:
    """A folder that files are written into by relative path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = WriteLog()

    def path(self, relative: str) -> Path:
        """The file for a relative path; refuses anything that would leave the folder."""
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise ValueError(f"not a relative output path: {relative!r}")
        return self.root.joinpath(*parts)

    def read(self, relative: str) -> bytes | None:
        try:
            return self.path(relative).read_bytes()
        except FileNotFoundError:
            return None

    def names(self, folder: str, *, folders: bool = False) -> set[str]:
        """File (or sub-folder) names in a sub-folder, in one listing (cheaper than a stat
        per file); none if it does not exist."""
        try:
            with os.scandir(self.path(folder)) as entries:
                return {e.name for e in entries if (e.is_dir() if folders else e.is_file())}
        except FileNotFoundError:
            return set()

    def write(self, relative: str, data: bytes) -> bool:
        """Write atomically unless the file already holds these bytes; True if written."""
        target = self.path(relative)
        try:
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                self.log.unchanged.append(relative)
                return False
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, 0o644)  # mkstemp makes 0600; the server and readers need r
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.log.written.append(relative)
        return True

    def remove(self, relative: str) -> bool:
        """Remove a file the site no longer has (a deleted article's page); True if it was
        there."""
        try:
            self.path(relative).unlink()
        except FileNotFoundError:
            return False
        self.log.removed.append(relative)
        return True
