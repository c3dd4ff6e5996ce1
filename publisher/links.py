"""Every URL the project prints, in one place: the output folder's paths and the routes.

Paths are relative to the site root (`base_url`); `absolute` makes them full URLs. Pages
written into the output folder, feeds, digests and the web routes all name a thing here,
so an article's address cannot differ between its feed entry, its page and a digest.
"""

from __future__ import annotations

__all__ = [
    "CONFIRM_ROUTE",
    "UNSUBSCRIBE_ROUTE",
    "absolute",
    "archive_path",
    "article_path",
    "category_path",
    "confirm_path",
    "unsubscribe_path",
]

CONFIRM_ROUTE = "/confirm/{token}"
UNSUBSCRIBE_ROUTE = "/unsubscribe/{token}"


def absolute(base_url: str, path: str) -> str:
    """A path under the site root as a full URL."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def article_path(slug: str) -> str:
    return f"articles/{slug}.html"


def category_path(slug: str) -> str:
    """The category's folder (its index.html and feeds live in it)."""
    return f"category/{slug}/"


def archive_path(number: int) -> str:
    """An RFC 5005 archive document."""
    return f"archive/{number}.xml"


def confirm_path(token: str) -> str:
    return CONFIRM_ROUTE.format(token=token).lstrip("/")


def unsubscribe_path(token: str) -> str:
    return UNSUBSCRIBE_ROUTE.format(token=token).lstrip("/")
