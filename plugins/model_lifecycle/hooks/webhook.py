"""An incoming webhook (Slack's, or any that takes ``{"text": ...}``), its URL in an HTTP connection,
e.g. ``AIRFLOW_CONN_SLACK_ML_ONCALL='{"conn_type": "http", "host": "https://hooks.slack.com/services/..."}'``."""

from __future__ import annotations

from airflow.sdk import BaseHook

from model_lifecycle.hooks.http import connection_url

TIMEOUT_SECONDS = 10


class WebhookHook(BaseHook):
    conn_name_attr = "webhook_conn_id"
    default_conn_name = "webhook_default"
    conn_type = "http"
    hook_name = "Incoming webhook (model lifecycle)"

    def __init__(self, webhook_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.webhook_conn_id = webhook_conn_id

    def post_text(self, text: str) -> None:
        """Post the message; an answer other than 2xx raises ``requests.HTTPError``."""
        import requests

        url = connection_url(self.get_connection(self.webhook_conn_id), what="the webhook",
                             default_scheme="https")
        requests.post(url, json={"text": text}, timeout=TIMEOUT_SECONDS).raise_for_status()
