"""The consent API the inbound and webhook paths call: suppress, soft_bounced, history.
On SQLite and on PostgreSQL (store_app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.model import ConsentKind, ConsentSource, SubscriberStatus
from publisher.secrecy import address_hash
from publisher.store.schema import SCHEMA_VERSION
from publisher.subscribers import SubscriberAdmin
from tests.conftest import write_config

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admin(store_app: App, clock: Clock) -> SubscriberAdmin:
    return SubscriberAdmin(store_app.settings, store_app.store, clock=clock)


def test_suppress_sets_the_status_records_the_event_and_a_repeat_changes_nothing_else(
    admin: SubscriberAdmin, clock: Clock
) -> None:
    admin.add("Ann@Example.org", name="Ann")
    clock.now = T0 + timedelta(hours=1)
    first = admin.suppress(
        "ann@example.org",
        ConsentKind.UNSUBSCRIBED,
        source=ConsentSource.INBOUND,
        detail="mailto unsubscribe",
    )
    assert first is not None and first.status is SubscriberStatus.UNSUBSCRIBED
    assert first.unsubscribed == T0 + timedelta(hours=1)
    clock.now = T0 + timedelta(hours=2)
    again = admin.suppress(
        "ANN@example.org",
        ConsentKind.UNSUBSCRIBED,
        source=ConsentSource.INBOUND,
        detail="mailto unsubscribe",
    )
    assert again == first  # same status, same unsubscribed time, same everything
    unsubscribes = [
        e for e in admin.history("ann@example.org") if e.kind is ConsentKind.UNSUBSCRIBED
    ]
    assert [(e.at, e.source, e.detail) for e in unsubscribes] == [
        (T0 + timedelta(hours=1), ConsentSource.INBOUND, "mailto unsubscribe"),
        (T0 + timedelta(hours=2), ConsentSource.INBOUND, "mailto unsubscribe"),
    ]


def test_a_complaint_or_hard_bounce_is_never_downgraded_to_an_unsubscribe(
    admin: SubscriberAdmin,
) -> None:
    admin.add("bob@example.org")
    bounced = admin.suppress(
        "bob@example.org", ConsentKind.BOUNCED, source=ConsentSource.WEBHOOK, detail="5.1.1"
    )
    assert bounced is not None and bounced.status is SubscriberStatus.BOUNCED
    still = admin.suppress(
        "bob@example.org", ConsentKind.UNSUBSCRIBED, source=ConsentSource.WEB, detail="link"
    )
    assert still is not None and still.status is SubscriberStatus.BOUNCED
    complained = admin.suppress(
        "bob@example.org", ConsentKind.COMPLAINED, source=ConsentSource.INBOUND, detail="ARF"
    )
    assert complained is not None and complained.status is SubscriberStatus.COMPLAINED
    assert complained.unsubscribed is not None  # a complaint unsubscribes too
    for kind in (ConsentKind.BOUNCED, ConsentKind.UNSUBSCRIBED):
        kept = admin.suppress("bob@example.org", kind, source=ConsentSource.WEBHOOK, detail="x")
        assert kept is not None and kept.status is SubscriberStatus.COMPLAINED
    kinds = [e.kind for e in admin.history("bob@example.org")]
    assert kinds[-5:] == [
        ConsentKind.BOUNCED,
        ConsentKind.UNSUBSCRIBED,
        ConsentKind.COMPLAINED,
        ConsentKind.BOUNCED,
        ConsentKind.UNSUBSCRIBED,
    ]


def test_an_unknown_address_is_not_stored(admin: SubscriberAdmin, store_app: App) -> None:
    for kind in (ConsentKind.UNSUBSCRIBED, ConsentKind.BOUNCED, ConsentKind.COMPLAINED):
        found = admin.suppress(
            "nobody@example.org", kind, source=ConsentSource.INBOUND, detail="dsn"
        )
        assert found is None
    assert (
        admin.soft_bounced("nobody@example.org", source=ConsentSource.INBOUND, detail="4.2.2")
        is None
    )
    assert admin.history("nobody@example.org") == []
    assert store_app.subscribers() == []


def test_soft_bounces_suppress_at_the_limit_within_the_window(
    admin: SubscriberAdmin, clock: Clock
) -> None:
    admin.add("cy@example.org")
    admin.add("di@example.org")
    # cy: three soft bounces a week and more apart never reach the limit (3 in 7 days)
    for day in (0, 8, 16):
        clock.now = T0 + timedelta(days=day)
        found = admin.soft_bounced("cy@example.org", source=ConsentSource.INBOUND, detail="4.2.2")
        assert found is not None and found.status is SubscriberStatus.CONFIRMED
    # di: the third within seven days bounces it
    for day, expected in ((20, "confirmed"), (22, "confirmed"), (26, "bounced")):
        clock.now = T0 + timedelta(days=day)
        found = admin.soft_bounced(
            "di@example.org", source=ConsentSource.WEBHOOK, detail="mailbox full"
        )
        assert found is not None and found.status.value == expected
    events = admin.history("di@example.org")
    assert [e.kind for e in events[-4:]] == [
        ConsentKind.SOFT_BOUNCED,
        ConsentKind.SOFT_BOUNCED,
        ConsentKind.SOFT_BOUNCED,
        ConsentKind.BOUNCED,
    ]
    assert events[-1].detail == "3 soft bounces within 7 days"
    assert events[-1].source is ConsentSource.WEBHOOK


def test_history_is_matched_normalized_and_the_detail_bounded(
    admin: SubscriberAdmin, clock: Clock
) -> None:
    admin.add("Eve@Example.ORG")
    admin.suppress(
        "eve@example.org",
        ConsentKind.COMPLAINED,
        source=ConsentSource.WEB,
        detail="x" * 2000,
        client="203.0.113.9",
    )
    events = admin.history("  EVE@example.org ")
    assert events[-1].kind is ConsentKind.COMPLAINED
    assert events[-1].client == "203.0.113.9"
    assert len(events[-1].detail) == 500


def test_inbound_settings_come_from_the_inbound_section(tmp_path: Path, sqlite_url: str) -> None:
    path = write_config(tmp_path, sqlite_url)
    path.write_text(path.read_text() + "[inbound]\nsoft_bounce_limit = 5\nsoft_bounce_days = 2.5\n")
    settings = load_settings(path, environ={})
    assert (settings.inbound.soft_bounce_limit, settings.inbound.soft_bounce_days) == (5, 2.5)
    assert (
        load_settings(write_config(tmp_path, sqlite_url), environ={}).inbound.soft_bounce_limit == 3
    )


def test_the_address_hash_is_keyed() -> None:
    one = address_hash("ann@example.org", "k" * 40)
    assert one == address_hash("ann@example.org", "k" * 40)
    assert one != address_hash("ann@example.org", "j" * 40)
    assert "ann" not in one and len(one) == 64
    assert SCHEMA_VERSION >= 11  # the keyed hash column came with schema 11
