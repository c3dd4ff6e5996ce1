"""Every URL the project prints, in one place: the output folder's paths and the routes.

Paths are relative to the site root (`base_url`); `absolute` makes them full URLs. Pages
written into the output folder, feeds, digests and the web routes all name a thing here,
so an article's address cannot differ between its feed entry, its page and a digest.

Slugs keep the letters of scripts that have no ASCII spelling (a Chinese title gives a
Chinese slug, as Hugo does): the file on disk has the UTF-8 name, and every printed URL
percent-encodes it (`href`).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = [
    "ARCHIVE_INDEX",
    "CONFIRM_ROUTE",
    "FEED_STYLESHEET",
    "GONE_PAGES",
    "PREFERENCES_ROUTE",
    "SEARCH_MANIFEST",
    "UNSUBSCRIBE_ROUTE",
    "absolute",
    "archive_json_path",
    "archive_path",
    "article_path",
    "category_index_path",
    "category_path",
    "confirm_path",
    "href",
    "listing_page_path",
    "preferences_path",
    "sitemap_listing_path",
    "sitemap_path",
    "slug_words",
    "unsubscribe_path",
]

CONFIRM_ROUTE = "/confirm/{token}"
UNSUBSCRIBE_ROUTE = "/unsubscribe/{token}"
ARCHIVE_INDEX = "archive/index.html"  # the HTML archive's newest page: reaches every article
FEED_STYLESHEET = "feed.xsl"  # turns atom.xml / rss.xml into a page a browser shows
# in the output folder, never served: the pages of deleted articles, answered 410 Gone
GONE_PAGES = ".build/gone.json"
# names the Pagefind bundles under search/ that the search box reads (search.py)
SEARCH_MANIFEST = "search/index.json"
PREFERENCES_ROUTE = "/preferences/{token}"


_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]+")
_APOSTROPHES = re.compile(r"['’‘`]")
_SEPARATORS = re.compile(r"[^a-z0-9\u0080-\U0010ffff]+")


def absolute(base_url: str, path: str) -> str:
    """A path under the site root as a full URL."""
    return base_url.rstrip("/") + "/" + href(path).lstrip("/")


def href(path: str) -> str:
    """A path as printed in a URL: anything but printable ASCII percent-encoded as UTF-8
    (an ASCII path is returned as it is)."""
    return _NOT_PRINTABLE_ASCII.sub(lambda match: quote(match.group(), safe=""), path)


def slug_words(text: str) -> str:
    """Lower-case words joined by '-': Latin letters as ASCII ('Café' -> 'cafe'), letters
    and digits of other scripts kept as they are (NFC), everything else a separator."""
    kept: list[str] = []
    after_kept_letter = False  # a combining mark belongs to the letter before it
    for char in unicodedata.normalize("NFC", _APOSTROPHES.sub("", text)):
        ascii_part = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
        if ascii_part:
            kept.append(ascii_part.lower())
            after_kept_letter = False
        elif _other_script(char, after_kept_letter):
            kept.append(char.lower())
            after_kept_letter = True
        else:
            # as before: a Latin letter with no ASCII form, or a symbol, just goes
            after_kept_letter = False
    return _SEPARATORS.sub("-", "".join(kept)).strip("-")


def _other_script(char: str, after_kept_letter: bool) -> bool:
    category = unicodedata.category(char)
    if category[0] == "M":
        return after_kept_letter
    if category[0] not in "LN":
        return False
    return not unicodedata.name(char, "").startswith("LATIN")


def article_path(slug: str) -> str:
    return f"articles/{slug}.html"


def category_path(slug: str) -> str:
    """The category's folder (its index.html and feeds live in it)."""
    return f"category/{slug}/"


def archive_path(number: int) -> str:
    """An RFC 5005 archive document."""
    return f"archive/{number}.xml"


def archive_json_path(number: int) -> str:
    """The JSON Feed twin of archive/<n>.xml (same entries; next_url pages through them)."""
    return f"archive/{number}.json"


def category_index_path(slug: str) -> str:
    """A category's HTML page: its newest articles, linking to its older pages."""
    return f"category/{slug}/index.html"


def listing_page_path(folder: str, number: int) -> str:
    """Page `number` of an HTML listing: `folder` is "archive/" or a category_path."""
    return f"{folder}{number}.html"


def sitemap_path(number: int) -> str:
    """One page of the sitemap (sitemap.xml is their index)."""
    return f"sitemap/{number}.xml"


def sitemap_listing_path(number: int) -> str:
    """One page of the sitemap's listing pages (index, archive and category pages)."""
    return f"sitemap/listings-{number}.xml"


def confirm_path(token: str) -> str:
    return CONFIRM_ROUTE.format(token=token).lstrip("/")


def unsubscribe_path(token: str) -> str:
    return UNSUBSCRIBE_ROUTE.format(token=token).lstrip("/")


def preferences_path(token: str) -> str:
    return PREFERENCES_ROUTE.format(token=token).lstrip("/")
