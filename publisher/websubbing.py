"""Use case: WebSub. Tell hubs when a feed changed, and be a hub for our own feeds.

Publisher side: after a build that changed a feed file, each configured hub gets a
`hub.mode=publish` ping per changed topic. Hub side (`websub.builtin`): a subscription
request is checked (our topic, a callback we may reach, the per-host cap), answered 202,
then its intent verified with a GET challenge; only then is it stored. Each change of a
topic is POSTed to every active subscriber, signed when it gave a secret. Every call is
retried with backoff and a failure is logged, never raised into the build or the ingest:
`FeedAnnouncer` runs them beside the watcher in `publisher run` / `watch`, and the
one-shot commands flush it with a short timeout at their end.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import urlencode

from publisher.config import Settings
from publisher.store import Store
from publisher.store.websub import HubSubscription, HubSubscriptions
from publisher.websub import (
    InvalidHubRequest,
    SubscribeRequest,
    content_type,
    expires,
    hub_urls,
    parse_request,
    retry_delays,
    signature,
)
from publisher.websubhttp import CallbackRefused, Reply, call, resolve

__all__ = ["FeedAnnouncer", "InvalidHubRequest", "WebSub"]

log = logging.getLogger("publisher.websub")

PARALLEL_CALLS = 16  # outbound calls in flight at once


class WebSub:
    """The publisher and the built-in hub of one Settings and Store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.config = settings.websub
        self.hubs = hub_urls(settings)
        # its own threads: a slow callback must not take the ones the ingest and the
        # build run in (asyncio.to_thread's shared pool)
        self._pool = ThreadPoolExecutor(PARALLEL_CALLS, thread_name_prefix="websub")

    def close(self) -> None:
        """Let go of the call threads; a call still running ends at its socket timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the hub: subscriptions ----------------------------------------------------

    def check_request(self, form: dict[str, str]) -> SubscribeRequest:
        """A well-formed request for our topic and a callback we may reach, within the
        per-host cap; InvalidHubRequest (its text is the 400 answer) otherwise."""
        request = parse_request(
            form,
            self.settings.base_url,
            default_lease=self.config.lease_seconds,
            max_lease=self.config.max_lease_seconds,
        )
        try:
            resolve(request.callback, allow_private=self.config.allow_private_callbacks)
        except CallbackRefused as exc:
            raise InvalidHubRequest(f"hub.callback refused: {exc}") from exc
        if request.mode == "subscribe":
            now = self.clock()
            with self.store.read() as connection:
                subscriptions = HubSubscriptions(connection)
                known = subscriptions.exists(request.topic, request.callback, now)
                count = subscriptions.count_for_host(request.host, now)
            if not known and count >= self.config.max_subscriptions_per_host:
                raise InvalidHubRequest("too many subscriptions for this callback host")
        return request

    async def verify(self, request: SubscribeRequest) -> bool:
        """Verification of intent (WebSub 5.3): GET the callback with a challenge; only an
        echo of it, with a 2xx, makes the (un)subscription happen."""
        challenge = secrets.token_urlsafe(24)
        query = {
            "hub.mode": request.mode,
            "hub.topic": request.topic,
            "hub.challenge": challenge,
        }
        if request.mode == "subscribe":
            query["hub.lease_seconds"] = str(request.lease_seconds)
        joiner = "&" if "?" in request.callback else "?"
        url = request.callback + joiner + urlencode(query)
        try:
            reply = await self._call(url, "GET", private=self.config.allow_private_callbacks)
        except (OSError, http.client.HTTPException, CallbackRefused, TimeoutError) as exc:
            log.warning("websub: intent check of %r failed: %s", request.callback, exc)
            return False
        if not 200 <= reply.status < 300 or reply.body.strip() != challenge.encode():
            log.warning(
                "websub: %r did not confirm %s of %s (status %d)",
                request.callback,
                request.mode,
                request.topic,
                reply.status,
            )
            return False
        await asyncio.to_thread(self._record, request)
        log.info("websub: %s %r to %s", request.mode, request.callback, request.topic)
        return True

    def _record(self, request: SubscribeRequest) -> None:
        now = self.clock()
        with self.store.begin() as connection:
            subscriptions = HubSubscriptions(connection)
            if request.mode == "unsubscribe":
                subscriptions.remove(request.topic, request.callback)
                return
            subscriptions.prune(now)
            subscriptions.save(
                topic=request.topic,
                callback=request.callback,
                host=request.host,
                secret=request.secret,
                now=now,
                expires=expires(now, request.lease_seconds),
            )

    # -- announcing changes --------------------------------------------------------

    async def announce(self, paths: Iterable[str], *, retries: int | None = None) -> None:
        """Ping every hub for each changed topic file, and deliver it to the built-in
        hub's subscribers; failures are logged."""
        tries = self.config.retries if retries is None else retries
        work = []
        for path in dict.fromkeys(paths):
            topic = self.settings.url(path)
            for hub in self.settings.websub.hub_urls:
                work.append(self._ping(hub, topic, tries))
            if self.config.builtin:
                work.append(self._distribute(path, topic, tries))
        if work:
            await asyncio.gather(*work)

    async def _ping(self, hub: str, topic: str, tries: int) -> None:
        body = urlencode({"hub.mode": "publish", "hub.url": topic}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}

        async def once() -> Reply:
            # an operator's hub may well be on the local network
            return await self._call(hub, "POST", body=body, headers=headers, private=True)

        await self._retried(f"ping of hub {hub} for {topic}", once, tries)

    async def _distribute(self, path: str, topic: str, tries: int) -> None:
        now = self.clock()

        def subscribed() -> list[HubSubscription]:
            with self.store.read() as connection:
                return HubSubscriptions(connection).active(topic, now)

        found = await asyncio.to_thread(subscribed)
        if not found:
            return
        try:
            body = await asyncio.to_thread((self.settings.output_dir / path).read_bytes)
        except OSError as exc:
            log.warning("websub: cannot read %s for delivery: %s", path, exc)
            return
        hub = self.settings.url("websub")
        base = {
            "Content-Type": content_type(path),
            "Link": f'<{hub}>; rel="hub", <{topic}>; rel="self"',
        }
        await asyncio.gather(
            *(self._deliver(subscription, body, base, tries) for subscription in found)
        )

    async def _deliver(
        self, subscription: HubSubscription, body: bytes, base: dict[str, str], tries: int
    ) -> None:
        headers = dict(base)
        if subscription.secret:
            headers["X-Hub-Signature"] = signature(subscription.secret, body)

        async def once() -> Reply:
            return await self._call(
                subscription.callback,
                "POST",
                body=body,
                headers=headers,
                private=self.config.allow_private_callbacks,
            )

        await self._retried(f"delivery to {subscription.callback!r}", once, tries)

    async def _retried(self, what: str, once: Callable[[], Awaitable[Reply]], tries: int) -> bool:
        delays = [*retry_delays(tries, self.config.retry_seconds), None]
        for delay in delays:
            try:
                reply = await once()
            except (OSError, http.client.HTTPException, CallbackRefused, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
            else:
                if 200 <= reply.status < 300:
                    log.info("websub: %s: %d", what, reply.status)
                    return True
                problem = f"status {reply.status}"
                if reply.status == 410:  # the subscriber is gone for good
                    delay = None
            if delay is None:
                log.warning("websub: %s failed: %s; giving up", what, problem)
                return False
            log.info("websub: %s failed: %s; retrying in %gs", what, problem, delay)
            await asyncio.sleep(delay)
        return False

    async def _call(
        self,
        url: str,
        method: str,
        *,
        private: bool,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        timeout = self.config.timeout_seconds

        def blocking() -> Reply:
            # resolved again at every call: the address checked is the one connected to
            target = resolve(url, allow_private=private)
            return call(
                target,
                method,
                body=body,
                headers=headers,
                timeout=timeout,
                max_bytes=self.config.max_response_bytes,
            )

        running = asyncio.get_running_loop().run_in_executor(self._pool, blocking)
        # the socket timeout bounds each read; this bounds the whole call
        return await asyncio.wait_for(running, timeout * 2)


class FeedAnnouncer:
    """Collects the feed files each build changed and announces them in the background.

    `changed` may be called from any thread (builds run in worker threads); before `run`
    starts, or without it (one-shot commands), paths wait in `pending` for `flush`.
    """

    def __init__(self, websub: WebSub) -> None:
        self.websub = websub
        self.pending: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[list[str]] | None = None

    def changed(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self._lock:
            if self._loop is None or self._queue is None:
                self.pending.extend(paths)
                return
            self._loop.call_soon_threadsafe(self._queue.put_nowait, list(paths))

    async def run(self, stop: asyncio.Event) -> None:
        """Announce every change until `stop`; calls still in flight are then cancelled."""
        queue: asyncio.Queue[list[str]] = asyncio.Queue()
        with self._lock:
            self._loop, self._queue = asyncio.get_running_loop(), queue
            if self.pending:
                queue.put_nowait(self.pending)
                self.pending = []
        working: set[asyncio.Task[None]] = set()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.create_task(queue.get())
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                task = asyncio.create_task(self._announce(getting.result()))
                working.add(task)
                task.add_done_callback(working.discard)
        finally:
            with self._lock:
                self._loop = self._queue = None
            stopping.cancel()
            for task in working:
                task.cancel()
            await asyncio.gather(*working, return_exceptions=True)

    async def _announce(self, paths: list[str]) -> None:
        try:
            await self.websub.announce(paths)
        except Exception:  # never let one announcement stop the others
            log.exception("websub: announcing %s failed", ", ".join(paths))

    def flush(self, timeout: float) -> None:
        """One-shot commands: announce what is pending, one try each, within `timeout`."""
        with self._lock:
            paths, self.pending = self.pending, []
        if not paths or not self.websub.hubs:
            return

        async def once() -> None:
            try:
                await asyncio.wait_for(self.websub.announce(paths, retries=0), timeout)
            except TimeoutError:
                log.warning("websub: announcing took over %gs; given up", timeout)

        asyncio.run(once())
