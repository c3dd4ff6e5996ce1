"""Warm-up of a new sending domain through a real SMTP sink: a daily allowance, oldest
subscribers first, the rest left pending for the next day, each message sent once.

On SQLite (one sender) and on PostgreSQL (`send` claims like a worker; two workers share
the day's allowance through the database).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, inspect, select, text, update

from publisher.app import App
from publisher.cli import cli
from publisher.config import WarmupSettings, load_settings
from publisher.sending.warmup import WarmupGate
from publisher.store import Store
from publisher.store.ledger import in_ledger_transaction
from publisher.store.schema import (
    SCHEMA_VERSION,
    deliveries,
    digest_runs,
    schema_version,
    subscribers,
    warmup_days,
)
from publisher.warmup import WarmupState, allowance, day_number
from tests.conftest import ROOT, SEEDS, _fresh_postgres_database
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)  # 12:00 in Asia/Shanghai, the config's zone
DAY = timedelta(days=1)
PEOPLE = 520
WARMUP = "\n[warmup]\nstart = 200\ngrowth = 1.5\nuntil = 200000\n"


def _config(tmp_path: Path, url: str, sink: SmtpSink, warmup: str = WARMUP, **extra: str) -> Path:
    config = send_config(tmp_path, url, sink)
    with config.open("a", encoding="utf-8") as out:
        out.write(warmup)
        for section, body in extra.items():
            out.write(f"\n[{section}]\n{body}\n")
    return config


def _subscribe(app: App, people: int, *, first: int = 0) -> list[str]:
    """`people` confirmed subscribers, written in shuffled order (ids do not follow the
    subscription order); returns their addresses, oldest subscription first."""
    emails = [f"reader{n:04}@example.com" for n in range(first, first + people)]
    order = list(range(people))
    random.Random(people).shuffle(order)
    start = INGESTED - timedelta(days=400)
    with app.store.begin() as connection:
        connection.execute(
            insert(subscribers),
            [
                {
                    "email": emails[n],
                    "name": None,
                    "status": "confirmed",
                    "categories": "[]",
                    "frequency": "weekly",
                    "timezone": "UTC",
                    # every third one confirmed long after it signed up: confirmed counts
                    "created": start + timedelta(hours=n if n % 3 else n - 300),
                    "confirmed": start + timedelta(hours=n),
                    "hard_failures": 0,
                }
                for n in order
            ],
        )
    return emails


@pytest.fixture
def warming(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Iterator[App]:
    app = App(load_settings(_config(tmp_path, database_url, smtp_sink), environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    yield app
    app.close()


def _counts(app: App) -> dict[str, int]:
    with app.store.read() as connection:
        rows = connection.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def _runs(app: App) -> list[tuple[int, str]]:
    with app.store.read() as connection:
        return [
            (int(i), str(s))
            for i, s in connection.execute(select(digest_runs.c.id, digest_runs.c.status))
        ]


def test_day_one_sends_200_oldest_subscribers_and_the_next_day_300_more_each_once(
    warming: App, smtp_sink: SmtpSink
) -> None:
    oldest_first = _subscribe(warming, PEOPLE)

    first = warming.send_digests(now=NOW)
    assert (first.sent, first.failed) == (200, 0)
    assert set(smtp_sink.per_recipient()) == set(oldest_first[:200])
    assert _counts(warming) == {"sent": 200, "pending": 320}  # neither failed nor skipped
    assert first.warmup == WarmupState("localhost", 1, 200, 200, 320)
    [(run_id, status)] = _runs(warming)
    assert status == "sending"

    second = warming.send_digests(now=NOW + DAY)
    assert second.resumed and second.run_id == run_id
    assert (second.sent, second.failed) == (300, 0)
    received = smtp_sink.per_recipient()
    assert set(received) == set(oldest_first[:500])
    assert set(received.values()) == {1}  # nobody twice
    assert second.warmup == WarmupState("localhost", 2, 300, 300, 20)
    # yesterday's pending rows were sent, not made again: still one row per subscriber
    assert _runs(warming) == [(run_id, "sending")]
    assert _counts(warming) == {"sent": 500, "pending": 20}

    third = warming.send_digests(now=NOW + 2 * DAY)
    assert third.sent == 20
    assert third.warmup == WarmupState("localhost", 3, 450, 20, 0)
    assert smtp_sink.per_recipient() == dict.fromkeys(oldest_first, 1)
    assert _runs(warming) == [(run_id, "done")]
    ids = [m.message["Message-ID"] for m in smtp_sink.messages]
    assert len(ids) == len(set(ids)) == PEOPLE


def test_a_second_send_on_the_same_day_sends_nothing_more(
    warming: App, smtp_sink: SmtpSink
) -> None:
    _subscribe(warming, 260)
    shown: list[tuple[int, int]] = []
    assert warming.send_digests(now=NOW, progress=lambda *p: shown.append(p)).sent == 200
    assert shown[0] == (0, 200) and shown[-1] == (200, 200)  # the bar ends at today's share
    again = warming.send_digests(now=NOW + timedelta(hours=6))  # still day 1 in Shanghai
    assert again.sent == 0
    assert again.warmup == WarmupState("localhost", 1, 200, 200, 60)
    assert len(smtp_sink.messages) == 200


def test_a_row_let_go_yesterday_and_never_sent_counts_against_the_day_it_goes(
    warming: App, smtp_sink: SmtpSink
) -> None:
    """An interrupted send leaves rows let go but pending: the next day sends them once,
    within that day's allowance, still oldest subscription first."""
    oldest_first = _subscribe(warming, 600)
    assert warming.send_digests(now=NOW).sent == 200
    with warming.store.begin() as connection:  # what a send killed after letting go leaves
        stranded = connection.execute(
            update(deliveries)
            .where(
                deliveries.c.subscriber_id.in_(
                    select(subscribers.c.id).where(subscribers.c.email.in_(oldest_first[-10:]))
                )
            )
            .values(warmup_day="2026-11-20")
            .returning(deliveries.c.id)
        ).all()
    assert len(stranded) == 10
    second = warming.send_digests(now=NOW + DAY)
    # the stranded rows are the newest subscriptions: they wait their turn, not sent
    # on top of the day's 300
    assert second.sent == 300
    assert second.warmup == WarmupState("localhost", 2, 300, 300, 100)
    assert set(smtp_sink.per_recipient()) == set(oldest_first[:500])
    third = warming.send_digests(now=NOW + 2 * DAY)
    assert third.sent == 100
    assert third.warmup == WarmupState("localhost", 3, 450, 100, 0)
    assert smtp_sink.per_recipient() == dict.fromkeys(oldest_first, 1)


def test_send_and_status_show_the_warm_up_line(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    config = _config(tmp_path, sqlite_url, smtp_sink)
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    _subscribe(app, 230)
    app.close()
    runner = CliRunner()
    sent = runner.invoke(cli, ["--config", str(config), "send", "--now", NOW.isoformat()])
    assert sent.exit_code == 0, sent.output
    assert "warm-up day 1: 200 of 200 sent, 30 waiting" in sent.output

    app = App(load_settings(config, environ={}))
    try:
        shown = app.status(now=NOW)["warmup"]
    finally:
        app.close()
    assert shown == {
        "domain": "localhost",
        "day": 1,
        "allowance": 200,
        "sent": 200,
        "waiting": 30,
        "over": False,
        "summary": "warm-up day 1: 200 of 200 sent, 30 waiting",
    }
    # `status` counts the machine's today; nothing has been sent on it yet
    today = datetime.now(UTC).astimezone(app.settings.zone).date()
    day = day_number(date(2026, 11, 20), today)
    expected = WarmupState("localhost", day, allowance(day, WarmupSettings()), 0, 30)
    status = runner.invoke(cli, ["--config", str(config), "status"])
    assert status.exit_code == 0, status.output
    assert f"warm-up: {expected.line()} (localhost)" in status.output
    as_json = runner.invoke(cli, ["--config", str(config), "status", "--json"])
    assert json.loads(as_json.stdout)["warmup"] == expected.as_dict()


def test_warm_up_is_off_without_the_section_or_with_enabled_false(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    off = "\n[warmup]\nenabled = false\nstart = 10\n"
    app = App(load_settings(_config(tmp_path, sqlite_url, smtp_sink, off), environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        _subscribe(app, 40)
        report = app.send_digests(now=NOW)
        assert report.sent == 40 and report.warmup is None
        assert app.status(now=NOW)["warmup"] is None
    finally:
        app.close()
    assert not load_settings(
        send_config(tmp_path, sqlite_url, smtp_sink), environ={}
    ).warmup.enabled


def test_allowance_grows_then_is_capped_for_a_day_then_warm_up_ends() -> None:
    settings = WarmupSettings(start=200, growth=1.5, until=1000)
    assert [allowance(n, settings) for n in range(1, 7)] == [200, 300, 450, 675, 1000, None]
    assert allowance(1, WarmupSettings(start=5, growth=1.0, until=10)) == 5
    assert allowance(10_000, WarmupSettings(start=5, growth=1.0, until=10)) == 5


def test_a_schema_15_database_that_sent_before_keeps_its_days(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    """An install that sent three days ago, upgraded and warm-up turned on: day 4, not 1."""
    plain = App(load_settings(send_config(tmp_path, sqlite_url, smtp_sink), environ={}))
    plain.ingest([SEEDS], now=lambda: INGESTED - 3 * DAY)
    _subscribe(plain, 5)
    assert plain.send_digests(now=NOW - 3 * DAY).sent == 5
    with plain.store.begin() as connection:  # the database the previous release made
        connection.execute(update(deliveries).values(finished_at=NOW - 3 * DAY))
        connection.execute(text("DROP INDEX ix_deliveries_warmup_day"))
        connection.execute(text("ALTER TABLE deliveries DROP COLUMN warmup_day"))
        connection.execute(text("DROP TABLE warmup_days"))
        connection.execute(text("UPDATE schema_version SET version = 15"))
    plain.close()

    small = "\n[warmup]\nstart = 10\ngrowth = 2\nuntil = 1000\n"
    upgraded = App(load_settings(_config(tmp_path, sqlite_url, smtp_sink, small), environ={}))
    try:
        assert len(upgraded.articles()) == 5  # opening the store upgrades it
        columns = {c["name"] for c in inspect(upgraded.store.engine).get_columns("deliveries")}
        assert "warmup_day" in columns
        with upgraded.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert max(versions) == SCHEMA_VERSION
        _subscribe(upgraded, 100, first=5)
        report = upgraded.send_digests(now=NOW)
        assert report.sent == 80  # day 4: 10 * 2 ** 3
        assert report.warmup == WarmupState("localhost", 4, 80, 80, 20)
        assert set(smtp_sink.per_recipient().values()) == {1}
    finally:
        upgraded.close()


# -- PostgreSQL: several senders share one day's allowance ------------------------------


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    yield from _fresh_postgres_database(postgres_admin_url)


def test_concurrent_senders_never_let_more_go_than_the_day_allows(
    tmp_path: Path, pg_url: str, smtp_sink: SmtpSink
) -> None:
    """Eight threads, each letting rows go in its own transaction, as workers do."""
    config = _config(tmp_path, pg_url, smtp_sink, workers="deliver_locally = false")
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    _subscribe(app, 400)
    report = app.send_digests(now=NOW)  # fan-out only
    assert report.fanned_out == 400
    [(run_id, _)] = _runs(app)
    gate = WarmupGate(app.settings)
    taken: list[list[int]] = []
    start = threading.Barrier(8)

    def sender(name: str) -> None:
        start.wait()
        mine: list[int] = []
        while True:

            def admit(connection: Any) -> list[int]:
                limit = gate.day_limit(connection, NOW)
                assert limit is not None
                page = gate.admit(connection, run_id, limit, 7, worker=name, lease_seconds=60)
                return [d.id for d, _ in page]

            got = in_ledger_transaction(app.store, admit)
            if not got:
                break
            mine += got
        taken.append(mine)

    threads = [threading.Thread(target=sender, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [key for mine in taken for key in mine]
    assert len(every) == len(set(every)) == 200
    assert sum(1 for mine in taken if mine) > 1
    with app.store.read() as connection:
        assert connection.execute(select(warmup_days.c.admitted)).scalars().all() == [200]
    app.close()


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return found


def test_two_workers_together_send_the_days_allowance_and_no_more(
    tmp_path: Path, pg_url: str, smtp_sink: SmtpSink
) -> None:
    workers = "lease_seconds = 30\nclaim_batch = 10\npoll_seconds = 0.2\ndeliver_locally = false"
    config = _config(tmp_path, pg_url, smtp_sink, workers=workers)
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    oldest_first = _subscribe(app, 300)
    store = Store(pg_url)
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    processes = []
    for log in logs:
        with log.open("wb") as output:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "publisher", "--config", str(config), "worker"],
                    cwd=ROOT,
                    env={**os.environ, "PUBLISHER_CONFIG": ""},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        # the workers count the machine's today: day 1 of the domain
        assert app.send_digests(now=NOW).fanned_out == 300
        smtp_sink.wait_for(200, timeout=90)

        def settled() -> bool:
            counts = _counts(app)
            return counts.get("sent") == 200 and counts.get("sending", 0) == 0

        _wait(settled, 60, "the day's 200 to be recorded sent")
        with store.read() as connection:
            # the day's count is used up: no row can be let go until tomorrow
            assert connection.execute(select(warmup_days.c.admitted)).scalars().all() == [200]
            let_go = connection.execute(
                select(func.count()).where(deliveries.c.warmup_day.is_not(None))
            ).scalar_one()
        assert let_go == 200
        received = smtp_sink.per_recipient()
        assert set(received) == set(oldest_first[:200]) and set(received.values()) == {1}
        assert _counts(app) == {"sent": 200, "pending": 100}
        state = app.status()["warmup"]
        assert (state["day"], state["sent"], state["waiting"]) == (1, 200, 100)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        store.close()
        app.close()


def _table_sizes(app: App) -> dict[str, int]:
    with app.store.read() as connection:
        return {
            table.name: int(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
            )
            for table in (deliveries, digest_runs, warmup_days)
        }


def test_a_dry_run_under_warm_up_shows_todays_share_and_writes_nothing(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    """Day 3 of warm-up (450 allowed): the dry run previews the 450 oldest subscriptions a
    real send would let go today and says how many would wait, recording nothing."""
    config = _config(tmp_path, sqlite_url, smtp_sink)
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    oldest_first = _subscribe(app, 2000)
    with app.store.begin() as connection:  # the domain first sent two days ago
        connection.execute(
            insert(warmup_days), [{"domain": "localhost", "day": "2026-11-18", "admitted": 0}]
        )
    before = _table_sizes(app)
    app.close()
    out = tmp_path / "preview"
    shown = CliRunner().invoke(
        cli,
        ["--config", str(config), "send", "--dry-run", "--out", str(out), "--now", NOW.isoformat()],
    )
    assert shown.exit_code == 0, shown.output
    assert "warm-up day 3: 450 would be sent today, 1,550 would wait" in shown.output
    assert "Dry run: 450 messages" in shown.output
    files = {p.stem for p in out.glob("*.eml")}
    assert files == set(oldest_first[:450])
    assert smtp_sink.messages == []
    app = App(load_settings(config, environ={}))
    try:
        assert _table_sizes(app) == before == {"deliveries": 0, "digest_runs": 0, "warmup_days": 1}
    finally:
        app.close()


def test_the_worker_summary_ends_with_the_warm_up_line(
    tmp_path: Path, pg_url: str, smtp_sink: SmtpSink
) -> None:
    workers = "claim_batch = 50\npoll_seconds = 0.2\ndeliver_locally = false"
    config = _config(tmp_path, pg_url, smtp_sink, workers=workers)
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        _subscribe(app, 230)
        assert app.send_digests(now=NOW).fanned_out == 230
    finally:
        app.close()
    # the worker counts the machine's today: day 1 of the domain, 200 of the 230 go
    result = CliRunner(env={"PUBLISHER_CONFIG": ""}).invoke(
        cli, ["--config", str(config), "worker", "--exit-when-idle"]
    )
    assert result.exit_code == 0, result.output
    assert len(smtp_sink.messages) == 200
    assert "sent 200, failed 0" in result.output
    assert "warm-up day 1: 200 of 200 sent, 30 waiting" in result.output


def test_a_dry_run_counts_only_what_is_left_of_todays_allowance(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    config = _config(tmp_path, sqlite_url, smtp_sink)
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        oldest_first = _subscribe(app, 260)
        with app.store.begin() as connection:  # day 1, 150 of its 200 let go already
            connection.execute(
                insert(warmup_days), [{"domain": "localhost", "day": "2026-11-20", "admitted": 150}]
            )
        out = tmp_path / "preview"
        report = app.send_digests(now=NOW, dry_run=True, out_dir=out)
        assert report.forecast is not None
        assert report.forecast.line() == "warm-up day 1: 50 would be sent today, 210 would wait"
        assert {p.recipient for p in report.previews} == set(oldest_first[:50])
        with app.store.read() as connection:
            assert connection.execute(select(warmup_days.c.admitted)).scalars().all() == [150]
    finally:
        app.close()
