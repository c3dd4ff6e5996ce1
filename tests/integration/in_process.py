"""`publisher` on the command line, run inside the test process with click's CliRunner.

Starting an interpreter costs about a second on a loaded machine; a contract test (exit
code, stdout, stderr, --json shape) needs none of what a real process gives, so only tests
of signals, locks and kill -9 start one. The answer is a `subprocess.CompletedProcess`, read
the same way as a subprocess's, and it means the same:

- the PUBLISHER_* variables of the environment the tests run in are left out, as the
  subprocess tests did;
- an exception the CLI did not turn into an exit code is printed on stderr as the
  interpreter would print it, so `"Traceback" not in stderr` still proves there was none;
- the logging the CLI sets up (handlers on captured streams, levels) is put back afterwards,
  so one command does not change what the next test's caplog sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from click.testing import CliRunner

from publisher.cli import cli

__all__ = ["publisher_cli"]

_LOGGERS = ("publisher", "apscheduler")  # the ones the CLI configures


def publisher_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: Literal["sys", "fd"] = "sys",
) -> subprocess.CompletedProcess[str]:
    """Run `publisher ARGS` in this process. `capture="fd"` also takes what is written to
    file descriptors 1 and 2 directly, past sys.stdout and sys.stderr."""
    environment: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("PUBLISHER_")
    }
    environment.update(env or {})
    with _logging_put_back(), contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner(capture=capture).invoke(
            cli, list(args), env=environment, prog_name="publisher"
        )
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(
        ["publisher", *args], result.exit_code, result.stdout, stderr
    )


@contextlib.contextmanager
def _logging_put_back() -> Iterator[None]:
    manager = logging.Logger.manager
    names = [name for name in [*_LOGGERS, *manager.loggerDict] if name.split(".")[0] in _LOGGERS]
    saved = {}
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        saved[name] = (logger.level, list(logger.handlers), logger.propagate)
    try:
        yield
    finally:
        for name in list(manager.loggerDict):
            if name.split(".")[0] not in _LOGGERS:
                continue
            logger = logging.getLogger(name)
            level, handlers, propagate = saved.get(name, (logging.NOTSET, [], True))
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
