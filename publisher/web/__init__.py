"""Adapter: HTTP. Serves the output folder (static.py) plus routes other parts hand in.

`create_app(settings, extra_routes=...)` builds the Starlette app; `serve(app, ...)` runs
it with uvicorn inside the caller's event loop until `stop` is set. After `ready` is set,
`app.state.port` holds the bound port (useful with port 0) and `app.state.url` the base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from publisher.config import Settings, forwarded_ips
from publisher.errors import PublisherError
from publisher.web.connections import with_header_timeout
from publisher.web.security import RequestGuard
from publisher.web.static import SecurityHeaders, StaticSite

__all__ = ["BaseRoute", "create_app", "serve"]

log = logging.getLogger("publisher.web")


def create_app(settings: Settings, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app: `extra_routes` first, then the output folder as a catch-all."""
    site = StaticSite(settings)
    app = Starlette(
        routes=[
            *extra_routes,
            Route("/{path:path}", site.endpoint, methods=["GET", "HEAD"], name="static"),
        ],
        exception_handlers={
            404: site.not_found_handler,
            405: site.error_handler,
            500: site.error_handler,
        },
    )
    app.add_middleware(RequestGuard, settings=settings)  # 413, 403 (CSRF)
    app.add_middleware(SecurityHeaders)
    app.state.settings = settings
    app.state.port = None
    app.state.url = None
    return app


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the caller owns signals (run_until_signal sets `stop`)."""

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self.started_event = started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.started_event.set()


def _bind(host: str, port: int) -> socket.socket:
    """Bind here, not in uvicorn: it would sys.exit() on a busy port; we raise instead."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        bound = socket.socket(family, kind, protocol)
    except OSError as exc:
        raise PublisherError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound.bind(address)
    except OSError as exc:
        bound.close()
        raise PublisherError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "is another server using that port? pick one with --port",
        ) from exc
    return bound


def _uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    """Limits on connections; X-Forwarded-For believed only from the configured proxies."""
    server = app.state.settings.server
    proxies = forwarded_ips(server)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=with_header_timeout(server.header_timeout_seconds),
        # uvicorn's default trusts 127.0.0.1, so behind nothing every local client could
        # claim any address (and dodge the per-address subscribe limit)
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        timeout_keep_alive=server.keep_alive_seconds,
        limit_concurrency=server.limit_concurrency,
    )


async def serve(
    app: Starlette,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve `app` on host:port (0: any free port) until `stop` is set.

    Once listening, sets `ready` and `app.state.port` / `app.state.url`.
    """
    bound = _bind(host, port)
    config = _uvicorn_config(app, host, port)
    started = asyncio.Event()
    server = _Server(config, started)
    task = asyncio.create_task(server.serve(sockets=[bound]))
    waiting = asyncio.create_task(started.wait())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            actual = int(bound.getsockname()[1])
            shown = f"[{host}]" if ":" in host else host
            app.state.port = actual
            app.state.url = f"http://{shown}:{actual}/"
            log.info("serving %s on %s", app.state.settings.output_dir, app.state.url)
            if ready is not None:
                ready.set()
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await task
    finally:
        for helper in (waiting, stopping):
            helper.cancel()
        if not task.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bound.close()
