"""Synthetic articles in the seed format, for benchmarks (deterministic by seed)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

WORDS = [
    "harbin",
    "city",
    "province",
    "river",
    "winter",
    "festival",
    "ice",
    "snow",
    "government",
    "district",
    "residents",
    "project",
    "construction",
    "investment",
    "culture",
    "tourism",
    "railway",
    "airport",
    "bridge",
    "hospital",
    "school",
    "university",
    "market",
    "price",
    "growth",
    "industry",
    "technology",
    "digital",
    "platform",
    "service",
    "center",
    "community",
    "park",
    "heritage",
    "museum",
    "station",
    "forest",
    "lake",
    "environment",
    "energy",
    "heating",
    "water",
    "supply",
    "transport",
    "development",
    "plan",
    "policy",
    "report",
    "meeting",
    "congress",
    "official",
    "citizens",
    "economy",
    "trade",
    "export",
]
CATEGORIES = ["Harbin Today", "Civilization progress", "Government bulletin", "Culture", "Business"]
TEASERS = [
    (
        "Harbin ramps up childcare services",
        "A new comprehensive service center for childcare in Harbin is expected to be finished by the end of the year.",
    ),
    (
        "Ice festival opens to record crowds",
        "Visitors from across the country arrived for the opening night of the festival.",
    ),
    (
        "New metro line begins trial runs",
        "The line connects the airport with the old town in under forty minutes.",
    ),
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(12, 24))]
    return " ".join(words).capitalize() + "."


def article_text(n: int, rng: random.Random) -> str:
    day = date(2015, 1, 1) + timedelta(days=rng.randint(0, 3650))
    paragraphs = [
        " ".join(_sentence(rng) for _ in range(rng.randint(2, 4))) for _ in range(rng.randint(4, 9))
    ]
    byline = "By ( e.my399.com )" if n % 3 else "By Wang Wei ( chinadaily.com.cn )"
    parts = [
        f"Home>{rng.choice(CATEGORIES)}",
        f"Article {n}: {_sentence(rng)[:-1]}",
        f"Updated : {day}",
        byline,
        *paragraphs,
    ]
    if n % 4:
        parts.extend(TEASERS[n % len(TEASERS)])
    return "\n\n".join(parts) + "\n"


def near_copy(text: str, rng: random.Random) -> str:
    """A corrected re-publication: a few words of the body changed, a later date."""
    header, body = text.split("\n\n", 4)[:4], text.split("\n\n", 4)[4]
    words = body.split(" ")
    for _ in range(3):
        i = rng.randrange(len(words))
        if "\n" not in words[i]:
            words[i] = rng.choice(WORDS)
    lines = "\n\n".join([*header, " ".join(words)]).split("\n")
    for i, line in enumerate(lines):
        if line.startswith("Updated : "):
            when = date.fromisoformat(line[10:20]) + timedelta(days=2)
            lines[i] = f"Updated : {when}"
    return "\n".join(lines)


def generate(count: int, folder: Path, seed: int = 7, near_copies: float = 0.05) -> Iterator[Path]:
    """Write `count` files: (1 - near_copies) originals and near_copies corrected copies."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    originals: list[str] = []
    for n in range(count):
        if originals and rng.random() < near_copies:
            text = near_copy(rng.choice(originals[-2000:]), rng)
        else:
            text = article_text(n, rng)
            originals.append(text)
        path = folder / f"{n:07}.txt"
        path.write_text(text, encoding="utf-8")
        yield path
