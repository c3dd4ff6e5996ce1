"""The mailer's pool stops promptly when the ledger fails; it never hangs the process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from publisher.config import SmtpSettings
from publisher.errors import SendError
from publisher.mailer import Mailer, Outgoing


class BrokenLedger:
    async def sending(self, item: Outgoing) -> bool:
        raise RuntimeError("database went away")

    async def sent(self, item: Outgoing, attempts: int) -> None:
        raise AssertionError("nothing may be sent")

    async def failed(self, item: Outgoing, error: SendError, attempts: int) -> None:
        raise AssertionError("nothing may fail")


async def _many(count: int) -> AsyncIterator[Outgoing]:
    for n in range(count):
        yield Outgoing(
            n, "news@localhost", f"r{n}@example.org", b"Subject: x\r\n\r\nx\r\n", f"<{n}@x>"
        )


def test_a_ledger_error_stops_the_pool_with_that_error() -> None:
    mailer = Mailer(SmtpSettings(host="127.0.0.1", port=9, pool_size=2))

    async def run() -> None:
        # more items than the queue holds, so the producer is blocked when the error comes
        await asyncio.wait_for(mailer.send_all(_many(100), BrokenLedger()), timeout=10)

    with pytest.raises(RuntimeError, match="database went away"):
        asyncio.run(run())
