"""Adapter: the inbox folder on disk — which entries are article files, and moving them.

Nothing inside the inbox is followed: a symbolic link (to a file, to a folder, to itself)
is skipped with one log line, so an inbox writer can make ingest neither read a file
outside the inbox (and publish it) nor move one out of its real place. The folders
publisher keeps inside the inbox (`quarantine/`, `deleted/`) must be real directories:
when a link or a plain file has that name, nothing is moved and one error line says why.
A path named on the command line outside the inbox is read through its own links (links
inside a folder it names are skipped too) but never moved.

Names reach the database, the logs and the `.error.txt` files through `safe_name`:
a file name need not be UTF-8 and may hold a newline or an ESC sequence.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from publisher.errors import PublisherError

__all__ = [
    "DELETED",
    "QUARANTINE",
    "FileTooLarge",
    "Folders",
    "Inbox",
    "InboxError",
    "is_article_name",
    "original_name",
    "read_article_file",
    "safe_name",
    "safe_subfolder",
]

log = logging.getLogger("publisher.ingest")

QUARANTINE = "quarantine"
DELETED = "deleted"
_RESERVED = frozenset({QUARANTINE, DELETED})
_REASON_SUFFIX = ".error.txt"
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload", "~", _REASON_SUFFIX)
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class InboxError(PublisherError):
    """An inbox entry or folder of publisher's that must not be touched as it is."""


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"too large ({size} bytes, limit {limit})")
        self.size = size
        self.limit = limit


# -- names ---------------------------------------------------------------------------

_ESCAPED = re.compile(r"\\(\\|[nrt]|x[0-9a-f]{2}|u[0-9a-f]{4})")
# the escapes the terminal shows too (secrecy.printable), so a name reads the same
# in the database, the log and the table
_NAMED = {"\n": "n", "\r": "r", "\t": "t"}


def safe_name(name: str) -> str:
    """A name as text every database stores and every terminal shows as it is.

    A backslash is doubled; a byte that is not UTF-8 (os.fsdecode's surrogate escape) becomes
    \\xNN (NN >= 80); a newline, CR or tab becomes \\n, \\r, \\t, any other control character
    or line separator \\xNN (below 80) or \\uNNNN. Reversible (`original_name`); a printable
    name without a backslash is unchanged.
    """
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(_escape(char) for char in name)


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if char in _NAMED:
        return "\\" + _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"
    return char


_UNNAMED = {escape: char for char, escape in _NAMED.items()}


def original_name(text: str) -> str:
    """The name `safe_name` was given (os.fsencode of it gives the bytes on disk)."""

    def unescape(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape == "\\":
            return "\\"
        if escape in _UNNAMED:
            return _UNNAMED[escape]
        code = int(escape[1:], 16)
        return chr(0xDC00 + code if escape[0] == "x" and code >= 0x80 else code)

    return _ESCAPED.sub(unescape, text)


def is_article_name(name: str) -> bool:
    """Hidden, temporary and half-written files are not articles (yet); nor reasons."""
    return not (name.startswith((".", "~")) or name.endswith(_TEMPORARY_SUFFIXES))


# -- reading -------------------------------------------------------------------------


class Folders:
    """The descriptor of the folder the last file was read from, kept for the next file in
    the same folder: opening a path without following links costs one open per component."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def parent(self, path: Path) -> int:
        folder = Path(os.path.abspath(path)).parent
        if folder != self._folder or self._fd is None:
            self.close()
            self._fd = _open_parent(path)
            self._folder = folder
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._folder = None


def read_article_file(path: Path, limit: int, folders: Folders | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, its size checked before reading.

    `path` is a real path (the walk's): no component is followed, so an entry swapped for a
    link after the walk fails with ELOOP, and a FIFO never blocks. FileTooLarge, or the
    OSError of the entry.
    """
    if folders is None:
        fd = _open_file(path)
    else:
        fd = os.open(path.name, _READ, dir_fd=folders.parent(path))
    with open(fd, "rb") as file:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if found.st_size > limit:
            raise FileTooLarge(found.st_size, limit)
        # a buffer of the file's size, not of the limit; read on if it grew since fstat
        data = file.read(found.st_size + 1)
        if found.st_size < len(data) <= limit:
            data += file.read(limit + 1 - len(data))
    if len(data) > limit:
        raise FileTooLarge(len(data), limit)
    return data


def _open_parent(path: Path) -> int:
    """A descriptor of the folder holding `path`, each component opened from / with
    O_NOFOLLOW: a folder swapped for a link after it was checked is refused."""
    absolute = Path(os.path.abspath(path))
    fd = os.open(absolute.anchor, _OPEN_FOLDER)
    try:
        for part in absolute.parent.parts[1:]:
            inner = os.open(part, _OPEN_FOLDER, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(path: Path) -> int:
    parent = _open_parent(path)
    try:
        return os.open(path.name, _READ, dir_fd=parent)
    finally:
        os.close(parent)


# -- the folders publisher keeps inside the inbox -------------------------------------


def safe_subfolder(inbox: Path, name: str) -> Path:
    """<inbox>/<name>, made if missing: InboxError unless it is a real directory.

    `inbox` is the inbox's real path; the one component below it is checked with lstat,
    so a link planted under that name is never written through.
    """
    folder = inbox / name
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InboxError(f"cannot make {safe_name(str(folder))}: {exc.strerror}") from exc
    try:
        found = os.lstat(folder)
    except OSError as exc:
        raise InboxError(f"cannot use {safe_name(str(folder))}: {exc.strerror}") from exc
    if stat.S_ISLNK(found.st_mode):
        raise InboxError(
            f"{safe_name(str(folder))} is a symbolic link, not a folder: nothing is moved into it",
            "remove the link; publisher makes the folder itself",
        )
    if not stat.S_ISDIR(found.st_mode):
        raise InboxError(
            f"{safe_name(str(folder))} is not a folder: nothing is moved into it",
            "rename or remove that file; publisher makes the folder itself",
        )
    return folder


def _open_subfolder(inbox: Path, name: str) -> int:
    """A descriptor of the checked folder: moves into it cannot be redirected by a link
    swapped in after the check (O_NOFOLLOW refuses one)."""
    folder = safe_subfolder(inbox, name)
    try:
        return os.open(folder, _OPEN_FOLDER)
    except OSError as exc:
        raise InboxError(f"cannot use {safe_name(str(folder))}: {exc.strerror}") from exc


def _free_name(folder: int, name: str) -> str:
    """`name`, or name.1, name.2 … (before the suffix) if taken in the folder."""
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    candidate, n = name, 1
    while _exists(folder, candidate) or _exists(folder, candidate + _REASON_SUFFIX):
        candidate = f"{stem}.{n}{dot}{suffix}" if dot else f"{name}.{n}"
        n += 1
    return candidate


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class Inbox:
    """The inbox of one Settings. Every path method works on the inbox's real path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def root(self) -> Path:
        """The inbox's real path (the configured inbox may itself be a link: the operator's)."""
        return Path(os.path.realpath(self.folder))

    def relative(self, path: Path) -> Path | None:
        """The path below the inbox as written (no link resolved), or None if outside."""
        absolute = Path(os.path.abspath(path))
        for base in (Path(os.path.abspath(self.folder)), self.root):
            if absolute == base or base in absolute.parents:
                return absolute.relative_to(base)
        return None

    def plain_file(self, relative: Path) -> bool:
        """A regular file below the inbox with no link on its way there, and not in a
        folder of publisher's."""
        if not relative.parts or relative.parts[0] in _RESERVED:
            return False
        return self._kind(relative) == "file"

    def is_candidate(self, path: Path) -> bool:
        """A file of the inbox that may be an article (the watcher asks this per event)."""
        relative = self.relative(path)
        return relative is not None and is_article_name(path.name) and self.plain_file(relative)

    def is_quarantined(self, path: Path) -> bool:
        """A file in the quarantine (not its reason): changes there may bring it back."""
        relative = self.relative(path)
        return (
            relative is not None
            and len(relative.parts) == 2
            and relative.parts[0] == QUARANTINE
            and not path.name.endswith(_REASON_SUFFIX)
        )

    # -- walking ---------------------------------------------------------------------

    def files(self, paths: Iterable[Path] | None = None) -> Iterator[Path]:
        """Article candidates under the given files and folders (default: the inbox), in
        path order. Inbox entries are never followed; other paths are (to their real path)."""
        root = self.root
        for given in [root] if paths is None else paths:
            relative = self.relative(given)
            if relative is None:
                real = Path(os.path.realpath(given))
                if real != root and root not in real.parents:
                    yield from _walk_outside(real, self._reserved(root))
                    continue
                relative = real.relative_to(root)
            yield from self._walk_inside(root, relative)

    def _walk_inside(self, root: Path, relative: Path) -> Iterator[Path]:
        if relative.parts and relative.parts[0] in _RESERVED:
            return
        kind = self._kind(relative)
        path = root / relative
        if kind == "folder":
            yield from _walk(path, self._reserved(root))
        elif kind == "file":
            if is_article_name(path.name):
                yield path
        elif kind is not None:
            log.warning("skipped %s: %s", safe_name(str(path)), kind)

    @staticmethod
    def _reserved(root: Path) -> frozenset[str]:
        return frozenset(str(root / name) for name in _RESERVED)

    def _kind(self, relative: Path) -> str | None:
        """'file', 'folder', why else it is skipped, or None if it is not there."""
        path = self.root
        mode = os.lstat(path).st_mode if os.path.isdir(path) else None
        for part in relative.parts:
            if mode is None or not stat.S_ISDIR(mode):
                return None
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return None
            except OSError as exc:
                return f"cannot read it: {exc.strerror}"
            if stat.S_ISLNK(mode):
                return "a symbolic link (links in the inbox are not followed)"
        if mode is None:
            return None
        if stat.S_ISDIR(mode):
            return "folder"
        return "file" if stat.S_ISREG(mode) else "not a regular file"

    # -- moving ----------------------------------------------------------------------

    def quarantine(self, path: Path, reason: str, now: datetime) -> Path | None:
        """Move a file that is not an article to <inbox>/quarantine/, its reason beside it.

        As `move_to`: the new path, None if it vanished, InboxError if it stays where it is.
        """
        moved = self.move_to(path, QUARANTINE, reason=(reason, now))
        if moved is not None:
            log.warning("quarantined %s: %s", safe_name(moved.name), safe_name(reason))
        return moved

    def move_to(
        self, path: Path, folder: str, *, reason: tuple[str, datetime] | None = None
    ) -> Path | None:
        """Move a plain file of the inbox into one of publisher's folders in it (quarantine,
        deleted) under a free name, with <name>.error.txt beside it if a reason is given.

        The new path; None if it vanished (another process moved it first). InboxError, and
        the file stays where it is, if it is not a plain file inside the inbox (outside files
        are never moved) or the folder is not a real directory. It is never deleted.
        """
        relative = self.relative(path)
        if relative is None:
            raise InboxError(f"{safe_name(str(path))} is outside the inbox: left where it is")
        if not self.plain_file(relative):
            kind = self._kind(relative)
            if kind is None:
                return None
            raise InboxError(f"{safe_name(str(path))} is {kind}: left where it is")
        root, shown = self.root, safe_name(str(relative))
        try:
            descriptor = _open_subfolder(root, folder)
            try:
                name = _move_into(root / relative, descriptor)
                if name is None:
                    return None
                if reason is not None:
                    _write_reason(descriptor, name, reason[0], relative, reason[1])
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise InboxError(f"cannot move {shown} into {folder}: {exc.strerror or exc}") from exc
        return root / folder / name

    def release_finished(self) -> list[Path]:
        """Quarantined files written to after they were quarantined (a stalled upload that
        completed there) go back to the inbox, under the same name, for another look; their
        reason goes. A name taken in the inbox leaves the file where it is."""
        root = self.root
        try:
            if not stat.S_ISDIR(os.lstat(root / QUARANTINE).st_mode):
                return []
            folder = _open_subfolder(root, QUARANTINE)
        except (OSError, InboxError):
            return []  # nothing was quarantined, or quarantine() reports the folder
        released: list[Path] = []
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            for entry in entries:
                target = _release(folder, entry, root)
                if target is not None:
                    released.append(target)
        finally:
            os.close(folder)
        return released

    def seed(self, seeds: Path) -> int:
        """Copy the seed articles into the inbox; an existing entry (or link) is kept."""
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        copied = 0
        for seed in _walk_outside(Path(os.path.realpath(seeds)), frozenset()):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(root / seed.name, flags, 0o644)
            except FileExistsError:
                continue
            with open(fd, "wb") as copy:
                copy.write(seed.read_bytes())
            copied += 1
        return copied


def _walk_outside(real: Path, reserved: frozenset[str]) -> Iterator[Path]:
    """A path named outside the inbox, already resolved: a file, or a folder to walk."""
    if real.is_dir():
        yield from _walk(real, reserved)
    elif real.is_file() and is_article_name(real.name):
        yield real


def _walk(top: Path, reserved: frozenset[str]) -> Iterator[Path]:
    """Regular files under a folder in the order of their paths' parts (as sorted Paths
    are), never following a link nor entering a `reserved` folder (absolute paths). An entry
    that cannot be read is skipped with a line. A stack, not recursion: folders may nest
    deeper than Python's recursion limit."""
    stack = [iter(_entries(top))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.path in reserved:
            continue
        why = ""
        try:
            if entry.is_symlink():
                why = "a symbolic link (links in the inbox are not followed)"
            elif entry.is_dir(follow_symlinks=False):
                stack.append(iter(_entries(Path(entry.path))))
                continue
            elif entry.is_file(follow_symlinks=False):
                if is_article_name(entry.name):
                    yield Path(entry.path)
                continue
            else:
                why = "not a regular file"
        except OSError as exc:
            why = f"cannot read it: {exc.strerror}"
        log.warning("skipped %s: %s", safe_name(entry.path), why)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        log.warning("skipped folder %s: %s", safe_name(str(folder)), exc.strerror)
        return []


def _move_into(source: Path, folder: int) -> str | None:
    """Move a plain file into the open folder under a free name: that name, or None if the
    file is gone. Both ends are reached through descriptors, never through a link."""
    parent = _open_parent(source)
    try:
        try:
            found = os.stat(source.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise InboxError(f"{safe_name(str(source))} is no longer a file: left where it is")
        name = _free_name(folder, source.name)
        try:
            if found is not None:
                os.rename(source.name, name, src_dir_fd=parent, dst_dir_fd=folder)
        except FileNotFoundError:
            found = None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_then_remove(parent, source, folder, name)
    finally:
        os.close(parent)
    if found is None:
        log.info("%s was already quarantined by another process", safe_name(source.name))
        return None
    return name


def _read_current(parent: int, name: str) -> bytes:
    with open(os.open(name, _READ, dir_fd=parent), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # a FIFO reads as b""
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read()


def _copy_then_remove(parent: int, source: Path, folder: int, name: str) -> None:
    """Quarantine across filesystems: copy the file's current bytes, and remove it only if
    it still holds exactly those afterwards. InboxError, the file left in place, else."""
    shown = safe_name(str(source))
    try:
        data = _read_current(parent, source.name)
    except OSError as exc:
        raise InboxError(f"{shown} is left where it is: cannot read it ({exc.strerror})") from exc
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with open(os.open(name, flags, 0o644, dir_fd=folder), "wb") as copy:
            copy.write(data)
            copy.flush()
            os.fsync(copy.fileno())
        same = _read_current(parent, source.name) == data
    except OSError as exc:
        _remove(folder, name)
        raise InboxError(f"{shown} is left where it is: copy failed ({exc.strerror})") from exc
    if not same:
        _remove(folder, name)
        raise InboxError(f"{shown} is left where it is: it changed while it was copied")
    os.unlink(source.name, dir_fd=parent)


def _remove(folder: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def _write_reason(folder: int, name: str, reason: str, relative: Path, now: datetime) -> None:
    text = (
        f"{safe_name(reason)}\nfile: {safe_name(str(relative))}\nquarantined: {now.isoformat()}\n"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(name + _REASON_SUFFIX, flags, 0o644, dir_fd=folder), "wb") as file:
        file.write(text.encode("utf-8"))


def _release(folder: int, entry: os.DirEntry[str], root: Path) -> Path | None:
    if entry.name.endswith(_REASON_SUFFIX) or not entry.is_file(follow_symlinks=False):
        return None
    reason = entry.name + _REASON_SUFFIX
    try:
        written = os.stat(reason, dir_fd=folder, follow_symlinks=False).st_mtime_ns
        changed = entry.stat(follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        return None  # no reason beside it: not one of ours
    if changed <= written:
        return None
    target = root / entry.name
    if os.path.lexists(target):
        log.warning(
            "%s changed in quarantine, but %s is taken in the inbox: left in quarantine",
            safe_name(entry.name),
            safe_name(entry.name),
        )
        return None
    try:
        os.rename(entry.name, target, src_dir_fd=folder)
    except OSError as exc:
        log.warning("cannot move %s back to the inbox: %s", safe_name(entry.name), exc.strerror)
        return None
    _remove(folder, reason)
    log.info("%s changed in quarantine: back in the inbox for another look", safe_name(entry.name))
    return target
