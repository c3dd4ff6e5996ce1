"""`publisher worker` processes sharing one digest run on a real PostgreSQL, one real sink.

Three workers, 2,000 subscribers: everyone gets exactly one message and every worker
sends some. One worker SIGKILLed mid-run: the others take over its rows once its lease
runs out; the only repeats are rows it had in flight ('sending'), with the same
Message-ID. Plus the claim queries themselves, and the SQLite refusal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import make_url

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import RunStatus
from publisher.store import Store
from publisher.store.claims import Claims
from publisher.store.ledger import LedgerRows, ledger_transaction
from publisher.store.runs import DigestRuns, PlannedDelivery
from publisher.store.schema import deliveries, digest_runs, subscribers, workers
from tests.conftest import ROOT, SEEDS, _fresh_postgres_database
from tests.smtp_sink import Received, SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
PEOPLE = 2000
CONCURRENCY = 4


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database (workers exist only there); skipped when it is down."""
    yield from _fresh_postgres_database(postgres_admin_url)


def _prepare(tmp_path: Path, url: str, sink: SmtpSink, *, lease: float, batch: int) -> Path:
    """Seeds ingested, PEOPLE confirmed subscribers; `send` only fans out (workers send)."""
    config = send_config(tmp_path, url, sink, pool_size=CONCURRENCY)
    with config.open("a", encoding="utf-8") as out:
        out.write(
            f"\n[workers]\nlease_seconds = {lease}\nclaim_batch = {batch}\n"
            "poll_seconds = 0.2\ndeliver_locally = false\n"
        )
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    with app.store.begin() as connection:
        connection.execute(
            insert(subscribers),
            [
                {
                    "email": f"reader{n:04}@example.com",
                    "name": f"Reader {n}",
                    "status": "confirmed",
                    "categories": "[]",
                    "frequency": "weekly" if n % 3 else "daily",
                    "timezone": "UTC",
                    "created": INGESTED,
                    "hard_failures": 0,
                }
                for n in range(PEOPLE)
            ],
        )
    app.close()
    return config


def _start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "publisher",
                "--config",
                str(config),
                "worker",
                "--concurrency",
                str(CONCURRENCY),
            ],
            cwd=ROOT,
            env={**os.environ, "PUBLISHER_CONFIG": ""},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _registered(store: Store, pids: set[int]) -> dict[int, str] | None:
    """pid -> worker name once every worker process has registered."""
    with store.read() as connection:
        rows = connection.execute(select(workers.c.pid, workers.c.name)).all()
    found = {int(pid): str(name) for pid, name in rows if int(pid) in pids}
    return found if set(found) == pids else None


def _database_ports(pid: int, server_port: int) -> list[int]:
    """The local ports of process `pid`'s TCP connections to `server_port` (Linux /proc)."""
    sockets = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            sockets.add(target.removeprefix("socket:[").removesuffix("]"))
    ports = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text(encoding="ascii").splitlines()[1:]:
            local, remote, inode = (line.split()[i] for i in (1, 2, 9))
            if inode in sockets and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.append(int(local.rsplit(":", 1)[1], 16))
    return ports


def _sessions_open(store: Store, client_ports: list[int]) -> bool:
    """Whether PostgreSQL still has a backend for a connection from one of these ports."""
    with store.read() as connection:
        found = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(:ports)"),
            {"ports": client_ports},
        ).scalar_one()
    return bool(found)


def _run_done(store: Store) -> bool:
    with store.read() as connection:
        statuses = connection.execute(select(digest_runs.c.status)).scalars().all()
    return bool(statuses) and all(s == "done" for s in statuses)


def _stop(processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, log in zip(processes, logs, strict=True):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            raise AssertionError(f"worker did not stop on SIGTERM:\n{log.read_text()}") from None


def _by_recipient(sink: SmtpSink) -> dict[str, list[Received]]:
    found: dict[str, list[Received]] = defaultdict(list)
    for received in list(sink.messages):
        found[received.rcpt_tos[0]].append(received)
    return found


def test_three_workers_share_one_run_everyone_gets_exactly_one_message(
    tmp_path: Path, pg_url: str, smtp_sink: SmtpSink
) -> None:
    config = _prepare(tmp_path, pg_url, smtp_sink, lease=30, batch=50)
    store = Store(pg_url)
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    processes = [_start_worker(config, log) for log in logs]
    try:
        names = _wait(lambda: _registered(store, {p.pid for p in processes}), 30, "three workers")
        shown = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
        assert shown.exit_code == 0, shown.output
        assert sorted(w["name"] for w in json.loads(shown.stdout)["workers"]) == sorted(
            names.values()
        )
        # the scheduler's part: create the run and its rows; the workers send them
        app = App(load_settings(config, environ={}))
        report = app.send_digests(now=NOW)
        app.close()
        # fanned_out counts rows still open when fan-out ended: the running workers may
        # already have sent the first batches by then
        assert report.sent == 0 and 0 < report.fanned_out <= PEOPLE
        _wait(lambda: _run_done(store), 90, "the run to finish")
    finally:
        _stop(processes, logs)
    for process, log in zip(processes, logs, strict=True):
        assert process.returncode == 0, log.read_text()
        assert "sent " in log.read_text()

    received = _by_recipient(smtp_sink)
    assert set(received) == {f"reader{n:04}@example.com" for n in range(PEOPLE)}
    assert [r for r, copies in received.items() if len(copies) != 1] == []
    with store.read() as connection:
        rows = connection.execute(select(deliveries.c.status, deliveries.c.claimed_by)).all()
    assert {status for status, _ in rows} == {"sent"}
    sent_by = {name: sum(1 for _, who in rows if who == name) for name in names.values()}
    assert all(n > 0 for n in sent_by.values()), sent_by
    assert sum(sent_by.values()) == PEOPLE
    store.close()


def test_a_killed_workers_rows_are_reclaimed_after_its_lease(
    tmp_path: Path, pg_url: str, smtp_sink: SmtpSink
) -> None:
    lease = 6.0  # the victim's rows are read within it after the kill, on a loaded machine too
    config = _prepare(tmp_path, pg_url, smtp_sink, lease=lease, batch=50)
    store = Store(pg_url)
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    processes = [_start_worker(config, log) for log in logs]
    victim = processes[0]
    killed = threading.Event()
    at_kill: dict[str, Any] = {}

    def kill(_received: Received) -> None:
        # inside DATA of some message: the victim has transactions in flight right now
        if not killed.is_set() and len(smtp_sink.messages) >= 500:
            at_kill["sessions"] = _database_ports(victim.pid, make_url(pg_url).port or 5432)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            at_kill["time"] = time.monotonic()
            killed.set()

    try:
        names = _wait(lambda: _registered(store, {p.pid for p in processes}), 30, "three workers")
        smtp_sink.on_data = kill
        app = App(load_settings(config, environ={}))
        app.send_digests(now=NOW)
        app.close()
        assert killed.wait(60), "the sink never reached 500 messages"
        smtp_sink.on_data = None
        # a group commit the victim sent just before it died still commits on the server
        # (its backend notices the closed socket only when it replies, then ends); its rows
        # are the victim's until its lease runs out: read them once its sessions are gone
        assert at_kill["sessions"], "the victim had no connection to the database"
        _wait(
            lambda: not _sessions_open(store, at_kill["sessions"]),
            30,
            "the killed worker's database sessions to end",
        )
        with store.read() as connection:  # the victim's rows, before its lease runs out
            held = connection.execute(
                select(deliveries.c.id, deliveries.c.status, subscribers.c.email)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(
                    deliveries.c.claimed_by == names[victim.pid],
                    deliveries.c.status.in_(("pending", "sending")),
                )
            ).all()
        _wait(lambda: _run_done(store), 90, "the run to finish")
        finished = time.monotonic()
    finally:
        _stop(processes[1:], logs[1:])
    for process, log in zip(processes[1:], logs[1:], strict=True):
        assert process.returncode == 0, log.read_text()
    assert victim.returncode == -signal.SIGKILL

    in_flight = {email for _, status, email in held if status == "sending"}
    assert held and len(in_flight) <= CONCURRENCY, held
    assert len(held) > len(in_flight), "the victim held no pending rows to reclaim"
    assert finished - at_kill["time"] >= lease * 0.5  # its rows waited for the lease

    received = _by_recipient(smtp_sink)
    assert set(received) == {f"reader{n:04}@example.com" for n in range(PEOPLE)}
    repeated = {r: copies for r, copies in received.items() if len(copies) > 1}
    assert set(repeated) <= in_flight, (sorted(repeated), sorted(in_flight))
    for recipient, copies in repeated.items():
        assert len(copies) == 2, recipient
        assert len({c.message["Message-ID"] for c in copies}) == 1, recipient

    held_ids = [row.id for row in held]
    with store.read() as connection:
        rows = connection.execute(
            select(deliveries.c.status, deliveries.c.claimed_by).where(
                deliveries.c.id.in_(held_ids)
            )
        ).all()
    assert {status for status, _ in rows} == {"sent"}
    survivors = {names[p.pid] for p in processes[1:]}
    assert {who for _, who in rows} <= survivors  # finished by the others
    store.close()


# -- the claim queries ---------------------------------------------------------------


def _ledger_with_rows(url: str, count: int) -> tuple[Store, int]:
    store = Store(url)
    with store.begin() as connection:
        connection.execute(
            insert(subscribers),
            [
                {
                    "email": f"r{n}@example.com",
                    "status": "confirmed",
                    "categories": "[]",
                    "frequency": "weekly",
                    "timezone": "UTC",
                    "created": INGESTED,
                    "hard_failures": 0,
                }
                for n in range(count)
            ],
        )
        ids = connection.execute(select(subscribers.c.id).order_by(subscribers.c.id)).scalars()
        ledger = DigestRuns(connection)
        run = ledger.create_run("weekly", NOW, NOW)
        planned = [PlannedDelivery(int(i), f"<{i}@test>", ("a",)) for i in ids]
        ledger.fan_out(run.id, planned, 0, 0, NOW)
        ledger.set_run_status(run.id, RunStatus.SENDING, NOW)
    return store, run.id


def test_claims_are_disjoint_renewed_released_and_reclaimed_after_the_lease(
    pg_url: str,
) -> None:
    store, run_id = _ledger_with_rows(pg_url, 10)
    with ledger_transaction(store) as connection:
        first = Claims(connection).claim(run_id, "a", 4, 60)
    with ledger_transaction(store) as connection:
        second = Claims(connection).claim(run_id, "b", 100, 60)
    mine = {d.id for d, _ in first}
    theirs = {d.id for d, _ in second}
    assert len(mine) == 4 and len(theirs) == 6 and not mine & theirs
    assert all(d.subscriber_id == s.id for d, s in first + second)  # joined to its own
    assert [d.id for d, _ in first] == sorted(mine) < sorted(theirs)  # oldest rows first
    with ledger_transaction(store) as connection:
        assert Claims(connection).claim(run_id, "c", 100, 60) == []  # all held
        # 'sending' only for rows the worker still holds
        ledger = LedgerRows(connection)
        assert ledger.mark_sending(sorted(theirs), NOW, worker="a", lease_seconds=60) == set()
        assert ledger.mark_sending(sorted(mine), NOW, worker="a", lease_seconds=60) == mine
    # a's lease runs out (the worker died): its 'sending' rows go to the next claimer
    with ledger_transaction(store) as connection:
        connection.execute(
            update(deliveries)
            .where(deliveries.c.claimed_by == "a")
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        taken = {d.id for d, _ in Claims(connection).claim(run_id, "c", 100, 60)}
    assert taken == mine
    with ledger_transaction(store) as connection:
        claims = Claims(connection)
        assert claims.renew([run_id], "b", 60) == 6
        assert claims.release([run_id], "b") == 6  # pending rows back at once
        first_of_theirs = min(theirs)
        later = claims.claim(run_id, "d", 100, 60, after=first_of_theirs)
        assert {d.id for d, _ in later} == theirs - {first_of_theirs}
        assert [d.id for d, _ in claims.claim(run_id, "d", 100, 60)] == [first_of_theirs]
        assert claims.run_state(run_id, "d") == ("sending", 4)  # c's rows are still open
        assert not claims.finish_if_complete(run_id, NOW)
        LedgerRows(connection).mark_sent([(key, 1) for key in sorted(mine)[:3]], NOW, NOW)
        progress = claims.progress(DigestRuns(connection).run(run_id))
    assert progress.counts == {"sent": 3, "sending": 1, "pending": 6}
    assert progress.sent_by == {"c": 3}
    assert progress.claimed == 7  # c's row in flight, d's six
    store.close()


def test_worker_refuses_sqlite_with_one_line_and_exit_2(config_file: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config_file), "worker"])
    assert result.exit_code == 2
    assert "needs PostgreSQL" in result.output
    assert "Traceback" not in result.output
