"""The web archive of sent digests: names and records of the unpersonalized web copies.

A copy's name is a keyed hash (HMAC-SHA256 under the secret key) of its run and its
content, so nobody can count through the archive to find copies it does not list, nor
tell from a name which run or which category mix it was. Pure core: values in, values out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "ARCHIVE_FOLDER",
    "FEED_ENTRIES",
    "ArchivedDigest",
    "copy_id",
    "copy_path",
    "newest_first",
    "record_path",
]

ARCHIVE_FOLDER = "digests"
# the records beside the copies: a dot folder, never served (web/static.py)
RECORDS_FOLDER = f"{ARCHIVE_FOLDER}/.records"
FEED_ENTRIES = 50  # the newest copies the archive feed carries
_ID_CHARS = 26  # 130 bits of base32


def copy_id(secret: str, run_id: int, content: Sequence[Any]) -> str:
    """The web copy's name: lower-case base32, derived from run and content under `secret`."""
    message = json.dumps([run_id, *content], ensure_ascii=True, default=str).encode()
    digest = hmac.new(secret.encode(), b"web-copy\0" + message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_ID_CHARS]


def copy_path(name: str) -> str:
    return f"{ARCHIVE_FOLDER}/{name}.html"


def record_path(name: str) -> str:
    return f"{RECORDS_FOLDER}/{name}.json"


@dataclass(frozen=True, slots=True)
class ArchivedDigest:
    """What the archive index and feed say of one web copy (nothing about recipients)."""

    id: str
    run_id: int
    subject: str
    frequency: str
    as_of: datetime
    count: int
    headlines: tuple[str, ...]

    def to_json(self) -> bytes:
        data = {
            "id": self.id,
            "run_id": self.run_id,
            "subject": self.subject,
            "frequency": self.frequency,
            "as_of": self.as_of.isoformat(),
            "count": self.count,
            "headlines": list(self.headlines),
        }
        return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ArchivedDigest:
        """A record as written by `to_json`; ValueError (or KeyError) if it is not one."""
        raw = json.loads(data)
        as_of = datetime.fromisoformat(str(raw["as_of"]))
        if as_of.tzinfo is None:
            raise ValueError("as_of without a time zone")
        return cls(
            id=str(raw["id"]),
            run_id=int(raw["run_id"]),
            subject=str(raw["subject"]),
            frequency=str(raw["frequency"]),
            as_of=as_of,
            count=int(raw["count"]),
            headlines=tuple(str(h) for h in raw["headlines"]),
        )


def newest_first(records: Sequence[ArchivedDigest]) -> list[ArchivedDigest]:
    return sorted(records, key=lambda r: (r.as_of, r.run_id, r.id), reverse=True)
