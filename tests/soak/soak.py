"""Watcher soak: thousands of files dropped into the inbox of a running `publisher run`.

While `publisher run --smtp-debug` (a subprocess on free loopback ports) watches the inbox,
files arrive in bursts: new articles, exact copies under another name, corrected
re-publications (a few words changed, a later date), bad files (empty, binary, no title, no
date, impossible date), some written as `.part` and renamed. At the same time other processes
run `publisher ingest` on the same inbox and `publisher send --dry-run`, and a client polls
`atom.xml`. Afterwards every file must be accounted for exactly:

- a good file has exactly one ingest_log row that decided it (added / updated / duplicate),
  is still in the inbox, and its group (an original with its copies) is one article;
- a bad file is in <inbox>/quarantine/ once, with its .error.txt, and only "quarantined" rows;
- the outcome counts add up to the number of files dropped; articles == "added" rows;
- no log says "database is locked", and none holds a traceback.

Run by hand at full size (prints figures; exit 1 on any problem):

    python -m tests.soak.soak --files 10000

Every loop is bounded in count and time; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DECIDED = ("added", "updated", "duplicate")

_VOCABULARY = [
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
    "library",
    "theatre",
    "orchestra",
    "harvest",
    "soybean",
    "rice",
    "farmer",
    "cooperative",
    "village",
    "township",
    "road",
    "tunnel",
    "subway",
    "tram",
    "bus",
    "ferry",
    "harbor",
    "port",
    "logistics",
    "warehouse",
    "factory",
    "robot",
    "battery",
    "solar",
    "wind",
    "grid",
    "pipeline",
    "clinic",
    "doctor",
    "nurse",
    "vaccine",
    "elderly",
    "childcare",
    "kindergarten",
    "student",
    "teacher",
    "exam",
    "research",
    "laboratory",
    "patent",
    "startup",
    "loan",
    "bank",
    "tax",
    "budget",
    "audit",
    "court",
    "police",
    "volunteer",
    "charity",
    "festival",
    "lantern",
    "sculpture",
    "skating",
    "skiing",
    "hockey",
    "marathon",
    "stadium",
]
_TEASERS = (
    "Harbin ramps up childcare services\n\nA new comprehensive service center for childcare "
    "in Harbin is expected to be finished by the end of the year.",
    "Ice festival opens to record crowds\n\nVisitors from across the country arrived for the "
    "opening night of the festival.",
)
_BAD = (
    b"",
    b"   \n\n  \n",
    bytes(range(256)) * 4,
    b"Home>News\n\nA title but no date\n\nSome text.\n",
    b"Home>News\n\nUpdated : 2021-01-01\n\nNo title before the date.\n",
    b"Home>News\n\nImpossible date\n\nUpdated : 2021-02-30\n\nText.\n",
    b"Home>News\n\nTitle\x00with NUL\n\nUpdated : 2021-01-01\n\nText.\n",
    b"Home>News\n\nOnly a header\n\nUpdated : 2021-01-01\n",
)


# -- the files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One file to drop: its name, what it is, and the group of the original it copies."""

    name: str
    kind: str  # original | exact | near | bad
    group: int  # index of the original (-1 for bad files)
    data: bytes
    slow: bool = False  # written as NAME.part in two pieces, then renamed


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(_VOCABULARY) for _ in range(rng.randint(12, 22))).capitalize() + "."


def _article(n: int, rng: random.Random) -> str:
    day = date(2015, 1, 1) + timedelta(days=rng.randint(0, 3000))
    paragraphs = [
        " ".join(_sentence(rng) for _ in range(rng.randint(2, 4))) for _ in range(rng.randint(3, 7))
    ]
    parts = [
        f"Home>{rng.choice(['Harbin Today', 'Culture', 'Business', 'Government bulletin'])}",
        f"Soak {n}: {_sentence(rng)[:-1]}",
        f"Updated : {day}",
        "By ( e.my399.com )" if n % 3 else "By Wang Wei ( chinadaily.com.cn )",
        *paragraphs,
    ]
    if n % 4 == 0:
        parts.append(_TEASERS[n % 2])
    return "\n\n".join(parts) + "\n"


def _near_copy(text: str, rng: random.Random) -> str:
    """A corrected re-publication: two words of one paragraph changed, two days later."""
    parts = text.split("\n\n")
    teaser = 2 if any(t.split("\n\n")[0] in parts for t in _TEASERS) else 0
    body = 4 + rng.randrange(len(parts) - 4 - teaser)  # a paragraph, never the teaser
    words = parts[body].split(" ")
    for _ in range(2):
        words[rng.randrange(len(words))] = rng.choice(_VOCABULARY)
    parts[body] = " ".join(words)
    day = date.fromisoformat(parts[2].removeprefix("Updated : ")) + timedelta(days=2)
    parts[2] = f"Updated : {day}"
    return "\n\n".join(parts)


def plan(files: int, bursts: int, seed: int = 11) -> list[list[Planned]]:
    """Split `files` into bursts; copies only of originals dropped in an earlier burst."""
    rng = random.Random(seed)
    sizes = [files // bursts + (1 if i < files % bursts else 0) for i in range(bursts)]
    originals: list[tuple[int, str]] = []  # (group, text) of earlier bursts
    out: list[list[Planned]] = []
    seq = 0
    for size in sizes:
        burst: list[Planned] = []
        new: list[tuple[int, str]] = []
        for _ in range(size):
            roll = rng.random()
            name = f"{seq:06d}"
            if roll < 0.03:
                data = _BAD[seq % len(_BAD)]
                burst.append(Planned(f"{name}-bad.txt", "bad", -1, data))
            elif roll < 0.08 and originals:
                group, text = rng.choice(originals[-3000:])
                burst.append(Planned(f"{name}-exact.txt", "exact", group, text.encode()))
            elif roll < 0.13 and originals:
                group, text = rng.choice(originals[-3000:])
                near = _near_copy(text, rng).encode()
                burst.append(Planned(f"{name}-near.txt", "near", group, near))
            else:
                text = _article(seq, rng)
                slow = roll > 0.99
                burst.append(Planned(f"{name}-new.txt", "original", seq, text.encode(), slow))
                new.append((seq, text))
            seq += 1
        originals.extend(new)
        out.append(burst)
    return out


def drop(inbox: Path, burst: list[Planned]) -> None:
    """Write a burst the way editors' tools do: atomic renames, and some slow .part files."""
    for item in burst:
        target = inbox / item.name
        if item.slow:
            part = target.with_name(target.name + ".part")
            with part.open("wb") as handle:
                handle.write(item.data[: len(item.data) // 2])
                handle.flush()
                time.sleep(0.02)
                handle.write(item.data[len(item.data) // 2 :])
            part.replace(target)
        else:
            hidden = target.with_name("." + target.name + ".tmp")
            hidden.write_bytes(item.data)
            hidden.replace(target)


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def publisher(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "publisher", "--config", str(config), *args]


def write_config(folder: Path, smtp_port: int, http_port: int) -> Path:
    config = folder / "publisher.toml"
    config.write_text(
        "\n".join(
            [
                f'database_url = "sqlite:///{folder / "data" / "publisher.db"}"',
                'inbox = "inbox"',
                'output_dir = "public"',
                'mailbox_dir = "mailbox"',
                f'base_url = "http://127.0.0.1:{http_port}/"',
                'secret_key = "soak-secret-key-of-at-least-32-bytes"',
                "[smtp]",
                'host = "127.0.0.1"',
                f"port = {smtp_port}",
                "[server]",
                'host = "127.0.0.1"',
                f"port = {http_port}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


@dataclass
class Loop:
    """A command run again and again in a thread until told to stop (bounded in count)."""

    name: str
    command: Callable[[int], list[str]]
    logs: Path
    pause: float
    limit: int
    timeout: float
    runs: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)

    def run(self, stop: threading.Event, cwd: Path, env: dict[str, str]) -> None:
        while not stop.is_set() and self.runs < self.limit:
            log = self.logs / f"{self.name}-{self.runs:03d}.log"
            started = time.monotonic()
            with log.open("wb") as out:
                try:
                    code = subprocess.run(
                        self.command(self.runs),
                        cwd=cwd,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=self.timeout,
                        check=False,
                    ).returncode
                except subprocess.TimeoutExpired:
                    code = -999
            self.seconds.append(time.monotonic() - started)
            self.codes[code] += 1
            self.runs += 1
            stop.wait(self.pause)


@dataclass
class Poller:
    """GETs atom.xml from the running server; counts answers (bounded by the stop event)."""

    url: str
    statuses: Counter[str] = field(default_factory=Counter)

    def run(self, stop: threading.Event) -> None:
        for _ in range(100_000):
            if stop.wait(0.25):
                return
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    response.read()
                    self.statuses[str(response.status)] += 1
            except urllib.error.HTTPError as exc:
                self.statuses[str(exc.code)] += 1
            except (OSError, urllib.error.URLError) as exc:
                self.statuses[type(exc).__name__] += 1


@contextlib.contextmanager
def running(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A background process, stopped with SIGTERM (then SIGKILL after 15 s) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"publisher run exited with {process.returncode} before listening")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"publisher run did not answer {url} within {timeout}s")


# -- accounting ---------------------------------------------------------------------------


def log_rows(database: Path) -> dict[str, list[tuple[str, str | None]]]:
    """file -> [(outcome, article_id)] in the order they were written (read-only)."""
    rows: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    with contextlib.closing(
        sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    ) as db:
        for file, outcome, article_id in db.execute(
            "SELECT file, outcome, article_id FROM ingest_log ORDER BY seq"
        ):
            rows[file].append((outcome, article_id))
    return rows


def accounted(database: Path, names: set[str]) -> int:
    if not database.exists():
        return 0
    with contextlib.suppress(sqlite3.OperationalError):
        return len(names & set(log_rows(database)))
    return 0


@dataclass
class SoakResult:
    files: int
    seconds_dropping: float
    seconds_to_account: float
    outcomes: dict[str, int]
    kinds: dict[str, int]
    articles: int
    near_copy_misses: int
    concurrent: dict[str, object]
    http: dict[str, int]
    problems: list[str]

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds_to_account if self.seconds_to_account else 0.0


def check(
    folder: Path, planned: list[Planned], logs: list[Path]
) -> tuple[dict[str, int], int, int, list[str]]:
    """Every file accounted for exactly; returns (outcomes, articles, near misses, problems)."""
    inbox, quarantine = folder / "inbox", folder / "inbox" / "quarantine"
    database = folder / "data" / "publisher.db"
    rows = log_rows(database)
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    group_ids: dict[int, set[str]] = defaultdict(set)
    group_added: Counter[int] = Counter()
    near_misses = 0
    quarantined_names = {p.name for p in quarantine.iterdir()} if quarantine.is_dir() else set()
    for item in planned:
        mine = rows.get(item.name, [])
        kinds = Counter(outcome for outcome, _ in mine)
        if item.kind == "bad":
            outcomes["quarantined"] += 1
            if set(kinds) != {"quarantined"}:
                problems.append(f"{item.name}: bad file logged as {dict(kinds) or 'nothing'}")
            # Two processes that both read it both log it; the quarantine holds it once.
            outcomes["quarantine rows beyond one per file"] += kinds["quarantined"] - 1
            if (
                item.name not in quarantined_names
                or item.name + ".error.txt" not in quarantined_names
            ):
                problems.append(f"{item.name}: not in quarantine/ with its .error.txt")
            stem, suffix = item.name.rsplit(".", 1)
            again = re.compile(rf"{re.escape(stem)}\.\d+\.{re.escape(suffix)}")  # name.1.txt
            copies = [n for n in quarantined_names if again.fullmatch(n)]
            if copies:
                problems.append(f"{item.name}: extra quarantine copies {sorted(copies)}")
            if (inbox / item.name).exists():
                problems.append(f"{item.name}: bad file still in the inbox")
            continue
        decided = [(outcome, aid) for outcome, aid in mine if outcome in DECIDED]
        if len(decided) != 1 or len(mine) != 1:
            problems.append(f"{item.name}: expected one deciding row, got {mine}")
            continue
        outcome, article_id = decided[0]
        outcomes[outcome] += 1
        if not (inbox / item.name).exists():
            problems.append(f"{item.name}: good file is gone from the inbox")
        if item.kind == "near" and outcome == "added":
            near_misses += 1  # MinHash estimate fell under the threshold: a new article
            continue
        if item.kind == "exact" and outcome != "duplicate":
            problems.append(f"{item.name}: an exact copy was {outcome}")
        group_ids[item.group].add(article_id or "?")
        group_added[item.group] += outcome == "added"
    for group, ids in group_ids.items():
        if len(ids) != 1 or group_added[group] != 1:
            problems.append(f"group {group}: {len(ids)} article ids, {group_added[group]} added")
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        articles = int(db.execute("SELECT count(*) FROM articles").fetchone()[0])
        logged_added = int(
            db.execute("SELECT count(*) FROM ingest_log WHERE outcome = 'added'").fetchone()[0]
        )
    if articles != logged_added:
        problems.append(f"{articles} articles stored but {logged_added} 'added' rows")
    total = sum(outcomes[outcome] for outcome in (*DECIDED, "quarantined"))
    if total != len(planned):
        problems.append(f"outcomes add up to {total}, dropped {len(planned)}")
    unexpected = set(rows) - {item.name for item in planned}
    if unexpected:
        problems.append(f"ingest_log names files never dropped: {sorted(unexpected)[:5]}")
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        if "database is locked" in text.lower():
            problems.append(f"{log.name}: 'database is locked'")
        if "Traceback" in text:
            line = text[text.index("Traceback") :].splitlines()[-1]
            problems.append(f"{log.name}: traceback ({line[:200]})")
    return dict(outcomes), articles, near_misses, problems


# -- the soak -----------------------------------------------------------------------------


def soak(
    folder: Path,
    files: int = 10_000,
    bursts: int = 40,
    pause: float = 0.3,
    settle_timeout: float = 900.0,
    say: Callable[[str], None] = print,
) -> SoakResult:
    """Drop `files` files into a running `publisher run`; account for every one of them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inbox").mkdir(exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    logs = folder / "logs"
    smtp_port, http_port = free_port(), free_port()
    config = write_config(folder, smtp_port, http_port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PUBLISHER_CONFIG", None)
    (folder / "subscribers.csv").write_text(
        "email,name,categories,frequency\n"
        + "".join(f"reader{i}@example.org,Reader {i},,weekly\n" for i in range(20)),
        encoding="utf-8",
    )
    subprocess.run(
        publisher(config, "subscribers", "import", str(folder / "subscribers.csv")),
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    bursts_planned = plan(files, bursts)
    planned = [item for burst in bursts_planned for item in burst]
    names = {item.name for item in planned}
    database = folder / "data" / "publisher.db"

    url = f"http://127.0.0.1:{http_port}/atom.xml"
    stop = threading.Event()
    ingest = Loop(
        "ingest", lambda n: publisher(config, "ingest"), logs, pause=2.0, limit=50, timeout=600
    )
    send = Loop(
        "send",
        lambda n: publisher(config, "send", "--dry-run", "--out", str(folder / f"preview-{n % 3}")),
        logs,
        pause=1.0,
        limit=50,
        timeout=300,
    )
    poller = Poller(url)
    run_log = logs / "run.log"
    command = publisher(
        config, "run", "--smtp-debug", "--host", "127.0.0.1", "--port", str(http_port)
    )
    with running(command, folder, env, run_log) as process:
        wait_http(url, 60, process)
        say(
            f"publisher run is up on 127.0.0.1:{http_port} (smtp sink {smtp_port}); dropping {files} files in {bursts} bursts"
        )
        threads = [
            threading.Thread(target=ingest.run, args=(stop, folder, env), daemon=True),
            threading.Thread(target=send.run, args=(stop, folder, env), daemon=True),
            threading.Thread(target=poller.run, args=(stop,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        rng = random.Random(5)
        started = time.monotonic()
        for number, burst in enumerate(bursts_planned):
            drop(folder / "inbox", burst)
            if number % 10 == 9:
                say(
                    f"  burst {number + 1}/{bursts}: {accounted(database, names)} of {files} accounted"
                )
            time.sleep(rng.uniform(0, pause))
        dropped = time.monotonic() - started
        deadline = time.monotonic() + settle_timeout
        done = accounted(database, names)
        while done < files and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            done = accounted(database, names)
        to_account = time.monotonic() - started
        say(f"  {done} of {files} accounted {to_account:.1f}s after the first drop")
        stop.set()
        for thread in threads:
            thread.join(timeout=620)
        # One more ingest after the watcher settled: everything must come back "unchanged".
        final = subprocess.run(
            publisher(config, "ingest"),
            cwd=folder,
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
        (logs / "ingest-final.log").write_bytes(final.stdout + final.stderr)
        alive = process.poll() is None
    outcomes, articles, misses, problems = check(folder, planned, sorted(logs.glob("*.log")))
    if not alive:
        problems.append(f"publisher run exited early with {process.returncode}")
    if done < files:
        problems.append(f"only {done} of {files} files accounted within {settle_timeout}s")
    if final.returncode != 0:  # nothing bad is left in the inbox; the rest is "unchanged"
        problems.append(f"final ingest exited {final.returncode}")
    for loop in (ingest, send):
        bad = {code: n for code, n in loop.codes.items() if code not in (0, 1)}
        if bad:
            problems.append(f"{loop.name}: exit codes {bad}")
    if process.returncode not in (0, -signal.SIGTERM):
        problems.append(f"publisher run stopped with exit code {process.returncode}")
    http_failures = {k: v for k, v in poller.statuses.items() if k not in ("200", "304")}
    if http_failures:
        problems.append(f"atom.xml poller failures: {http_failures}")
    if misses > max(2, 0.02 * sum(item.kind == "near" for item in planned)):
        problems.append(f"{misses} re-publications were not recognized")
    return SoakResult(
        files=files,
        seconds_dropping=dropped,
        seconds_to_account=to_account,
        outcomes=outcomes,
        kinds=dict(Counter(item.kind for item in planned)),
        articles=articles,
        near_copy_misses=misses,
        concurrent={
            "ingest runs": ingest.runs,
            "ingest exit codes": dict(ingest.codes),
            "ingest median s": round(sorted(ingest.seconds)[len(ingest.seconds) // 2], 2)
            if ingest.seconds
            else None,
            "send --dry-run runs": send.runs,
            "send exit codes": dict(send.codes),
        },
        http=dict(poller.statuses),
        problems=problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.3, help="max seconds between bursts")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the last file"
    )
    parser.add_argument(
        "--folder", type=Path, help="keep everything here (default: a temp dir, removed)"
    )
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        folder = args.folder or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-"))
        )
        result = soak(folder, args.files, args.bursts, args.pause, args.timeout)
        figures = {k: v for k, v in result.__dict__.items() if k != "problems"}
        figures["files_per_second"] = round(result.files_per_second, 1)
        print(json.dumps(figures, indent=2, default=str))
        for problem in result.problems[:50]:
            print("PROBLEM:", problem)
        print(f"{len(result.problems)} problems")
        return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
