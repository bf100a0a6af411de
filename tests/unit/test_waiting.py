"""A long wait's log: each reason once, then a reminder every ten minutes while it lasts."""

from __future__ import annotations

import logging

import pytest

from model_lifecycle.triggers import waiting
from model_lifecycle.triggers.waiting import WaitLog


def test_a_reason_is_logged_when_it_changes_and_reminded_while_it_lasts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    monkeypatch.setattr(waiting.time, "monotonic", lambda: clock[0])
    waits = WaitLog(logging.getLogger("wait-test"))
    with caplog.at_level(logging.INFO, logger="wait-test"):
        for second in range(0, 1300, 15):  # a look every 15 s for almost 22 minutes
            clock[0] = float(second)
            waits.waiting("models/fraud", "revision 'b' is created, 'a' is the latest ready"
                          if second < 60 else "model transitionStatus 'InProgress'", 15)
    assert caplog.messages == [
        "Waiting for models/fraud: revision 'b' is created, 'a' is the latest ready; next check in 15 s.",
        "Waiting for models/fraud: model transitionStatus 'InProgress'; next check in 15 s.",
        "Still waiting for models/fraud (for 10 min): model transitionStatus 'InProgress'.",
        "Still waiting for models/fraud (for 20 min): model transitionStatus 'InProgress'.",
    ]
