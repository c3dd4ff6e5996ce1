"""The preference centre's pages (Starlette routes) and the "mail me a fresh link" form.

`GET /preferences/<token>` shows a plain HTML form (no JavaScript needed); its POST
saves categories, frequency and a pause, or does one of the buttons: resume, send me my
data (mailed, never shown), delete me. The routes call a `PreferenceService` (App hands
in preferences.PreferenceCentre) and know nothing of the store. A preview token (a
`send --dry-run` link) gets the "this is a preview" page and changes nothing. POSTs are
checked for same origin by web.security like the other forms.

`POST /links` (the form of an expired-link page) mails fresh links to a known address;
the answer is the same whatever the address, and a client is limited to
`server.subscribe_per_minute` such requests a minute.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import Settings
from publisher.errors import SendError, UsageError
from publisher.links import PREFERENCES_ROUTE, preferences_path
from publisher.model import SubscriberStatus
from publisher.tokens import PreviewClaim
from publisher.web.pages import Pages, client_address

__all__ = ["PreferenceService", "PreferencesShown", "preference_routes"]

MAX_CATEGORIES = 50


class PreferencesShown(Protocol):
    """What the form shows (preferences.Preferences fits)."""

    @property
    def email(self) -> str: ...
    @property
    def status(self) -> SubscriberStatus: ...
    @property
    def categories(self) -> tuple[str, ...]: ...
    @property
    def frequency(self) -> str: ...
    @property
    def paused_until(self) -> datetime | None: ...
    @property
    def known_categories(self) -> tuple[str, ...]: ...


class PreferenceService(Protocol):
    async def load(self, token: str) -> PreferencesShown | None:
        """The choices of the token's subscriber; None for a broken or expired token."""
        ...

    async def save(
        self,
        token: str,
        *,
        categories: Sequence[str],
        frequency: str,
        pause_weeks: int | None,
        resume: bool,
        client: str | None,
    ) -> PreferencesShown | None:
        """Apply the form (each change a consent event); UsageError for bad input."""
        ...

    async def send_data(self, token: str) -> str | None:
        """Mail what we hold to the token's address; the address, or None."""
        ...

    async def delete(self, token: str, client: str | None) -> str | None:
        """Erase the subscriber, keeping the suppression; the address, or None."""
        ...

    def request_fresh_link(self, email: str) -> None:
        """Mail fresh links to the address if it is known (in the background)."""
        ...


class _PerMinute:
    """Requests in a sliding one-minute window per client, bounded in memory."""

    def __init__(self, limit: int, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.max_clients = max_clients
        self.hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        hits = self.hits.pop(client, None) or deque()
        while hits and hits[0] <= now - 60:
            hits.popleft()
        allowed = self.limit <= 0 or len(hits) < self.limit
        if allowed:
            hits.append(now)
        self.hits[client] = hits
        while len(self.hits) > self.max_clients:
            self.hits.popitem(last=False)
        return allowed


def preference_routes(
    settings: Settings,
    service: PreferenceService,
    previewed: Callable[[str], PreviewClaim | None],
) -> list[BaseRoute]:
    """The routes for `create_app(settings, extra_routes=...)`; `previewed` tells a
    preview token (Subscriptions.preview)."""
    limiter = _PerMinute(settings.server.subscribe_per_minute)

    pages = Pages(settings)
    page, result = pages.page, pages.result

    def preview_answer(token: str) -> HTMLResponse | None:
        claim = previewed(token)
        if claim is None:
            return None
        return result(
            "This is a preview",
            f"This link comes from a preview of the digest for {claim.email} "
            f"(publisher send --dry-run). In a digest that is sent, the same link opens "
            f"the preferences of {claim.email}. Nothing was changed.",
        )

    def shown(
        token: str, found: PreferencesShown, message: str = "", status: int = 200
    ) -> HTMLResponse:
        paused = found.paused_until
        zone = settings.zone
        return page(
            "preferences.html.j2",
            status,
            email=found.email,
            frequency=found.frequency,
            chosen=list(found.categories),
            known=list(found.known_categories),
            paused_until=paused.astimezone(zone) if paused is not None else None,
            subscribed=found.status is SubscriberStatus.CONFIRMED,
            action="/" + preferences_path(token),  # wherever the page was reached
            message=message,
        )

    async def preferences_page(request: Request) -> Response:
        token = request.path_params["token"]
        if (answer := preview_answer(token)) is not None:
            return answer
        found = await service.load(token)
        if found is None:
            return page("link_expired.html.j2", 400)
        return shown(token, found)

    async def preferences_post(request: Request) -> Response:
        token = request.path_params["token"]
        if (answer := preview_answer(token)) is not None:
            return answer
        data = await request.form()
        action = str(data.get("action") or "save")
        client = client_address(request)
        if action == "data":
            try:
                address = await service.send_data(token)
            except SendError:
                return result(
                    "Not sent", "The mail could not be sent just now; please try later.", 503
                )
            if address is None:
                return page("link_expired.html.j2", 400)
            return result(
                "Your data is on its way",
                f"We mailed a copy of what we hold about {address} to that address.",
            )
        if action == "delete":
            if str(data.get("sure") or "") != "yes":
                found = await service.load(token)
                if found is None:
                    return page("link_expired.html.j2", 400)
                return shown(token, found, "Tick the box to confirm the deletion.", 400)
            address = await service.delete(token, client)
            if address is None:
                return page("link_expired.html.j2", 400)
            return result(
                "Deleted",
                f"We erased {address} and everything we held about it. We keep only a "
                "keyed hash of the address, so that nothing is ever sent to it again "
                "unless you subscribe anew.",
            )
        categories = [
            str(value).strip()[:200] for value in data.getlist("categories") if str(value).strip()
        ][:MAX_CATEGORIES]
        frequency = str(data.get("frequency") or "weekly").strip()
        pause_weeks: int | None = None
        resume = action == "resume"
        if action == "pause":
            text = str(data.get("pause_weeks") or "").strip()
            if not text.isdigit() or len(text) > 3:
                found = await service.load(token)
                if found is None:
                    return page("link_expired.html.j2", 400)
                return shown(token, found, "A pause is a whole number of weeks.", 400)
            pause_weeks = int(text)
        try:
            found = await service.save(
                token,
                categories=categories,
                frequency=frequency,
                pause_weeks=pause_weeks,
                resume=resume,
                client=client,
            )
        except UsageError as exc:
            again = await service.load(token)
            if again is None:
                return page("link_expired.html.j2", 400)
            return shown(token, again, exc.message, 400)
        if found is None:
            return page("link_expired.html.j2", 400)
        return shown(token, found, "Saved.")

    async def fresh_link(request: Request) -> Response:
        client = client_address(request) or "unknown"
        if not limiter.allow(client):
            return result("Too many requests", "Please wait a minute before trying again.", 429)
        data = await request.form()
        email = str(data.get("email") or "").strip()[:320]
        if email:
            service.request_fresh_link(email)
        return result(
            "Check your inbox",
            "If this address gets our digest, fresh links are on their way.",
        )

    return [
        Route(PREFERENCES_ROUTE, preferences_page, methods=["GET", "HEAD"]),
        Route(PREFERENCES_ROUTE, preferences_post, methods=["POST"]),
        Route("/links", fresh_link, methods=["POST"]),
    ]
