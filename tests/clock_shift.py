"""Run the `publisher` CLI with its clock moved to an instant (and ticking on from there).

`python -m tests.clock_shift 2026-12-01T07:59:58+08:00 --config … run`: lets a test make
the real scheduler of a `publisher run` subprocess fire within seconds, with nothing else
of the process changed.
"""

from __future__ import annotations

import sys
from datetime import datetime

import time_machine

from publisher.cli import main


def shifted() -> None:
    instant = datetime.fromisoformat(sys.argv[1])
    sys.argv = ["publisher", *sys.argv[2:]]
    with time_machine.travel(instant, tick=True):
        main()


if __name__ == "__main__":
    shifted()
