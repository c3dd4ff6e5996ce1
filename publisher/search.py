"""Adapter: the site's Pagefind search index, kept as static files under search/.

Pagefind cannot update an index in place, and re-indexing 100k article pages takes
minutes, so the index is a base bundle plus small segments (an LSM tree of two levels):

- ``search/<n>/`` are Pagefind bundles. The first listed is the base (every live article
  page when it was written), the others are segments, each holding the article pages a
  later build changed. A build that changed articles writes one new segment of just those
  pages; past SEGMENTS_MAX segments they are folded into one. Once the pages held by
  segments and the deleted pages listed pass SEGMENT_PAGES_MAX, a new base is written by
  a Pagefind process of its own, off the build's path; the first build after it finished
  makes it the base and drops the segments written before it started.
- ``search/index.json`` (the manifest, written last and atomically) names the bundles in
  order, which bundle holds the newest copy of each page held by a segment, and the pages
  of deleted articles. static/search.js searches every bundle and keeps a page's result
  only from the bundle holding its newest copy, and never for a deleted page, so a
  correction or a delete shows in results with the build that made it.
- Bundles the manifest (or the one before it, which a reader may still be using) no
  longer names are moved aside and removed by a process of their own.
- Background work (a new base, removals) runs at the lowest CPU priority, so the builds'
  own small Pagefind runs go first.

The pages are indexed from the rendered article files by Pagefind's own binary (the
Python API answers at most ten calls a second, too slow for a whole site). Only
``data-pagefind-body`` (the article) is indexed; every page is indexed in the site's
language so one search finds articles of every language.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pagefind.service import get_executable

from publisher.errors import PublisherError
from publisher.links import SEARCH_MANIFEST as MANIFEST

__all__ = ["MANIFEST", "SearchIndex", "SearchIndexError"]

log = logging.getLogger("publisher.search")

FOLDER = "search"
BOOKKEEPING = ".build"  # never served
STATE = f"{BOOKKEEPING}/search.json"
SEGMENTS_MAX = 8  # bundles a browser merges besides the base
SEGMENT_PAGES_MAX = 500  # pages held by segments before the base is rewritten
TIMEOUT = 3600.0  # seconds one Pagefind run may take (a base of 100k pages takes minutes)
ARTICLES_GLOB = "articles/*.html"
# the background base's wrapper: Pagefind's exit status into a marker file, atomically
# at the lowest CPU priority, so the builds' own Pagefind runs go first
_WAIT = (
    "import os, subprocess, sys\n"
    "os.nice(19)\n"
    "code = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL,"
    " stderr=subprocess.DEVNULL).returncode\n"
    "with open(sys.argv[1] + '.tmp', 'w') as f: f.write(str(code))\n"
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
)
# removing a base of 100k pages takes seconds: done beside the build, at low priority
_REMOVE = "import os, shutil, sys\nos.nice(19)\nshutil.rmtree(sys.argv[1], ignore_errors=True)\n"


class SearchIndexError(PublisherError):
    """Pagefind is missing or failed; the site is whole, only its search is stale."""


class SearchIndex:
    """The search bundles of one output folder."""

    def __init__(
        self,
        root: Path,
        language: str,
        *,
        segments_max: int = SEGMENTS_MAX,
        pages_max: int = SEGMENT_PAGES_MAX,
    ) -> None:
        self.root = root
        self.segments_max = segments_max
        self.pages_max = pages_max
        # Pagefind wants an ISO 639-1 code: "pt" of "pt-BR"
        self.language = (language or "en").split("-")[0].lower() or "en"

    # -- entry points ------------------------------------------------------------

    def update(
        self,
        changed: Iterable[str],
        gone: Iterable[str],
        *,
        every_gone: bool = False,
        rebuild: bool = False,
    ) -> bool:
        """Make search match the article pages: `changed` were (re)written, `gone` were
        deleted (`every_gone`: that is every deleted page, not only new ones). Rebuilds the
        base when there is none, when asked, or when segments grew past their limits.

        A failed Pagefind run is logged, not raised (the site itself is whole), and
        forgets the state so the next build writes the base anew; returns False then."""
        try:
            self._update(changed, gone, every_gone=every_gone, rebuild=rebuild)
        except (SearchIndexError, OSError) as exc:
            log.error("search index not updated: %s", exc)
            with contextlib.suppress(OSError):  # a read-only folder: its build says so
                (self.root / STATE).unlink(missing_ok=True)
            return False
        return True

    def _update(
        self, changed: Iterable[str], gone: Iterable[str], *, every_gone: bool, rebuild: bool
    ) -> None:
        state = self._load_state()
        changed_pages = sorted(set(changed))
        gone_pages = set(gone)
        if state is None or rebuild or not self._whole(state):
            self._rebuild(state, gone_pages)
            return
        restated = self._settle(state)
        holder: dict[str, str] = state["holder"]
        # pages deleted before the base was written are in no bundle, unless a segment
        # took them up again (a restore)
        absent = set(state["excluded"]) - set(holder)
        removed = (gone_pages - absent) if every_gone else (set(state["gone"]) | gone_pages)
        removed -= set(changed_pages)  # a restored article is back
        segments: list[dict[str, Any]] = state["segments"]
        held = set(holder) | set(changed_pages)
        if len(held | removed) > self.pages_max and state.get("pending") is None:
            # a base of 100k pages takes minutes: written beside, taken up by a later build
            self._start_base(state, removed | absent)
            restated = True  # the state names it now
        if changed_pages:
            if len(segments) >= self.segments_max:
                # fold: one segment with the newest copy of every page the segments held
                name = self._bundle(sorted(held - removed), state)
                segments = [{"name": name}]
                holder = {page: name for page in held}
            else:
                name = self._bundle(changed_pages, state)
                segments = [*segments, {"name": name}]
                holder.update(dict.fromkeys(changed_pages, name))
        elif removed == set(state["gone"]) and not restated:
            return  # nothing search shows changed
        state.update(segments=segments, holder=holder, gone=sorted(removed))
        self._publish(state)

    # -- bundles ---------------------------------------------------------------------

    def _rebuild(self, previous: dict[str, Any] | None, absent: set[str]) -> None:
        """A new base of every article page there is; `absent`: deleted pages known."""
        # without a state, never reuse the name of a bundle a reader may be using
        numbers = [int(name) for name in self._bundle_names()]
        state: dict[str, Any] = {
            "counter": max([int(previous["counter"]) if previous else 0, *numbers]),
            "previous": list(_names(previous)) if previous else self._published(),
        }
        base = self._run(self.root, state)
        state.update(base=base, segments=[], holder={}, gone=[], excluded=sorted(absent))
        self._publish(state)

    def _start_base(self, state: dict[str, Any], absent: set[str]) -> None:
        """Pagefind over every article page in a process of its own, which outlives this
        one (a one-shot `publisher build`) and leaves its exit status in a marker file."""
        name, command = self._command(self.root, state)
        marker = self._marker(name)
        marker.unlink(missing_ok=True)
        try:
            subprocess.Popen(
                [sys.executable, "-c", _WAIT, str(marker), *command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise SearchIndexError(f"Pagefind could not run: {exc}") from exc
        state["pending"] = {
            "name": name,
            "started": time.time(),
            "segments": [s["name"] for s in state["segments"]],
            "gone": sorted(state["gone"]),
            "absent": sorted(absent),
        }
        log.info("search: writing a new base (search/%s/) in the background", name)

    def _settle(self, state: dict[str, Any]) -> bool:
        """A background base that finished becomes the base: the segments written before
        it started are dropped (it read newer copies of their pages), the later ones kept.
        True if the state changed."""
        pending = state.get("pending")
        if pending is None:
            return False
        marker = self._marker(str(pending["name"]))
        try:
            status = marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            if time.time() - float(pending["started"]) < TIMEOUT:
                return False  # still running
            status = "timeout"
        marker.unlink(missing_ok=True)
        del state["pending"]
        if status != "0":
            log.error("search: the new base failed (%s); the next build tries again", status)
            shutil.rmtree(self.root / FOLDER / str(pending["name"]), ignore_errors=True)
            return True
        before = set(pending["segments"])
        state["base"] = pending["name"]
        state["segments"] = [s for s in state["segments"] if s["name"] not in before]
        state["holder"] = {p: n for p, n in state["holder"].items() if n not in before}
        # pages deleted before it started are not in it; later ones may be
        state["gone"] = sorted(set(state["gone"]) - set(pending["gone"]))
        state["excluded"] = pending["absent"]
        return True

    def _marker(self, name: str) -> Path:
        return self.root / BOOKKEEPING / f"search-base-{name}.exit"

    def _bundle(self, pages: Sequence[str], state: dict[str, Any]) -> str:
        """A bundle of these article pages (hard links in a staging folder, so Pagefind
        sees them at their own paths and names them by their URLs)."""
        (self.root / BOOKKEEPING).mkdir(parents=True, exist_ok=True)
        # its own folder: a second build process must not empty this one's
        stage = Path(tempfile.mkdtemp(prefix="search-stage-", dir=self.root / BOOKKEEPING))
        for page in pages:
            source = self.root / page
            target = stage / page
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except FileNotFoundError:
                continue  # deleted meanwhile: a later build says so
            except OSError:
                shutil.copyfile(source, target)
        try:
            return self._run(stage, state)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _run(self, site: Path, state: dict[str, Any]) -> str:
        """Pagefind over `site`, into a new search/<n>/; returns n."""
        name, command = self._command(site, state)
        target = self.root / FOLDER / name
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SearchIndexError(f"Pagefind could not run: {exc}") from exc
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise SearchIndexError(
                f"Pagefind failed (exit {done.returncode}): {detail[-1] if detail else ''}"
            )
        return name

    def _command(self, site: Path, state: dict[str, Any]) -> tuple[str, list[str]]:
        """The name of a new bundle, and the Pagefind command writing it from `site`."""
        executable = get_executable()
        if executable is None:
            raise SearchIndexError("the Pagefind binary is missing: pip install 'pagefind[bin]'")
        state["counter"] = int(state.get("counter", 0)) + 1
        name = str(state["counter"])
        target = self.root / FOLDER / name
        shutil.rmtree(target, ignore_errors=True)
        (site / "articles").mkdir(parents=True, exist_ok=True)  # Pagefind refuses no pages
        command = [
            str(executable),
            "--site",
            str(site),
            "--glob",
            ARTICLES_GLOB,
            "--output-path",
            str(target),
            "--force-language",
            self.language,
            "--silent",
        ]
        return name, command

    # -- manifest and state ----------------------------------------------------------

    def _publish(self, state: dict[str, Any]) -> None:
        """Write the manifest readers follow, then drop bundles nobody can be reading."""
        bundles = [state["base"], *(s["name"] for s in state["segments"])]
        manifest = {
            "bundles": [f"{name}/" for name in bundles],
            "holder": {page: f"{name}/" for page, name in sorted(state["holder"].items())},
            "gone": state["gone"],
        }
        _write(self.root / MANIFEST, manifest)
        keep = set(bundles) | set(state.get("previous", []))
        if state.get("pending"):
            keep.add(str(state["pending"]["name"]))  # being written
        state["previous"] = bundles
        _write(self.root / STATE, state)
        unused = [entry for entry in self._bundle_names() if entry not in keep]
        if unused:
            self._discard(unused)

    def _discard(self, names: Sequence[str]) -> None:
        """Move bundles out of search/ (one rename each), then remove them in a process
        of their own."""
        trash = Path(tempfile.mkdtemp(prefix="search-trash-", dir=self.root / BOOKKEEPING))
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # another build took it
                os.replace(self.root / FOLDER / name, trash / name)
        try:
            subprocess.Popen(
                [sys.executable, "-c", _REMOVE, str(trash)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            shutil.rmtree(trash, ignore_errors=True)

    def _published(self) -> list[str]:
        """The bundles the manifest on disk names (readers may be using them)."""
        try:
            loaded = json.loads((self.root / MANIFEST).read_bytes())
            return [str(name).rstrip("/") for name in loaded["bundles"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _bundle_names(self) -> list[str]:
        try:
            with os.scandir(self.root / FOLDER) as entries:
                return [e.name for e in entries if e.is_dir() and e.name.isdigit()]
        except FileNotFoundError:
            return []

    def _whole(self, state: dict[str, Any]) -> bool:
        """Every bundle the state names is on disk, and so is the manifest."""
        present = set(self._bundle_names())
        return (self.root / MANIFEST).is_file() and set(_names(state)) <= present

    def _load_state(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads((self.root / STATE).read_bytes())
        except (OSError, ValueError):
            return None
        needed = {"counter", "base", "segments", "holder", "gone", "excluded"}
        if not isinstance(loaded, dict) or not needed <= set(loaded):
            return None
        return loaded


def _names(state: dict[str, Any]) -> list[str]:
    return [str(state["base"]), *(str(s["name"]) for s in state["segments"])]


def _write(path: Path, value: object) -> None:
    """Atomically, as output.py does: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
