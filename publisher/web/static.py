"""The output folder over HTTP: strong ETags, 304s, gzip, feed content types, safe paths.

Files are small and change only by atomic replace, so each is read whole and kept in a
small cache keyed by (inode, size, mtime); its ETag is a hash of the bytes, so it moves
exactly when the content does (writes that would not change a file are skipped).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import mimetypes
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.config import Settings
from publisher.links import GONE_PAGES, SEARCH_MANIFEST
from publisher.render import render, template_environment

try:  # br only when a Brotli library happens to be installed; gzip always
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

__all__ = ["CONTENT_SECURITY_POLICY", "SecurityHeaders", "StaticSite", "content_type_of"]

log = logging.getLogger("publisher.web")

# connect-src 'self': crawler audits (Lighthouse's robots.txt check) fetch from the page.
# script-src 'self' 'wasm-unsafe-eval' and worker-src 'self': the search box runs our
# search.js and Pagefind's own files, which compile its WebAssembly (no eval of strings).
# Only HTML gets a policy: robots.txt, sitemaps and feeds are read by crawlers and
# readers, and a browser applying feed.xsl to a feed needs no permission beyond its origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_FEED_TYPES = {
    "atom.xml": "application/atom+xml; charset=utf-8",
    "rss.xml": "application/rss+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
}
_COMPRESSIBLE = ("text/", "application/atom+xml", "application/rss+xml", "application/feed+json")
_MIN_COMPRESS = 256
_PAGE_FEED_TYPES = ("application/atom+xml", "application/rss+xml")
_CACHE_FILES = 2048


def content_type_of(relative: str) -> str:
    """Content-Type by name: feeds by their file name, archive pages are Atom."""
    name = relative.rsplit("/", 1)[-1]
    if name in _FEED_TYPES:
        return _FEED_TYPES[name]
    if relative.startswith("archive/") and name.endswith(".xml"):
        return _FEED_TYPES["atom.xml"]
    if relative.startswith("archive/") and name.endswith(".json"):
        return _FEED_TYPES["feed.json"]
    if name.endswith(".xsl"):
        return "text/xsl; charset=utf-8"  # what browsers accept for an XSLT stylesheet
    guessed, _ = mimetypes.guess_type(name)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/json", "application/xml"):
        return f"{guessed}; charset=utf-8"
    return guessed


def cache_control_of(relative: str) -> str:
    """Readers poll feeds; pages change rarely; full archive pages and styles hardly ever."""
    if relative.startswith("static/"):
        return "public, max-age=86400"
    if relative == SEARCH_MANIFEST:
        return "no-cache"  # names the bundles of the newest build: a delete shows at once
    if relative.startswith("search/"):
        return "public, max-age=86400"  # a bundle is never rewritten, only replaced
    if relative.endswith(".html"):
        return "public, max-age=60"  # archive/index.html changes with every article
    if relative.startswith("archive/"):
        return "public, max-age=3600"
    return "public, max-age=300"


@dataclass
class _File:
    key: tuple[int, int, int]
    body: bytes
    etag: str  # without quotes
    modified: float
    content_type: str
    encoded: dict[str, bytes] = field(default_factory=dict)

    def variant(self, coding: str | None) -> tuple[bytes, str]:
        """The body in this content-coding and the strong ETag of that representation."""
        if coding is None:
            return self.body, f'"{self.etag}"'
        if coding not in self.encoded:
            if coding == "br" and brotli is not None:
                self.encoded[coding] = brotli.compress(self.body)
            else:
                self.encoded[coding] = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self.encoded[coding], f'"{self.etag}-{coding}"'


class StaticSite:
    """The endpoint serving settings.output_dir, and the not-found / error pages."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.output_dir
        self.environment = template_environment(settings)
        self._files: OrderedDict[Path, _File] = OrderedDict()
        self._gone: tuple[tuple[int, int, int], frozenset[str]] | None = None

    async def endpoint(self, request: Request) -> Response:
        relative = _safe_relative(str(request.path_params.get("path", "")))
        if relative is None:
            raise HTTPException(404)
        target = self.root.joinpath(*relative.split("/")) if relative else self.root
        if target.is_dir():
            if relative and not request.url.path.endswith("/"):
                # from the cleaned path: `//host` would send the browser to another site
                return RedirectResponse("/" + relative + "/", status_code=301)
            relative = (relative + "/" if relative else "") + "index.html"
            target = target / "index.html"
        found = self._load(target)
        if found is None:
            if relative in self._gone_pages():
                return self._gone_page(request)
            raise HTTPException(404)
        return _respond(request, relative, found)

    def _gone_pages(self) -> frozenset[str]:
        """The pages of deleted articles (site.py writes the list), re-read when it changes."""
        path = self.root.joinpath(*GONE_PAGES.split("/"))
        try:
            status = path.stat()
            key = (status.st_ino, status.st_size, status.st_mtime_ns)
            if self._gone is not None and self._gone[0] == key:
                return self._gone[1]
            listed = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return frozenset()
        pages = frozenset(str(p) for p in listed) if isinstance(listed, dict) else frozenset()
        self._gone = (key, pages)
        return pages

    def _gone_page(self, request: Request) -> Response:
        """410 Gone: the article was deleted on purpose, and readers and crawlers should
        forget it (a 404 says nothing about coming back)."""
        headers = {"Cache-Control": "no-cache"}
        try:
            page = render(self.environment, "410.html.j2", path=request.url.path)
        except Exception:  # a broken override template must not turn 410 into 500
            log.exception("rendering 410.html.j2 failed")
            return PlainTextResponse("Gone\n", status_code=410, headers=headers)
        return HTMLResponse(page, status_code=410, headers=headers)

    def _load(self, target: Path) -> _File | None:
        try:
            root = self.root.resolve()
            resolved = target.resolve()
            if not resolved.is_relative_to(root) or not resolved.is_file():
                return None  # a symlink out of the folder is as good as missing
            status = resolved.stat()
            key = (status.st_ino, status.st_size, status.st_mtime_ns)
            cached = self._files.get(resolved)
            if cached is not None and cached.key == key:
                self._files.move_to_end(resolved)
                return cached
            body = resolved.read_bytes()
        except OSError:
            return None
        loaded = _File(
            key=key,
            body=body,
            etag=hashlib.blake2b(body, digest_size=16).hexdigest(),
            modified=status.st_mtime,
            content_type=content_type_of(resolved.relative_to(root).as_posix()),
        )
        self._files[resolved] = loaded
        while len(self._files) > _CACHE_FILES:
            self._files.popitem(last=False)
        return loaded

    async def not_found_handler(self, request: Request, exc: Exception) -> Response:
        try:
            page = render(self.environment, "404.html.j2", path=request.url.path)
        except Exception:  # a broken override template must not turn 404 into 500
            log.exception("rendering 404.html.j2 failed")
            return PlainTextResponse("Not found\n", status_code=404)
        return HTMLResponse(page, status_code=404, headers={"Cache-Control": "no-cache"})

    async def error_handler(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return PlainTextResponse(
                f"{exc.detail}\n", status_code=exc.status_code, headers=exc.headers
            )
        log.error("error serving %s: %r", request.url.path, exc)
        return PlainTextResponse("Internal server error\n", status_code=500)


def _safe_relative(path: str) -> str | None:
    """The request path as a relative POSIX path, or None for anything that could escape.

    The router hands us the percent-decoded path, so `%2e%2e` and `%2f` arrive as `..`
    and `/` and are refused here like their plain forms. Dot files (the build state) are
    never served.
    """
    if "\\" in path or "\x00" in path:
        return None
    parts = [part for part in path.split("/") if part]
    if any(part.startswith(".") for part in parts):
        return None
    return "/".join(parts)


def _as_page(request: Request, content_type: str) -> bool:
    """A browser opening an Atom/RSS feed: it shows application/atom+xml and rss+xml as
    plain text and would never apply feed.xsl, but renders application/xml through it.
    Feed readers ask for the feed types (or */*) and keep getting them."""
    if not content_type.startswith(_PAGE_FEED_TYPES):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not any(t in accept for t in _PAGE_FEED_TYPES)


def _respond(request: Request, relative: str, found: _File) -> Response:
    coding = _coding(request.headers.get("accept-encoding", ""), found)
    body, etag = found.variant(coding)
    media_type = found.content_type
    vary = "Accept-Encoding"
    if media_type.startswith(_PAGE_FEED_TYPES):
        vary = "Accept, Accept-Encoding"
        if _as_page(request, media_type):
            media_type = "application/xml; charset=utf-8"
            etag = etag.removesuffix('"') + '-page"'  # another representation, another tag
    headers = {
        "ETag": etag,
        "Last-Modified": formatdate(found.modified, usegmt=True),
        "Cache-Control": cache_control_of(relative),
        "Vary": vary,
    }
    if _not_modified(request, etag, found.modified):
        return Response(status_code=304, headers=headers)
    if coding is not None:
        headers["Content-Encoding"] = coding
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        body = b""
    return Response(body, headers=headers, media_type=media_type)


def _coding(accept: str, found: _File) -> str | None:
    """br (if available) or gzip when the client accepts it and the type compresses."""
    if len(found.body) < _MIN_COMPRESS or not found.content_type.startswith(_COMPRESSIBLE):
        return None
    weights: dict[str, float] = {}
    for item in accept.split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name:
            weights[name.strip().lower()] = quality
    star = weights.get("*", 0.0)
    for coding in ("br", "gzip") if brotli is not None else ("gzip",):
        if weights.get(coding, star) > 0:
            return coding
    return None


def _not_modified(request: Request, etag: str, modified: float) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match wins over If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since:
        try:
            since: datetime = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            return False
        return int(modified) <= since.timestamp()
    return False


class SecurityHeaders:
    """nosniff on every response; a strict CSP on every HTML page (ours and extra routes')."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = raw = list(message.get("headers", []))
                headers = MutableHeaders(raw=raw)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
