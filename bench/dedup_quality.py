"""Re-publication recall and false merges on short stories, through the real Ingestor.

Run by hand:  python bench/dedup_quality.py [--stories 2000] [--unrelated 2000] [--seed 14]
Generates short stories (2-4 paragraphs), each with a planted re-publication under another
file name (1-3 words corrected and/or 1-3 paragraphs appended, 0-3 days later, now and then
a title edit), and unrelated short stories that share a title prefix or a closing sentence
with one of them. All are ingested into a real SQLite file in random file-name order (so a
re-publication may come first, in the same batch or an earlier one), twice: with the
containment rule (dedup/near.py) and with it off (dedup.containment_threshold = 0, main's
rule: the MinHash estimate alone), in the same run. Prints both and appends them to
bench/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from publisher.config import load_settings
from publisher.ingest import Ingestor
from publisher.store import Store

HERE = Path(__file__).resolve().parent

FUNCTION = (
    "the the the a a of of in in on and and to to was were for with at by from that it is "
    "has had after before said would will about over into than their its his her they "
    "two three four five some many most more one"
).split()
CONTENT = (
    "harbin city province river winter festival ice snow government district residents "
    "project construction investment culture tourism railway airport bridge hospital school "
    "university market price growth industry technology digital platform service center "
    "community park heritage museum station forest lake environment energy heating water "
    "supply transport development plan policy report meeting congress official citizens "
    "economy trade export police fire workers crane road street bus driver court judge "
    "students teachers doctors patients farmers harvest grain rice soybean factory company "
    "shop restaurant noodle visitors tourists crowd concert theater library volunteers "
    "storm wind temperature degrees flight train metro line ticket fare budget tax office "
    "mayor council inspection safety accident injury rescue team village county border "
    "russia china north east songhua daoli nangang xiangfang pingfang hulan acheng"
).split()
PREFIXES = [
    "Harbin police report:",
    "City briefing:",
    "Weather alert:",
    "Daoli district notice:",
    "Transport update:",
    "Court news:",
    "Business in brief:",
    "Health officials say",
]
CLOSINGS = [
    "Police said the investigation is ongoing.",
    "The district government said more details would follow.",
    "Nobody was hurt, officials said.",
    "The work is expected to finish by the end of the year.",
    "Residents can call the city hotline 12345 with questions.",
    "The company did not answer a request for comment.",
    "Further checks are planned for next week.",
    "More information is available on the city website.",
]


def sentence(rng: random.Random) -> str:
    words = [
        rng.choice(FUNCTION) if rng.random() < 0.4 else rng.choice(CONTENT)
        for _ in range(rng.randint(8, 18))
    ]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))


def headline(rng: random.Random) -> str:
    return " ".join(rng.choice(CONTENT) for _ in range(rng.randint(4, 7))).capitalize()


@dataclass
class Story:
    title: str
    day: date
    paragraphs: list[str]
    kind: str = ""  # what was done to make it (a planted re-publication's edits)

    def text(self) -> str:
        header = f"Home>Harbin Today\n\n{self.title}\n\nUpdated : {self.day}\n\nBy ( Harbin Daily )"
        return "\n\n".join([header, *self.paragraphs]) + "\n"


def original(rng: random.Random) -> Story:
    title = headline(rng)
    if rng.random() < 0.3:  # a title prefix other, unrelated stories may share
        title = f"{rng.choice(PREFIXES)} {title.lower()}"
    paragraphs = [paragraph(rng) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.4:  # a closing sentence: its own paragraph, or the last sentence
        closing = rng.choice(CLOSINGS)
        if rng.random() < 0.5:
            paragraphs.append(closing)
        else:
            paragraphs[-1] += " " + closing
    day = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
    return Story(title, day, paragraphs)


def republished(story: Story, rng: random.Random) -> Story:
    """1-3 words corrected and/or 1-3 paragraphs appended, 0-3 days later."""
    kind = rng.choice(["corrected", "appended", "both"])
    paragraphs = list(story.paragraphs)
    if kind in ("corrected", "both"):
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(paragraphs))
            words = paragraphs[at].split(" ")
            i = rng.randrange(len(words))
            replacement = rng.choice(CONTENT)
            while replacement == words[i].strip(".").lower():
                replacement = rng.choice(CONTENT)
            words[i] = replacement + ("." if words[i].endswith(".") else "")
            paragraphs[at] = " ".join(words)
    if kind in ("appended", "both"):
        paragraphs += [paragraph(rng) for _ in range(rng.randint(1, 3))]
    title = story.title
    if rng.random() < 0.15:  # an edited title: a prefix added, or one word changed
        if rng.random() < 0.5:
            title = f"Update: {title}"
        else:
            words = title.split(" ")
            words[rng.randrange(len(words))] = rng.choice(CONTENT)
            title = " ".join(words)
        kind += ", title edited"
    return Story(title, story.day + timedelta(days=rng.randint(0, 3)), paragraphs, kind)


def unrelated(partner: Story, rng: random.Random) -> tuple[Story, str]:
    """A story of its own that shares the partner's title prefix, its closing sentence, or
    both, dated close to it."""
    story = original(rng)
    shares = rng.choice(["title prefix", "closing sentence", "both"])
    if shares in ("title prefix", "both"):
        prefix = " ".join(partner.title.split(" ")[:3])
        story.title = f"{prefix} {headline(rng).lower()}"
    if shares in ("closing sentence", "both"):
        closing = partner.paragraphs[-1].rsplit(". ", 1)[-1]
        if rng.random() < 0.5:
            story.paragraphs.append(closing)
        else:
            story.paragraphs[-1] += " " + closing
    story.day = partner.day + timedelta(days=rng.randint(0, 3))
    return story, shares


@dataclass
class Corpus:
    files: dict[str, Story] = field(default_factory=dict)
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # original, copy, kind
    unrelated: list[tuple[str, str]] = field(default_factory=list)  # file, what it shares


def corpus(stories: int, others: int, seed: int) -> Corpus:
    rng = random.Random(seed)
    made = Corpus()

    def name() -> str:  # random names: the ingest order mixes originals and copies
        return f"{rng.getrandbits(64):016x}.txt"

    originals = []
    for _ in range(stories):
        story = original(rng)
        copy = republished(story, rng)
        first, second = name(), name()
        made.files[first], made.files[second] = story, copy
        made.pairs.append((first, second, copy.kind))
        originals.append(story)
    for _ in range(others):
        story, shares = unrelated(rng.choice(originals), rng)
        file = name()
        made.files[file] = story
        made.unrelated.append((file, shares))
    return made


def ingest(folder: Path, containment: float) -> tuple[dict[str, str], float, float]:
    """Each file's article id (its target for a duplicate), and the seconds it took (wall
    clock, and CPU of this process: the machine may be shared)."""
    work = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    try:
        config = work / "publisher.toml"
        config.write_text(
            f'database_url = "sqlite:///{work}/db.sqlite"\ninbox = "{folder}"\n'
            f"ingest_processes = 0\n[dedup]\ncontainment_threshold = {containment}\n"
        )
        settings = load_settings(config, environ={})
        store = Store(settings.database_url)
        started, cpu = time.perf_counter(), time.process_time()
        report = Ingestor(settings, store).ingest([folder], now=lambda: datetime.now(UTC))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
        return {r.file: r.article_id or "" for r in report.results}, elapsed, cpu
    finally:
        shutil.rmtree(work)


def score(made: Corpus, article_of: dict[str, str]) -> dict[str, object]:
    files_of: dict[str, set[str]] = defaultdict(set)
    for file, article_id in article_of.items():
        files_of[article_id].add(file)
    found = Counter(
        kind.split(",")[0] for a, b, kind in made.pairs if article_of[a] == article_of[b]
    )
    planted = Counter(kind.split(",")[0] for _, _, kind in made.pairs)
    edited = [(a, b) for a, b, kind in made.pairs if "title edited" in kind]
    merged = [file for file, _ in made.unrelated if len(files_of[article_of[file]]) > 1]
    return {
        "recall": sum(found.values()) / len(made.pairs),
        "by kind": {k: f"{found[k]}/{planted[k]}" for k in sorted(planted)},
        "title edited": f"{sum(article_of[a] == article_of[b] for a, b in edited)}/{len(edited)}",
        "false merges": len(merged) / len(made.unrelated),
        "merged": len(merged),
        "articles": len(files_of),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stories", type=int, default=2000)
    parser.add_argument("--unrelated", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    made = corpus(args.stories, args.unrelated, args.seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-dedup-inbox-"))
    try:
        for file, story in made.files.items():
            (folder / file).write_text(story.text(), encoding="utf-8")
        runs = {}
        for label, containment in (("containment rule (0.8)", 0.8), ("main's rule (off)", 0.0)):
            article_of, seconds, cpu = ingest(folder, containment)
            runs[label] = {**score(made, article_of), "seconds": seconds, "cpu": cpu}
    finally:
        shutil.rmtree(folder)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"## dedup quality ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine}; seed {args.seed})",
        "",
        f"{args.stories} short stories (2-4 paragraphs) + a planted re-publication of each "
        f"under another file name; {args.unrelated} unrelated short stories sharing a title "
        "prefix or a closing sentence with one of them; one real SQLite file per rule, "
        "files in random name order. Targets: recall >= 0.99, false merges <= 0.1 %.",
        "",
        "| rule | recall | found by kind | title edited | false merges | articles "
        "| ingest s (CPU s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, run in runs.items():
        kinds = ", ".join(f"{k} {v}" for k, v in run["by kind"].items())  # type: ignore[attr-defined]
        lines.append(
            f"| {label} | {run['recall']:.4f} | {kinds} | {run['title edited']} "
            f"| {float(run['false merges']):.2%} ({run['merged']}) | {run['articles']} "  # type: ignore[arg-type]
            f"| {float(run['seconds']):.1f} ({float(run['cpu']):.1f}) |"  # type: ignore[arg-type]
        )
    text = "\n".join(lines) + "\n"
    print(text)
    with (HERE / "results.md").open("a", encoding="utf-8") as results:
        results.write("\n" + text)


if __name__ == "__main__":
    main()
