"""Request guards in front of every route: framing, a body size limit and a same-origin check.

- Framing: a request with both Content-Length and Transfer-Encoding gets 400 and the
  connection is closed (RFC 9112 section 6.1): a proxy in front may have read the body
  by the other header, and what follows on the connection is then not what it sent.

- Body size: a request whose Content-Length exceeds `server.max_body_bytes` gets 413
  before anything reads it; a chunked body is counted as it arrives and cut off the same way.
  Provider webhooks (`/webhooks/...`) post batches: their bound is `webhooks.max_body_bytes`.
- Same origin (CSRF): a browser POST to a form route must come from our own pages. The
  index page is static HTML (cached, served by nginx or a CDN in production), so it cannot
  carry a per-visitor token; instead a POST whose `Origin` (or, without it, `Referer`)
  names another site is refused with 403. Accepted origins: base_url's, and the one the
  request itself was addressed to (Host), so a server reached by another name still works.
  A request with neither header (curl, a mail provider's RFC 8058 one-click POST) passes:
  browsers always send Origin on a cross-site POST, so an attacker's page cannot omit it.
  The confirm button (`POST /confirm/<token>`), the preference centre's form
  (`POST /preferences/<token>`) and the fresh-link form (`POST /links`) are checked the
  same way.
  One-click unsubscribe (`/unsubscribe/<token>`) is not checked: its signed token is the
  proof, and mail providers post it from their own servers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.config import Settings

__all__ = ["RequestGuard", "same_origin"]

# form routes a cross-site page must not be able to submit
CHECKED_POSTS = ("/subscribe", "/links")
CHECKED_POST_PREFIXES = ("/confirm/", "/preferences/")
WEBHOOK_PREFIX = "/webhooks/"


class _TooLarge(Exception):
    pass


def _origin_of(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of a URL, or None if it has none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.lower()


def same_origin(headers: Headers, base_url: str) -> bool:
    """False when Origin (or Referer) names a site that is neither base_url nor this Host."""
    claimed = headers.get("origin")
    if claimed is None:
        claimed = headers.get("referer")
        if claimed is None:
            return True  # not a browser form post (or one with no way to tell): allowed
    elif claimed.strip().lower() == "null":
        return False  # sandboxed frames, data: URLs, some redirects: never our page
    origin = _origin_of(claimed.strip())
    if origin is None:
        return False
    base = _origin_of(base_url)
    if base is not None and origin == base:
        return True
    host = headers.get("host", "").strip().lower()
    # the scheme may differ behind a TLS-terminating proxy; the host must not
    return bool(host) and origin[1] == host


def _checked(path: str) -> bool:
    return path in CHECKED_POSTS or path.startswith(CHECKED_POST_PREFIXES)


class RequestGuard:
    """Pure ASGI middleware (no body buffering): 413 for big bodies, 403 for cross-site forms."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.limit = settings.server.max_body_bytes
        self.webhook_limit = settings.webhooks.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.webhook_limit if scope["path"].startswith(WEBHOOK_PREFIX) else self.limit
        length = headers.get("content-length")
        if length is not None and "transfer-encoding" in headers:
            await self._refuse(
                400, "Content-Length and Transfer-Encoding together.\n", scope, receive, send
            )
            return
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True  # a malformed length is not worth reading
            if too_big:
                await self._refuse(413, "Request body too large.\n", scope, receive, send)
                return
        if (
            scope["method"] == "POST"
            and _checked(scope["path"])
            and not same_origin(headers, self.settings.base_url)
        ):
            await self._refuse(
                403, "Cross-site form posts are not accepted.\n", scope, receive, send
            )
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(413, "Request body too large.\n", scope, receive, send)

    @staticmethod
    async def _refuse(status: int, text: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            text,
            status_code=status,
            headers={"Cache-Control": "no-store", "Connection": "close"},
        )
        await response(scope, receive, send)
