"""Subscribe, confirm and one-click unsubscribe pages (Starlette routes).

The routes know nothing of the store or the mailer: they call a `SubscriptionService`
(App implements it). Answers never reveal whether an address is already known, a GET
or HEAD never changes anything (mail scanners and link prefetchers fetch every link, so
`/confirm/<token>` shows a button and only its POST confirms), and
`POST /unsubscribe/<token>` works without cookies or login (RFC 8058 one-click) and
answers 200, not a redirect. Every route answers a preview token (the links of a
`send --dry-run` .eml) with a "this is a preview" page, GET or POST, and changes nothing.

The subscribe limit counts FAILED attempts (a malformed form) per client address: a
school or an office behind one address can sign up any number of people, a client
that keeps sending garbage locks out only itself. The client address is the socket's,
or X-Forwarded-For's when it comes from a proxy named in `server.forwarded_allow_ips`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import Settings
from publisher.links import CONFIRM_ROUTE, UNSUBSCRIBE_ROUTE, unsubscribe_path
from publisher.messages import InvalidSubscription
from publisher.model import Choices, SubscriberStatus
from publisher.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, PreviewClaim
from publisher.web.pages import Pages, client_address

__all__ = ["InvalidSubscription", "SubscriptionService", "subscription_routes"]

log = logging.getLogger("publisher.web")

# what the real link of a preview would have done
_PREVIEWED = {
    CONFIRM: "confirms the subscription of",
    UNSUBSCRIBE: "unsubscribes",
    PREFERENCES: "opens the preferences of",
}


class SubscriptionService(Protocol):
    async def subscribe(
        self,
        email: str,
        name: str | None,
        categories: Sequence[str],
        frequency: str,
        client: str | None = None,
    ) -> datetime | None:
        """Register a pending subscriber and mail a confirmation (cool-down permitting).

        Raises InvalidSubscription for a malformed form. Returns when the last
        confirmation went to this still-unconfirmed address if that was within the
        cool-down (nothing is sent now), else None whatever the address is.
        """
        ...

    def preview(self, token: str) -> PreviewClaim | None:
        """What a preview link stands in for, or None if `token` is no preview token."""
        ...

    async def confirm_target(self, token: str) -> str | None:
        """The address a valid confirm token names while it can confirm (nothing changes)."""
        ...

    async def confirm(self, token: str, client: str | None = None) -> str | None:
        """Confirm a pending subscriber; the address (also when already confirmed), or None
        for a forged or expired token or an address that left (unsubscribed, bounced)."""
        ...

    async def unsubscribe_target(self, token: str) -> str | None:
        """The address a valid unsubscribe token names (nothing changes), else None."""
        ...

    async def unsubscribe(self, token: str, client: str | None = None) -> str | None:
        """Unsubscribe; the address, or None for a forged or expired token. `client`: the
        address the request came from, for the consent history."""
        ...

    async def unsubscribe_status(self, token: str) -> SubscriberStatus | None:
        """The status of the subscriber a valid unsubscribe token names, else None."""
        ...

    async def choices(self, email: str) -> Choices | None:
        """What a subscribed address chose and when its first digest comes."""
        ...

    async def known_categories(self) -> list[str]:
        """The categories the subscribe form offers."""
        ...


class _FailuresPerMinute:
    """Failed attempts in a sliding one-minute window per client address, bounded in
    memory; a client with `limit` of them is refused until the oldest is a minute old."""

    def __init__(self, limit: int, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.max_clients = max_clients
        self.hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        hits = self.hits.pop(client, None) or deque()
        while hits and hits[0] <= now - 60:
            hits.popleft()
        return hits

    def blocked(self, client: str, now: float | None = None) -> bool:
        if self.limit <= 0 or client not in self.hits:
            return False
        now = time.monotonic() if now is None else now
        hits = self._recent(client, now)
        if hits:
            self.hits[client] = hits
        return len(hits) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        hits = self._recent(client, now)
        hits.append(now)
        self.hits[client] = hits  # most recent last: the oldest clients are dropped first
        while len(self.hits) > self.max_clients:
            self.hits.popitem(last=False)


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    return f"{minutes // 60} hours ago"


def _wait(seconds: float) -> str:
    minutes = max(1, -int(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def subscription_routes(settings: Settings, service: SubscriptionService) -> list[BaseRoute]:
    """The routes for `create_app(settings, extra_routes=...)`."""
    limiter = _FailuresPerMinute(settings.server.subscribe_per_minute)
    cooldown = settings.server.subscribe_cooldown_seconds
    unproxied: list[str] = []  # the first proxy seen while forwarded_allow_ips is unset

    pages = Pages(settings)
    page, result = pages.page, pages.result

    def invalid_link() -> HTMLResponse:
        return page("link_expired.html.j2", 400)

    async def form(
        message: str,
        status: int = 200,
        email: str = "",
        name: str = "",
        frequency: str = "weekly",
        chosen: Sequence[str] = (),
    ) -> HTMLResponse:
        return page(
            "subscribe.html.j2",
            status,
            heading="Subscribe",
            message=message,
            show_form=True,
            email=email,
            form_name=name,
            frequency=frequency,
            chosen=list(chosen),
            form_categories=await service.known_categories(),
        )

    def previewed(token: str) -> HTMLResponse | None:
        """The answer to a preview link, or None if `token` is no preview token."""
        claim = service.preview(token)
        if claim is None:
            return None
        return result(
            "This is a preview",
            f"This link comes from a preview of the digest for {claim.email} "
            f"(publisher send --dry-run). In a digest that is sent, the same link "
            f"{_PREVIEWED.get(claim.link, 'acts for')} {claim.email}. Nothing was changed.",
        )

    def client_of(request: Request) -> str:
        client = request.client.host if request.client else "unknown"
        if (
            not unproxied
            and not settings.server.forwarded_allow_ips
            and "x-forwarded-for" in request.headers
        ):
            unproxied.append(client)
            log.warning(
                "requests from %s carry X-Forwarded-For, which is ignored: every reader "
                "behind that proxy shares one subscribe limit; name it in "
                "server.forwarded_allow_ips",
                client,
            )
        return client

    async def subscribe_form(request: Request) -> Response:
        return await form(f"Get the {settings.site.title} digest by email.")

    async def subscribe(request: Request) -> Response:
        client = client_of(request)
        if limiter.blocked(client):
            return result(
                "Too many requests",
                "Too many forms from your address could not be accepted. "
                "Please wait a minute before trying again.",
                429,
            )
        data = await request.form()
        email = str(data.get("email") or "").strip()
        name = str(data.get("name") or "").strip() or None
        frequency = str(data.get("frequency") or "weekly").strip()
        categories = [
            part.strip()
            for value in data.getlist("categories")
            for part in str(value).split(",")
            if part.strip()
        ]
        try:
            cooling = await service.subscribe(email, name, categories, frequency, client)
        except InvalidSubscription as exc:
            limiter.failed(client)
            return await form(
                str(exc), 400, email=email, name=name or "", frequency=frequency, chosen=categories
            )
        if cooling is not None:
            waited = max(0.0, (datetime.now(UTC) - cooling).total_seconds())
            return result(
                "Check your inbox",
                f"A confirmation was sent {_ago(waited)}; check your inbox (and the spam "
                f"folder) for its link. You can ask for a new one in "
                f"{_wait(cooldown - waited)}.",
            )
        # the same answer whether the address is new, pending or long confirmed
        return result(
            "Check your inbox",
            "If this address can receive our digest, a confirmation link is on its way. "
            "Nothing is sent until you click it.",
        )

    async def confirm_page(request: Request) -> Response:
        token = request.path_params["token"]
        if (answer := previewed(token)) is not None:
            return answer
        address = await service.confirm_target(token)
        if address is None:
            return invalid_link()
        return page("confirm_page.html.j2", email=address)

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        if (answer := previewed(token)) is not None:
            return answer
        address = await service.confirm(token, client_address(request))
        if address is None:
            return invalid_link()
        chosen = await service.choices(address)
        return page(
            "confirmed.html.j2", email=address, chosen=chosen, welcome=settings.digest.welcome
        )

    async def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        if (answer := previewed(token)) is not None:
            return answer
        address = await service.unsubscribe_target(token)
        if address is None:
            return invalid_link()
        status = await service.unsubscribe_status(token)
        left = status not in (None, SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING)
        return page(
            "unsubscribe.html.j2",
            email=address,
            action="/" + unsubscribe_path(token),  # wherever the page was reached
            left=left,
            state=status.value if left and status is not None else "",
        )

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        if (answer := previewed(token)) is not None:
            return answer
        address = await service.unsubscribe(token, client_address(request))
        if address is None:
            return invalid_link()
        return page("unsubscribe.html.j2", email=address, left=True, state="unsubscribed")

    return [
        Route("/subscribe", subscribe_form, methods=["GET", "HEAD"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route(CONFIRM_ROUTE, confirm_page, methods=["GET", "HEAD"]),
        Route(CONFIRM_ROUTE, confirm, methods=["POST"]),
        Route(UNSUBSCRIBE_ROUTE, unsubscribe_page, methods=["GET", "HEAD"]),
        Route(UNSUBSCRIBE_ROUTE, unsubscribe, methods=["POST"]),
    ]
