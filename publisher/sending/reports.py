"""What one `send` did, a real one or a dry run; the mailer's counts are embedded, not copied."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from publisher.mailer import SendReport
from publisher.warmup import WarmupForecast, WarmupState

__all__ = [
    "SKIP_NOTHING_NEW",
    "SKIP_NO_CATEGORY",
    "SKIP_PAUSED",
    "SKIP_SUPPRESSED",
    "DigestReport",
    "Preview",
]

SKIP_NO_CATEGORY = "no matching category"  # new articles, none in its categories
SKIP_NOTHING_NEW = "nothing new"
SKIP_PAUSED = "paused"  # paused from the preference centre
SKIP_SUPPRESSED = "suppressed"  # unsubscribed, bounced or complained


@dataclass(frozen=True, slots=True)
class Preview:
    """One message a dry run wrote instead of sending it."""

    recipient: str
    items: int
    subject: str
    size: int
    path: Path


@dataclass
class DigestReport:
    """What one `send` did; `previews` only for a dry run."""

    dry_run: bool
    run_id: int | None = None  # the last run it worked on
    resumed: bool = False  # it finished a run an earlier send left unfinished
    as_of: datetime | None = None
    skipped_empty: int = 0
    skipped_paused: int = 0  # confirmed subscribers whose pause lasts past the run's as_of
    previews: list[Preview] = field(default_factory=list)
    # a dry run's: (recipient, why no message) — SKIP_* reasons
    skipped: list[tuple[str, str]] = field(default_factory=list)
    digests_rendered: int = 0
    fanned_out: int = 0  # rows open after fan-out (this send's share, or the workers')
    render_seconds: float = 0.0
    seconds: float = 0.0
    delivery: SendReport = field(default_factory=SendReport)
    warmup: WarmupState | None = None  # today's warm-up after this send; None: off
    # a dry run's: what warm-up would let go today; None: off, over, or a real send
    forecast: WarmupForecast | None = None

    @property
    def sent(self) -> int:
        return self.delivery.sent

    @property
    def failed(self) -> int:
        return self.delivery.failed

    @property
    def retried(self) -> int:
        return self.delivery.retried

    @property
    def failures(self) -> list[tuple[str, str]]:
        return self.delivery.failures

    @property
    def deferred(self) -> int:
        """Left open because the SMTP server could not be reached."""
        return self.delivery.deferred

    @property
    def unreachable(self) -> str | None:
        return self.delivery.unreachable

    @property
    def failover(self) -> str | None:
        """The line "relay A unreachable (why), sent through B" when a later relay took over."""
        return self.delivery.failover

    def summary(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "skipped-empty": self.skipped_empty,
            "skipped-paused": self.skipped_paused,
            "retried": self.retried,
            "failed": self.failed,
            "not-sent": self.deferred,
        }
