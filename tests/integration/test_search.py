"""Search in a real browser: a real build with Pagefind's binary, the site served on
loopback, Debian chromium typing into the search box."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.search import SEGMENTS_MAX, SearchIndex
from tests.conftest import SEEDS, write_config
from tests.integration.test_browser import browser  # noqa: F401 (a fixture)
from tests.integration.test_mail_accessibility import AXE, _violations
from tests.integration.test_web import run_server

RESULT = "form.search .search-results a.search-result"
NOTE = "form.search .search-results .search-note"


def article_text(title: str, word: str, day: int) -> str:
    """An article file as the inbox takes it, with `word` in its body."""
    return (
        "Home>Science\n\n"
        f"{title}\n\n"
        f"Updated : 2024-03-{day:02d}\n\n"
        "By ( example.org )\n\n"
        f"Researchers described the {word} effect in a long paper this week.\n\n"
        "The findings were published on Monday and discussed at length by the team.\n"
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[App, str]]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    (tmp_path / "inbox" / "zz_quokka.txt").write_text(
        article_text("Quokka smiles studied", "quokkasmile", 1), encoding="utf-8"
    )
    app = App(load_settings(config, environ={}))
    app.ingest()
    try:
        for base, _ in run_server(app):
            yield app, base
    finally:
        app.close()


def _page(launched: object, url: str, *, bypass_csp: bool = False) -> object:
    context = launched.new_context(bypass_csp=bypass_csp)  # type: ignore[attr-defined]
    # loopback only: anything else the page asks for is refused
    context.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(url) else route.abort(),
    )
    return context.new_page()


def _search(page: object, url: str, term: str) -> None:
    page.goto(url, timeout=15_000)  # type: ignore[attr-defined]
    box = page.get_by_label("Search articles")  # type: ignore[attr-defined]
    box.click()
    box.press_sequentially(term)


def _manifest(app: App) -> dict[str, object]:
    loaded = json.loads((app.settings.output_dir / "search" / "index.json").read_bytes())
    assert isinstance(loaded, dict)
    return loaded


def test_a_distinctive_word_finds_its_article_first(
    browser: object,  # noqa: F811
    site: tuple[App, str],
) -> None:
    _, url = site
    page = _page(browser, url)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]
    _search(page, url, "quokkasmile")
    first = page.locator(RESULT).first  # type: ignore[attr-defined]
    first.wait_for(timeout=15_000)
    assert first.inner_text() == "Quokka smiles studied"
    assert first.get_attribute("href") == "/articles/2024-03-01-quokka-smiles-studied.html"
    # a word of a seed article finds that one first too
    box = page.get_by_label("Search articles")  # type: ignore[attr-defined]
    box.fill("Heilongjiang")
    page.wait_for_function(  # type: ignore[attr-defined]
        "sel => [...document.querySelectorAll(sel)].some(a => a.textContent.includes('Harbin'))",
        arg=RESULT,
        timeout=15_000,
    )
    first.click()
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert "/articles/" in page.url  # type: ignore[attr-defined]
    assert not errors, errors


def test_the_search_box_works_from_an_article_page_with_the_keyboard(
    browser: object,  # noqa: F811
    site: tuple[App, str],
) -> None:
    _, url = site
    page = _page(browser, url)
    page.goto(url + "articles/2024-03-01-quokka-smiles-studied.html")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    focused = ""
    for _ in range(12):  # brand link, navigation, then the box
        focused = page.evaluate("document.activeElement.id")  # type: ignore[attr-defined]
        if focused == "search-terms":
            break
        page.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert focused == "search-terms"
    page.keyboard.type("quokkasmile")  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    first = page.locator(RESULT).first  # type: ignore[attr-defined]
    first.wait_for(timeout=15_000)
    # the result link points at the site root, not at ../ of the article page
    assert first.get_attribute("href") == "/articles/2024-03-01-quokka-smiles-studied.html"
    height = first.evaluate("a => a.getBoundingClientRect().height")
    assert height >= 44


def test_a_deleted_article_leaves_search_and_a_new_one_joins_it(
    browser: object,  # noqa: F811
    site: tuple[App, str],
    tmp_path: Path,
) -> None:
    app, url = site
    base = _manifest(app)["bundles"]
    page = _page(browser, url)
    _search(page, url, "quokkasmile")
    page.locator(RESULT).first.wait_for(timeout=15_000)  # type: ignore[attr-defined]

    app.delete_articles(["2024-03-01-quokka-smiles-studied"])
    page2 = _page(browser, url)
    _search(page2, url, "quokkasmile")
    note = page2.locator(NOTE).first  # type: ignore[attr-defined]
    note.wait_for(timeout=15_000)
    assert note.inner_text() == "No articles match “quokkasmile”."
    assert page2.locator(RESULT).count() == 0  # type: ignore[attr-defined]

    (tmp_path / "inbox" / "zz_wombat.txt").write_text(
        article_text("Wombat cubes explained", "wombatcube", 2), encoding="utf-8"
    )
    app.ingest()
    manifest = _manifest(app)
    # the new article went into a segment: the base bundle was not written again
    assert manifest["bundles"][0] == base[0]  # type: ignore[index]
    assert len(manifest["bundles"]) == 2  # type: ignore[arg-type]
    page3 = _page(browser, url)
    _search(page3, url, "wombatcube")
    first = page3.locator(RESULT).first  # type: ignore[attr-defined]
    first.wait_for(timeout=15_000)
    assert first.inner_text() == "Wombat cubes explained"
    # a word of an older article is still found, from the base
    box = page3.get_by_label("Search articles")  # type: ignore[attr-defined]
    box.fill("Heilongjiang")
    page3.wait_for_function(  # type: ignore[attr-defined]
        "sel => [...document.querySelectorAll(sel)].some(a => a.textContent.includes('Harbin'))",
        arg=RESULT,
        timeout=15_000,
    )


def test_the_box_with_its_results_has_no_serious_accessibility_violation(
    browser: object,  # noqa: F811
    site: tuple[App, str],
) -> None:
    if not AXE.exists():
        pytest.skip(f"axe-core not installed ({AXE}); run: npm ci --prefix tests/.node")
    _, url = site
    # axe is injected by the test, which the site's CSP would refuse
    page = _page(browser, url, bypass_csp=True)
    _search(page, url, "quokkasmile")
    page.locator(RESULT).first.wait_for(timeout=15_000)  # type: ignore[attr-defined]
    assert _violations(page) == []


def _write_page(root: Path, slug: str, word: str) -> str:
    page = f"articles/{slug}.html"
    (root / "articles").mkdir(parents=True, exist_ok=True)
    (root / page).write_text(
        f'<!doctype html><html lang="en"><head><title>{slug}</title></head><body>'
        f"<article data-pagefind-body><h1>{slug}</h1><p>{word}</p></article></body></html>",
        encoding="utf-8",
    )
    return page


def test_segments_fold_into_one_and_unnamed_bundles_are_removed(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path, "en-GB")
    assert index.update([_write_page(tmp_path, "a0", "alpha")], [], every_gone=True)
    for n in range(1, SEGMENTS_MAX + 1):
        index.update([_write_page(tmp_path, f"a{n}", f"word{n}")], [])
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    assert len(manifest["bundles"]) == SEGMENTS_MAX + 1
    index.update([_write_page(tmp_path, "a1", "changed")], ["articles/a2.html"])
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    # the base and one folded segment holding the newest copy of every changed page
    assert len(manifest["bundles"]) == 2
    folded = manifest["bundles"][1]
    assert manifest["holder"]["articles/a1.html"] == folded
    assert manifest["holder"][f"articles/a{SEGMENTS_MAX}.html"] == folded
    assert manifest["gone"] == ["articles/a2.html"]
    # a restored page leaves the deleted list
    index.update([_write_page(tmp_path, "a2", "back")], [])
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    assert manifest["gone"] == []
    assert manifest["bundles"][:2] == ["1/", folded]
    # the bundles of the manifest before are kept for readers still using them; older go
    present = {p.name + "/" for p in (tmp_path / "search").iterdir() if p.is_dir()}
    assert present == set(manifest["bundles"])


def test_a_new_base_lists_no_page_deleted_before_it(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path, "en")
    pages = [_write_page(tmp_path, f"a{n}", f"word{n}") for n in range(3)]
    assert index.update(pages, [], every_gone=True)
    (tmp_path / pages[0]).unlink()
    assert index.update([], [pages[0]], every_gone=True)  # a delete's full build
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    assert manifest["gone"] == [pages[0]]
    assert index.update([], [pages[0]], every_gone=True, rebuild=True)
    rebuilt = json.loads((tmp_path / "search" / "index.json").read_bytes())
    assert rebuilt["gone"] == []  # the new base does not hold it
    assert index.update([], [pages[0]], every_gone=True)  # the next full build
    assert json.loads((tmp_path / "search" / "index.json").read_bytes()) == rebuilt


def test_past_its_limit_a_new_base_is_written_in_the_background_then_taken_up(
    tmp_path: Path,
) -> None:
    index = SearchIndex(tmp_path, "en", pages_max=1)
    assert index.update([_write_page(tmp_path, "a0", "alpha")], [], every_gone=True)
    assert index.update([_write_page(tmp_path, "a1", "beta")], [])
    # two pages held by segments, past the limit of one: the build goes on with its segment
    assert index.update([_write_page(tmp_path, "a2", "gamma")], [])
    state = json.loads((tmp_path / ".build" / "search.json").read_bytes())
    pending = state["pending"]["name"]
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    assert manifest["bundles"][0] == "1/"
    assert manifest["holder"]["articles/a2.html"] == manifest["bundles"][-1]
    marker = tmp_path / ".build" / f"search-base-{pending}.exit"
    deadline = time.monotonic() + 120
    while not marker.exists():  # the background Pagefind's own signal
        assert time.monotonic() < deadline, "the background base never finished"
        time.sleep(0.1)
    assert index.update([], [])  # the next build takes it up
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    assert manifest["bundles"][0] == f"{pending}/"
    # the segment of the build that started it was written after it: kept
    assert len(manifest["bundles"]) == 2
    assert set(manifest["holder"]) == {"articles/a2.html"}
    assert not marker.exists()


def test_a_failing_pagefind_is_logged_and_the_next_build_rewrites_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    index = SearchIndex(tmp_path, "en")
    assert index.update([_write_page(tmp_path, "a0", "alpha")], [], every_gone=True)
    broken = tmp_path / "pagefind"
    broken.write_text("#!/bin/sh\necho 'disk on fire' >&2\nexit 3\n", encoding="utf-8")
    broken.chmod(0o755)
    # the one mock: a Pagefind that fails cannot be had otherwise
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(broken))
    assert not index.update([_write_page(tmp_path, "a1", "beta")], [])
    assert "Pagefind failed (exit 3): disk on fire" in caplog.text
    monkeypatch.delenv("PAGEFIND_BINARY_PATH")
    assert index.update([], [])
    manifest = json.loads((tmp_path / "search" / "index.json").read_bytes())
    # a new base with both pages, under a new name: readers of the old one may go on
    assert manifest["bundles"] == ["2/"]
    assert (tmp_path / "search" / "1").is_dir()


def test_without_javascript_the_box_is_hidden_and_search_false_leaves_it_out(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest()
        index = (app.settings.output_dir / "index.html").read_text(encoding="utf-8")
        # the page as served: the form waits, hidden, for search.js to show it
        assert re.search(r'<form class="search" role="search" [^>]*\bhidden>', index)
        assert '<script type="module" src="static/search.js"></script>' in index
    finally:
        app.close()
    with config.open("a", encoding="utf-8") as out:
        out.write("\n[site]\nsearch = false\n")
    off = App(load_settings(config, environ={}))
    try:
        shutil.rmtree(off.settings.output_dir)
        off.build_feeds()
        index = (off.settings.output_dir / "index.html").read_text(encoding="utf-8")
        assert "search" not in index.lower().replace("research", "")
        assert not (off.settings.output_dir / "search").exists()
    finally:
        off.close()
