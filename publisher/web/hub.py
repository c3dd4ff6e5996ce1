"""POST /websub: the built-in WebSub hub's subscription endpoint (Starlette route).

The route knows nothing of the store or of outbound HTTP: it hands the form to a
`HubService` (websubbing.WebSub fits). A request is checked at once (400 with one line
of text when refused) and answered 202 Accepted; the verification of intent runs after
the answer is sent, as WebSub section 5.3 expects.
"""

from __future__ import annotations

import logging
from typing import Protocol

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.websub import HUB_ROUTE, InvalidHubRequest, SubscribeRequest

__all__ = ["HubService", "hub_routes"]

log = logging.getLogger("publisher.web")

_FIELD_LIMIT = 4000  # characters of any one form field; the checks cut far lower


class HubService(Protocol):
    def check_request(self, form: dict[str, str]) -> SubscribeRequest: ...

    async def verify(self, request: SubscribeRequest) -> bool: ...


def hub_routes(service: HubService) -> list[BaseRoute]:
    async def subscribe(request: Request) -> Response:
        try:
            async with request.form(max_files=0, max_fields=20) as form:
                fields = {
                    key: value[:_FIELD_LIMIT]
                    for key, value in form.items()
                    if isinstance(value, str)
                }
        except Exception:  # a malformed or multipart body
            return PlainTextResponse("a form (application/x-www-form-urlencoded) is expected", 400)
        try:
            checked = await run_in_threadpool(service.check_request, fields)
        except InvalidHubRequest as exc:
            return PlainTextResponse(str(exc), 400)
        return Response(status_code=202, background=BackgroundTask(service.verify, checked))

    async def about(request: Request) -> Response:
        return PlainTextResponse(
            "WebSub hub of this site: POST hub.mode, hub.topic, hub.callback here", 200
        )

    return [
        Route(HUB_ROUTE, subscribe, methods=["POST"], name="websub"),
        Route(HUB_ROUTE, about, methods=["GET", "HEAD"], name="websub-about"),
    ]
