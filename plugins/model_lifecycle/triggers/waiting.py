"""What a long wait writes to the task's log: each reason once when it first appears, and a reminder
while it lasts, so that the log of a wait of hours still fits on a screen."""

from __future__ import annotations

import logging
import time

REMINDER_SECONDS = 600.0


class WaitLog:
    def __init__(self, log: logging.Logger | logging.LoggerAdapter, *,
                 reminder_seconds: float = REMINDER_SECONDS) -> None:
        self.log = log
        self.reminder_seconds = reminder_seconds
        self._reason: str | None = None
        self._since = 0.0
        self._logged = 0.0

    def waiting(self, what: str, reason: str, next_in: float) -> None:
        """One more look found ``what`` waiting for ``reason``; logged when the reason changes and every
        ``reminder_seconds`` while it does not."""
        now = time.monotonic()
        if reason != self._reason:
            self._reason, self._since, self._logged = reason, now, now
            self.log.info("Waiting for %s: %s; next check in %.0f s.", what, reason, next_in)
        elif now - self._logged >= self.reminder_seconds:
            self._logged = now
            self.log.info("Still waiting for %s (for %.0f min): %s.", what, (now - self._since) / 60, reason)
