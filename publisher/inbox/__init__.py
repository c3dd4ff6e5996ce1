"""Adapter: the inbox folder on disk (tree.py: which entries are article files; reading.py,
moves.py: reading and moving them without following a link; names.py: their names as text)."""

from publisher.inbox.moves import DELETED, QUARANTINE, InboxError, safe_subfolder
from publisher.inbox.names import is_article_name, original_name, safe_name
from publisher.inbox.reading import FileTooLarge, Folders, read_article_file
from publisher.inbox.tree import Inbox

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
