"""The HTML answers the subscription and preference routes share: a page rendered from
the site's templates, never cached (each one is about one subscriber), and the short
result page with a heading and a message."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from publisher.config import Settings
from publisher.render import render, template_environment

__all__ = ["Pages", "client_address"]

RESULT_TEMPLATE = "subscription_result.html.j2"


class Pages:
    def __init__(self, settings: Settings) -> None:
        self.environment = template_environment(settings)

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(
            # each is about one subscriber and works without JavaScript: no search box
            render(self.environment, template, private_page=True, **context),
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )

    def result(self, heading: str, message: str, status: int = 200) -> HTMLResponse:
        return self.page(RESULT_TEMPLATE, status, heading=heading, message=message)


def client_address(request: Request) -> str | None:
    """The client's address as the server sees it (the proxy's, unless forwarded_allow_ips)."""
    return request.client.host if request.client else None
