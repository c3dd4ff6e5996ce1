"""Digests a subscriber can read, through a real aiosmtpd sink on SQLite and PostgreSQL:
at most `digest.max_items` articles and one link for the rest, an HTML part that Gmail
never clips (its footer holds the unsubscribe link), a subject naming the lead headline,
and the articles corrected since they were sent, listed once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from tests.conftest import SEEDS
from tests.integration.test_config_validation import _setting
from tests.smtp_sink import Received, SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
SITE = "http://127.0.0.1:8080/"
GMAIL_CLIPS_AT = 100_000  # bytes; Gmail clips past ~102 KB
CORRECTED_SEED = "004_a6205c5f8add672a.txt"
CORRECTED_TITLE = "Harbin recognized as international image development city"
WORDS = [
    "river",
    "bridge",
    "council",
    "harvest",
    "winter",
    "festival",
    "school",
    "library",
    "market",
    "railway",
    "museum",
    "hospital",
    "factory",
    "orchestra",
    "theatre",
    "garden",
    "airport",
    "harbour",
    "tramway",
    "stadium",
    "clinic",
    "bakery",
    "archive",
    "observatory",
    "ferry",
    "canal",
    "workshop",
    "pavilion",
    "tower",
    "square",
    "lantern",
]


def _app(tmp_path: Path, database_url: str, sink: SmtpSink, digest: str = "") -> App:
    path = send_config(tmp_path, database_url, sink)
    if digest:
        with path.open("a", encoding="utf-8") as out:
            out.write(f"\n[digest]\n{digest}\n")
    return App(load_settings(path, environ={}))


@pytest.fixture
def reader(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Iterator[App]:
    """One weekly subscriber of every category; nothing ingested yet."""
    app = _app(tmp_path, database_url, smtp_sink)
    app.add_subscriber("reader@example.org", name="Reader")
    yield app
    app.close()


def _write_articles(folder: Path, count: int, rng: random.Random) -> dict[int, str]:
    """`count` unrelated articles of four long paragraphs; article n printed on day n."""
    folder.mkdir(parents=True, exist_ok=True)
    titles: dict[int, str] = {}
    for n in range(count):
        title = f"Story {n}: the {rng.choice(WORDS)} and the {rng.choice(WORDS)} of district {n}"
        paragraphs = [
            " ".join(rng.choice(WORDS) for _ in range(140)).capitalize() + "." for _ in range(4)
        ]
        day = datetime(2026, 1, 1) + timedelta(days=n)
        text = f"Home>Harbin Today\n\n{title}\n\nUpdated : {day:%Y-%m-%d}\n\n" + "\n\n".join(
            paragraphs
        )
        (folder / f"story-{n:03}.txt").write_text(text + "\n", encoding="utf-8")
        titles[n] = title
    return titles


def _parts(message: EmailMessage) -> tuple[str, str, EmailMessage]:
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(page, EmailMessage)
    return text.get_content(), page.get_content(), page


def _unsubscribe_url(message: EmailMessage) -> str:
    return str(message["List-Unsubscribe"]).split(">", 1)[0].lstrip("<")


def _only(sink: SmtpSink, count: int) -> Received:
    assert len(sink.messages) == count
    return sink.messages[-1]


def test_120_new_articles_make_one_digest_gmail_does_not_clip(
    reader: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    titles = _write_articles(tmp_path / "incoming", 120, random.Random(14))
    report = reader.ingest([tmp_path / "incoming"], now=lambda: INGESTED)
    assert report.count("added") == 120
    assert reader.send_digests(now=NOW).sent == 1
    message = _only(smtp_sink, 1).message
    text, html, page = _parts(message)

    encoded = page.get_payload()  # the part as sent, quoted-printable
    assert isinstance(encoded, str)
    assert len(encoded.encode("ascii")) < GMAIL_CLIPS_AT
    assert len(html.encode("utf-8")) < GMAIL_CLIPS_AT
    unsubscribe = _unsubscribe_url(message)
    assert unsubscribe.startswith(SITE + "unsubscribe/")
    assert f"Unsubscribe: {unsubscribe}" in text
    assert f'href="{unsubscribe}"' in html and html.rstrip().endswith("</html>")

    assert text.count("Read: ") == 20  # digest.max_items, the default
    assert f"and 100 more on the site: {SITE}" in text
    assert f'<a href="{SITE}"' in html and "and 100 more on the site</a>" in html
    assert "120 new articles" in text
    # the lead is the newest: the last one printed, all being ingested at once
    assert message["Subject"] == f"Harbin News weekly — {titles[119]} (+119 more)"
    assert text.index(titles[119]) < text.index(titles[118])

    # the 100 not listed were announced too: the next digest does not bring them back
    again = reader.send_digests(now=NOW + timedelta(days=7))
    assert (again.sent, again.skipped_empty) == (0, 1)


def test_twenty_huge_articles_still_fit_with_the_footer_whole(
    reader: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    rng = random.Random(20)
    for n in range(20):
        # under PostgreSQL's btree row limit (2,704 bytes), which the title and the last
        # paragraph are indexed under
        title = f"{n} " + "非常长的标题" * 140
        body = "\n\n".join(
            "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(600)) for _ in range(60)
        )
        (folder / f"huge-{n}.txt").write_text(
            f"Home>Harbin Today\n\n{title}\n\nUpdated : 2026-11-{n + 1:02}\n\n{body}",
            encoding="utf-8",
        )
    assert reader.ingest([folder], now=lambda: INGESTED).count("added") == 20
    assert reader.send_digests(now=NOW).sent == 1
    message = _only(smtp_sink, 1).message
    text, html, page = _parts(message)
    encoded = page.get_payload()
    assert isinstance(encoded, str) and len(encoded.encode("ascii")) < GMAIL_CLIPS_AT
    assert f'href="{_unsubscribe_url(message)}"' in html
    assert "You get this weekly digest" in html
    # twenty such items weigh more than the budget: some wait on the site
    assert "more on the site</a>" in html and 0 < text.count("Read: ") < 20
    assert len(str(message["Subject"])) < 200  # the lead headline, shortened


def _correct_seed(tmp_path: Path, name: str) -> Path:
    source = (SEEDS / CORRECTED_SEED).read_text(encoding="utf-8")
    corrected = tmp_path / name
    corrected.write_text(source.replace("unveiled", "presented"), encoding="utf-8")
    return corrected


def _one_new_article(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / f"new-{n}"
    _write_articles(folder, 1, random.Random(n))
    target = folder / f"fresh-{n}.txt"
    (folder / "story-000.txt").rename(target)
    text = target.read_text(encoding="utf-8").replace("Story 0:", f"Fresh {n}:")
    target.write_text(text, encoding="utf-8")
    return target


def test_a_correction_after_sending_is_listed_once_title_and_link_only(
    reader: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    reader.ingest([SEEDS], now=lambda: INGESTED)
    assert reader.send_digests(now=NOW).sent == 1
    first = _only(smtp_sink, 1).message
    assert CORRECTED_TITLE in _parts(first)[0]
    assert "Updated since your last digest" not in _parts(first)[0]

    later = NOW + timedelta(hours=1)
    corrected = _correct_seed(tmp_path, "004-corrected.txt")
    assert [r.outcome for r in reader.ingest([corrected], now=lambda: later).results] == ["updated"]
    reader.ingest([_one_new_article(tmp_path, 1)], now=lambda: later)
    assert reader.send_digests(now=NOW + timedelta(days=7)).sent == 1
    second = _only(smtp_sink, 2).message
    text, html, _ = _parts(second)
    url = SITE + "articles/"
    assert "1 new article since" in text  # the correction is not a new item
    assert second["Subject"].startswith("Harbin News weekly — Fresh 1:")
    assert "(+" not in second["Subject"]
    assert text.count("Read: ") == 1
    section = text.split("Updated since your last digest:", 1)[1].split("\n--", 1)[0]
    assert section.strip().splitlines()[0] == f"- {CORRECTED_TITLE}"
    [link] = [line.strip() for line in section.splitlines() if line.strip().startswith(url)]
    assert text.count(CORRECTED_TITLE) == 1
    assert "presented" not in text and "presented" not in html  # title + link only
    assert "Updated since your last digest" in html
    assert html.count(CORRECTED_TITLE) == 1 and f'href="{link}"' in html

    reader.ingest([_one_new_article(tmp_path, 2)], now=lambda: later + timedelta(days=7))
    assert reader.send_digests(now=NOW + timedelta(days=14)).sent == 1
    third = _only(smtp_sink, 3).message
    assert "Fresh 2:" in _parts(third)[0]
    for part in _parts(third)[:2]:
        assert "Updated since your last digest" not in part and CORRECTED_TITLE not in part


def test_a_correction_is_listed_only_to_those_who_were_sent_the_article(
    reader: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    reader.ingest([SEEDS], now=lambda: INGESTED)
    assert reader.send_digests(now=NOW).sent == 1
    # corrected before this subscriber was ever sent anything, and so never sent to them
    reader.add_subscriber("late@example.org")
    later = NOW + timedelta(hours=1)
    reader.ingest([_correct_seed(tmp_path, "004-corrected.txt")], now=lambda: later)
    reader.ingest([_one_new_article(tmp_path, 1)], now=lambda: later)
    assert reader.send_digests(now=NOW + timedelta(days=7)).sent == 2
    [late] = smtp_sink.to("late@example.org")
    [_, again] = smtp_sink.to("reader@example.org")
    assert "Updated since your last digest" in _parts(again.message)[0]
    late_text = _parts(late.message)[0]
    assert "Fresh 1:" in late_text and "Updated since your last digest" not in late_text


def test_an_article_printed_with_a_later_date_is_not_taken_for_a_correction(
    reader: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    folder = tmp_path / "embargo"
    _write_articles(folder, 1, random.Random(7))
    story = folder / "story-000.txt"
    story.write_text(
        story.read_text(encoding="utf-8").replace("Updated : 2026-01-01", "Updated : 2026-11-23"),
        encoding="utf-8",
    )
    # printed for a day after it is sent and before the next digest: its `updated`, which
    # starts as the printed date, moves past the first digest with no correction at all
    reader.ingest([folder], now=lambda: INGESTED)
    assert reader.send_digests(now=NOW).sent == 1
    reader.ingest([_one_new_article(tmp_path, 1)], now=lambda: NOW + timedelta(hours=1))
    assert reader.send_digests(now=NOW + timedelta(days=7)).sent == 1
    text = _parts(_only(smtp_sink, 2).message)[0]
    assert "Fresh 1:" in text and "Updated since your last digest" not in text


def test_include_corrections_false_leaves_the_section_out(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    app = _app(tmp_path, database_url, smtp_sink, "include_corrections = false")
    try:
        app.add_subscriber("reader@example.org")
        app.ingest([SEEDS], now=lambda: INGESTED)
        assert app.send_digests(now=NOW).sent == 1
        later = NOW + timedelta(hours=1)
        app.ingest([_correct_seed(tmp_path, "004-corrected.txt")], now=lambda: later)
        app.ingest([_one_new_article(tmp_path, 1)], now=lambda: later)
        assert app.send_digests(now=NOW + timedelta(days=7)).sent == 1
        text, html, _ = _parts(_only(smtp_sink, 2).message)
        assert "Fresh 1:" in text
        assert "Updated since" not in text and "Updated since" not in html
        assert CORRECTED_TITLE not in text and CORRECTED_TITLE not in html
    finally:
        app.close()


def test_the_dry_run_shows_the_same_limits_and_corrections(
    reader: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    reader.ingest([SEEDS], now=lambda: INGESTED)
    assert reader.send_digests(now=NOW).sent == 1
    later = NOW + timedelta(hours=1)
    reader.ingest([_correct_seed(tmp_path, "004-corrected.txt")], now=lambda: later)
    _write_articles(tmp_path / "incoming", 3, random.Random(3))
    reader.ingest([tmp_path / "incoming"], now=lambda: later)
    config = reader.settings.config_file
    out = tmp_path / "preview"
    with config.open("a", encoding="utf-8") as extra:
        extra.write("\n[digest]\nmax_items = 2\n")
    when = (NOW + timedelta(days=7)).isoformat()
    result = CliRunner().invoke(
        cli, ["--config", str(config), "send", "--dry-run", "--out", str(out), "--now", when]
    )
    assert result.exit_code == 0, result.output
    message = message_from_bytes(
        (out / "reader@example.org.eml").read_bytes(), policy=policy.default
    )
    assert isinstance(message, EmailMessage)
    text = _parts(message)[0]
    assert text.count("Read: ") == 2 and f"and 1 more on the site: {SITE}" in text
    assert f"- {CORRECTED_TITLE}" in text
    assert message["Subject"].endswith("(+2 more)")


@pytest.mark.parametrize(
    ("setting", "accepted"),
    [
        ('subject = "{lead}{more} — {site}, {count} on {date} ({frequency})"', True),
        ('subject = "{headline}"', False),
        ("max_items = 0", False),
        ("max_items = 5", True),
        ('include_corrections = "maybe"', False),
    ],
)
def test_digest_settings_are_checked(tmp_path: Path, setting: str, accepted: bool) -> None:
    name, value = setting.split(" = ", 1)
    config = _setting(**{f"digest__{name}": value})(tmp_path)
    (tmp_path / "inbox").mkdir()
    result = CliRunner().invoke(cli, ["--config", str(config), "articles", "list"])
    if accepted:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and f"digest.{name}" in line
