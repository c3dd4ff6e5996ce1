"""Lighthouse on the built site as `publisher serve` answers it: the index, an article, a
category page and the HTML archive score Accessibility 100, SEO >= 95, Best Practices >= 95.

Lighthouse 12 (tests/.node, `npm ci --prefix tests/.node`) drives Debian's chromium, one run a
page (10-30 s each). The site is served on 127.0.0.1, which browsers count as a secure
context: `is-on-https` passes there without TLS, so it proves only that no page loads
anything over plain http from elsewhere; TLS in production is `publisher doctor`'s check of
base_url. The audits the issue names (crawlable, canonical, robots.txt, console errors such
as a missing favicon) pass only when they were applicable: a page without a canonical link or
a site without robots.txt makes Lighthouse mark them "not applicable", which scores 100 too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.lighthouse import PAGES, ServedSite, failing_audits, lighthouse, missing, served_site

CATEGORIES = ("accessibility", "seo", "best-practices")
TARGETS = {"accessibility": 1.0, "seo": 0.95, "best-practices": 0.95}
# must have run and passed on every page, not been skipped as not applicable
APPLICABLE = ("is-crawlable", "canonical", "robots-txt", "errors-in-console", "document-title")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSite]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    with served_site(tmp_path_factory.mktemp("lighthouse")) as served:
        yield served


@dataclass(frozen=True)
class Page:
    url: str
    report: dict[str, Any] = field(repr=False)


@pytest.fixture(scope="module", params=PAGES)
def page(site: ServedSite, request: pytest.FixtureRequest) -> Page:
    """One lighthouse run a page, shared by the tests of its scores and of its audits."""
    url = site.urls[request.param]
    return Page(url, lighthouse(url, CATEGORIES))


def test_each_page_meets_the_accessibility_seo_and_best_practices_targets(page: Page) -> None:
    report = page.report
    assert report["finalDisplayedUrl"] == page.url  # no redirect elsewhere
    short = []
    for category in CATEGORIES:
        score = report["categories"][category]["score"]
        if score is None or score < TARGETS[category]:
            audits = failing_audits(report, category)
            short.append(
                f"{category} {score} < {TARGETS[category]}:\n"
                + "\n".join(f"  {audit.line()}" for audit in audits)
            )
    if short:
        print("\n".join(short))
    assert not short, f"{page.url}\n" + "\n".join(short)


def test_each_page_passes_the_crawler_audits_rather_than_skipping_them(page: Page) -> None:
    report = page.report
    wrong = []
    for name in APPLICABLE:
        audit = report["audits"][name]
        if audit["scoreDisplayMode"] != "binary" or audit["score"] != 1:
            why = audit.get("explanation") or audit.get("displayValue") or ""
            wrong.append(f"{name}: {audit['title']} [{audit['scoreDisplayMode']}] {why}")
    assert not wrong, f"{page.url}\n" + "\n".join(wrong)
