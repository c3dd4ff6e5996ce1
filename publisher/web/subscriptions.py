"""Subscribe, confirm and one-click unsubscribe pages (Starlette routes).

The routes know nothing of the store or the mailer: they call a `SubscriptionService`
(App implements it). Answers never reveal whether an address is already known, a GET
or HEAD never changes anything (mail scanners and link prefetchers fetch every link, so
`/confirm/<token>` shows a button and only its POST confirms), and
`POST /unsubscribe/<token>` works without cookies or login (RFC 8058 one-click) and
answers 200, not a redirect.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import Settings
from publisher.links import CONFIRM_ROUTE, UNSUBSCRIBE_ROUTE, unsubscribe_path
from publisher.messages import InvalidSubscription
from publisher.render import render, template_environment

__all__ = ["InvalidSubscription", "SubscriptionService", "subscription_routes"]


class SubscriptionService(Protocol):
    async def subscribe(
        self,
        email: str,
        name: str | None,
        categories: Sequence[str],
        frequency: str,
        client: str | None = None,
    ) -> None:
        """Register a pending subscriber and mail a confirmation (cool-down permitting).

        Raises InvalidSubscription for a malformed form; says nothing about existence.
        """
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


class _PerMinute:
    """A sliding one-minute window per client address, bounded in memory."""

    def __init__(self, limit: int, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.max_clients = max_clients
        self.hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str, now: float | None = None) -> bool:
        if self.limit <= 0:
            return True
        now = time.monotonic() if now is None else now
        hits = self.hits.pop(client, None) or deque()
        while hits and hits[0] <= now - 60:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self.hits[client] = hits  # most recent last: the oldest clients are dropped first
        while len(self.hits) > self.max_clients:
            self.hits.popitem(last=False)
        return allowed


def _client(request: Request) -> str | None:
    """The client's address as the server sees it (the proxy's, unless forwarded_allow_ips)."""
    return request.client.host if request.client else None


def subscription_routes(settings: Settings, service: SubscriptionService) -> list[BaseRoute]:
    """The routes for `create_app(settings, extra_routes=...)`."""
    environment = template_environment(settings)
    limiter = _PerMinute(settings.server.subscribe_per_minute)

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(
            render(environment, template, **context),
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )

    def result(heading: str, message: str, status: int = 200) -> HTMLResponse:
        return page("subscription_result.html.j2", status, heading=heading, message=message)

    def invalid_link() -> HTMLResponse:
        return result(
            "This link is not valid",
            "The link is broken or has expired. Nothing was changed.",
            400,
        )

    def form(message: str, status: int = 200, email: str = "", name: str = "") -> HTMLResponse:
        return page(
            "subscribe.html.j2",
            status,
            heading="Subscribe",
            message=message,
            show_form=True,
            email=email,
            form_name=name,
        )

    async def subscribe_form(request: Request) -> Response:
        return form(f"Get the {settings.site.title} digest by email.")

    async def subscribe(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if not limiter.allow(client):
            return result("Too many requests", "Please wait a minute before trying again.", 429)
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
            await service.subscribe(email, name, categories, frequency, client)
        except InvalidSubscription as exc:
            return form(str(exc), 400, email=email, name=name or "")
        # the same answer whether the address is new, pending or long confirmed
        return result(
            "Check your inbox",
            "If this address can receive our digest, a confirmation link is on its way. "
            "Nothing is sent until you click it.",
        )

    async def confirm_page(request: Request) -> Response:
        address = await service.confirm_target(request.path_params["token"])
        if address is None:
            return invalid_link()
        return page("confirm_page.html.j2", email=address)

    async def confirm(request: Request) -> Response:
        address = await service.confirm(request.path_params["token"], _client(request))
        if address is None:
            return invalid_link()
        return result(
            "Subscription confirmed", f"{address} will receive the {settings.site.title} digest."
        )

    async def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        address = await service.unsubscribe_target(token)
        if address is None:
            return invalid_link()
        return page(
            "unsubscribe.html.j2", email=address, action=settings.url(unsubscribe_path(token))
        )

    async def unsubscribe(request: Request) -> Response:
        address = await service.unsubscribe(request.path_params["token"], _client(request))
        if address is None:
            return invalid_link()
        return result("Unsubscribed", f"{address} will get no more digests from us.")

    return [
        Route("/subscribe", subscribe_form, methods=["GET", "HEAD"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route(CONFIRM_ROUTE, confirm_page, methods=["GET", "HEAD"]),
        Route(CONFIRM_ROUTE, confirm, methods=["POST"]),
        Route(UNSUBSCRIBE_ROUTE, unsubscribe_page, methods=["GET", "HEAD"]),
        Route(UNSUBSCRIBE_ROUTE, unsubscribe, methods=["POST"]),
    ]
