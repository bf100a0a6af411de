"""Which events reach which channel, and that a channel that cannot be reached never fails a task."""

from __future__ import annotations

import json
import logging

import pytest

from model_lifecycle.notifications import Message, send
from model_lifecycle.specs import Notifications
from tests.support.receivers import WebhookReceiver

MESSAGE = Message(event="rejected", title="[rejected] fraud v3 for models/fraud", text="gate: accuracy low",
                  links={"Model version": "http://mlflow/#/models/fraud/versions/3", "Pull request": ""})


def test_only_the_events_the_spec_names_are_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_CHAT", json.dumps({"conn_type": "http", "host": receiver.url}))
        quiet = Notifications(events=["promoted"], webhook={"connection_id": "chat"})
        assert send(quiet, MESSAGE, {}) == []
        assert receiver.received == []

        assert send(Notifications(webhook={"connection_id": "chat"}), MESSAGE, {}) == ["webhook"]
        # links without an address (no pull request yet) are left out
        assert receiver.texts() == ["[rejected] fraud v3 for models/fraud\ngate: accuracy low\n"
                                    "Model version: http://mlflow/#/models/fraud/versions/3"]


def test_an_unreachable_webhook_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHAT", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/hook"}))
    with caplog.at_level(logging.WARNING, logger="model_lifecycle.notifications"):
        assert send(Notifications(webhook={"connection_id": "chat"}), MESSAGE, {}) == []
    assert "Could not send the rejected notification by webhook" in caplog.text
