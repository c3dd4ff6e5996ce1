"""The main job, `publisher run`: watcher, digest scheduler and web server in one asyncio process.

Start: take the scheduler lock (one scheduler per database), seed an empty inbox from the
seeds on a first run, ingest the inbox, build the feeds, then run the inbox watcher, the
scheduler, the HTTP server, the `[inbound]` mail listener (when a port is set) and (with
--smtp-debug) an SMTP sink side by side. Stop
(SIGTERM / Ctrl-C): stop taking work, give a digest in flight a few seconds to finish its
SMTP transaction, close the sink last, all within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from publisher.config import Settings
from publisher.doctor import FAIL, exempt_from_doctor
from publisher.errors import PublisherError
from publisher.imappoll import ImapPoller
from publisher.listener import InboundListener
from publisher.schedule import DigestDue, DigestScheduler
from publisher.smtpsink import SmtpSink
from publisher.status import SCHEDULER_LOCK
from publisher.store.locks import DatabaseLock

if TYPE_CHECKING:
    from publisher.app import App

__all__ = ["RunOptions", "run"]

log = logging.getLogger("publisher.run")

# Stop budget (SIGTERM -> exit well inside 5 s): a digest in flight, then the SMTP sink.
DIGEST_GRACE_SECONDS = 3.0
SINK_GRACE_SECONDS = 1.0
LISTENER_GRACE_SECONDS = 0.5  # an unanswered message stays with the MTA, which retries


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The switches of `publisher run`."""

    host: str | None = None
    port: int | None = None
    smtp_debug: bool = False
    send: bool = True  # False (--no-send): no scheduler, no lock; watch and serve only


async def run(
    app: App,
    stop: asyncio.Event,
    options: RunOptions = RunOptions(),
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Run until `stop` is set; `ready` is set once everything listens.

    The app's settings carry the secret key the web pages sign with: the CLI resolves it
    (`ensure_secret_key`, or --insecure-dev) before it builds the App.
    """
    settings = app.settings
    lock = DatabaseLock(app.store, SCHEDULER_LOCK)
    if options.send and not lock.try_acquire():
        holder = lock.holder()
        raise PublisherError(
            "another `publisher run` is already scheduling digests for this database"
            + (f" ({holder})" if holder else "")
            + "; refusing to start a second scheduler",
            "stop it first; `publisher serve` and `publisher watch` may run beside it, "
            "or use `publisher run --no-send`",
        )
    sink: SmtpSink | None = None
    listener: InboundListener | None = None
    scheduler: DigestScheduler | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(app.seed_inbox)
        if options.smtp_debug:
            sink = await SmtpSink(
                settings.mailbox_dir, settings.smtp.host, settings.smtp.port
            ).start()
        await asyncio.to_thread(_initial_ingest_and_build, app)
        if settings.inbound.port:
            listener = await InboundListener(
                None,
                settings.inbound.host,
                settings.inbound.port,
                receive_many=_inbound_batch_receiver(app),
                lmtp=settings.inbound.lmtp,
                max_message_bytes=settings.inbound.max_message_bytes,
            ).start()

        if options.send:
            scheduler = DigestScheduler(
                settings, _digest_handler(app, options), engine=app.store.engine
            )
            for job in await scheduler.start():
                log.info(
                    "digest job %s: next run %s", job.frequency, _local(job.next_run, settings)
                )
        else:
            log.info("digests are not scheduled (--no-send)")

        from publisher.web import create_app, serve  # starlette/uvicorn load only when serving

        web = create_app(settings, extra_routes=app.web_routes())
        listening = asyncio.Event()
        host = options.host or settings.server.host
        port = settings.server.port if options.port is None else options.port
        tasks.append(
            asyncio.create_task(
                _guard("web server", serve(web, host, port, stop, ready=listening), stop)
            )
        )
        tasks.append(asyncio.create_task(_guard("inbox watcher", app.watch(stop), stop)))
        if app.websub_enabled:  # every task here runs until stop
            tasks.append(asyncio.create_task(_guard("websub", app.announce_feeds(stop), stop)))
        if settings.inbound.imap.host:
            tasks.append(asyncio.create_task(_poll_imap(app, stop)))
        waiting = asyncio.create_task(listening.wait())
        await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if listening.is_set():
            log.info("publisher run is up: %s", getattr(web.state, "url", f"http://{host}:{port}/"))
            if ready is not None:
                ready.set()
        await stop.wait()
        log.info("stopping")
    finally:
        stop.set()
        if listener is not None:
            await listener.stop(grace=LISTENER_GRACE_SECONDS)
        if scheduler is not None:
            await scheduler.stop(timeout=DIGEST_GRACE_SECONDS)
        if tasks:
            await asyncio.wait(tasks, timeout=DIGEST_GRACE_SECONDS)
        if sink is not None:
            await sink.stop(grace=SINK_GRACE_SECONDS)
        lock.release()
    for task in tasks:  # a part that failed on its own (e.g. the port was taken)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    log.info("stopped")


async def _guard(name: str, work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run one part; if it fails, stop the whole process (and let `run` re-raise)."""
    try:
        await work
    except Exception:
        log.error("%s failed; stopping", name)
        stop.set()
        raise


def _initial_ingest_and_build(app: App) -> None:
    """Ingest what the inbox holds, then one full feed build (not one per changed file)."""
    report = app.ingestor.ingest(None)
    counts = ", ".join(f"{k} {v}" for k, v in report.summary().items() if v)
    log.info("ingested inbox %s: %s", app.settings.inbox, counts or "empty")
    app.build_feeds()


def _inbound_receiver(app: App) -> Callable[[bytes], bool]:
    """The listener's handler: act on one message; True when acted on, False when kept."""
    inbound = app.inbound  # built once, here, not in the listener's threads

    def receive(data: bytes) -> bool:
        return inbound.receive(data).handled

    return receive


def _inbound_batch_receiver(app: App) -> Callable[[Sequence[bytes]], list[bool]]:
    """The listener's handler for a batch: one transaction for all of its messages."""
    inbound = app.inbound

    def receive_many(messages: Sequence[bytes]) -> list[bool]:
        return [outcome.handled for outcome in inbound.receive_many(messages)]

    return receive_many


async def _poll_imap(app: App, stop: asyncio.Event) -> None:
    """Poll `[inbound.imap]` every poll_seconds until stopped; a failed poll is logged and
    tried again at the next one (the messages stay in the mailbox meanwhile)."""
    imap = app.settings.inbound.imap
    poller = ImapPoller(imap)
    receive = _inbound_receiver(app)
    log.info(
        "polling %s:%s mailbox %s every %gs", imap.host, imap.port, imap.mailbox, imap.poll_seconds
    )
    while not stop.is_set():
        try:
            count = await asyncio.to_thread(poller.poll_once, receive)
        except Exception as exc:  # the server, the network or the database: retried
            log.warning(
                "imap poll of %s failed: %s; next try in %gs", imap.host, exc, imap.poll_seconds
            )
        else:
            if count:
                log.info("imap: %d messages handed over from %s", count, imap.mailbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), imap.poll_seconds)


def _digest_handler(app: App, options: RunOptions) -> Callable[[DigestDue], Awaitable[None]]:
    """The scheduler's handler: one digest run of the due frequency, logged with its counts;
    none while `publisher doctor` fails, as `publisher send` refuses (the same exemptions)."""

    async def handler(due: DigestDue) -> None:
        refusal = await asyncio.to_thread(_doctor_refusal, app, options)
        if refusal is not None:
            # no run is opened: each subscriber's window still starts at their last digest,
            # so the next send that goes (scheduled or by hand) carries these articles too
            log.error("scheduled %s digest not sent: %s", due.frequency, refusal)
            return
        zone = app.settings.zone
        log.info(
            "digest run started: %s (due %s)",
            due.frequency,
            due.scheduled.astimezone(zone).isoformat(),
        )
        report = await app.send_digests_async(frequency=due.frequency)
        counts = ", ".join(f"{k} {v}" for k, v in report.summary().items())
        log.info("digest run finished: %s (run %s): %s", due.frequency, report.run_id, counts)
        if report.failover:
            log.warning("digest run %s: %s", report.run_id, report.failover)
        if report.unreachable:  # the rows stay open for the next run
            log.error("%s; %d messages left for the next run", report.unreachable, report.deferred)

    return handler


def _doctor_refusal(app: App, options: RunOptions) -> str | None:
    """Why a scheduled real send must wait, or None: no doctor fail, mail that stays on this
    machine (--smtp-debug, or the loopback demo `send` exempts too), or doctor.skip_scheduled."""
    settings = app.settings
    if options.smtp_debug or settings.doctor.skip_scheduled or exempt_from_doctor(settings):
        return None
    failing = [check for check in app.doctor() if check.status == FAIL]
    if not failing:
        return None
    first = failing[0]
    return (
        f"`publisher doctor` has {len(failing)} failing check(s), first {first.name}: "
        f"{first.message}" + (f" (fix: {first.fix})" if first.fix else "") + "; it goes "
        "out once they pass, or set doctor.skip_scheduled = true to send regardless"
    )


def _local(moment: datetime | None, settings: Settings) -> str | None:
    return moment.astimezone(settings.zone).isoformat() if moment is not None else None
