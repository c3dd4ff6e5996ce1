"""What one huge article may cost: the signer's memory, a feed entry's size."""

from __future__ import annotations

import html
import tracemalloc

from publisher.dedup.minhash import MAX_ROW_CELLS, Signer
from publisher.feeds import ENTRY_TEXT_LIMIT, content_html
from publisher.model import Block


def test_signing_a_huge_article_holds_a_bounded_matrix() -> None:
    signer = Signer(128, 3)
    text = " ".join(f"w{n}" for n in range(400_000))  # uncapped: 128 x 400,000 x 4 = 205 MB
    tracemalloc.start()
    try:
        signer.sign_text("A book", [text])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 120 * 1024**2


def test_words_past_the_cap_do_not_count_and_words_before_it_do() -> None:
    signer = Signer(128, 3)
    cap = MAX_ROW_CELLS // 128
    words = [f"w{n}" for n in range(cap + 50)]
    at_cap = signer.sign_text("", [" ".join(words[:cap])])
    assert signer.sign_text("", [" ".join(words)]) == at_cap
    assert signer.sign_text("", [" ".join(words[: cap // 2])]) != at_cap


def test_a_feed_entry_carries_at_most_the_limit_of_text() -> None:
    huge = Block(text="x" * (3 * ENTRY_TEXT_LIMIT))
    body = content_html([Block(text="Lede."), huge, Block(text="never shown")])
    assert len(body) < ENTRY_TEXT_LIMIT + 100
    assert body.endswith("<p>…</p>") and "never shown" not in body


def test_an_ordinary_body_is_rendered_whole() -> None:
    blocks = [Block(text="First <b>line</b>\nsecond line"), Block(text="Another paragraph.")]
    whole = "".join(
        "<p>" + "<br>".join(html.escape(line, quote=True) for line in block.lines) + "</p>"
        for block in blocks
    )
    assert content_html(blocks) == whole
