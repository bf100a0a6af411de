"""Where an HTTP connection points: MLflow, a webhook and Argo CD read it the same way."""

from __future__ import annotations

import pytest
from airflow.sdk import Connection

from model_lifecycle.hooks.http import connection_url


@pytest.mark.parametrize(("connection", "default_scheme", "url"), [
    (Connection(conn_id="c", conn_type="http", host="mlflow", port=5000), "http", "http://mlflow:5000"),
    (Connection(conn_id="c", conn_type="generic", host="argocd.example.com"), "https",
     "https://argocd.example.com"),
    (Connection(conn_id="c", conn_type="http", host="https://hooks.slack.com/services/T/B/X"), "https",
     "https://hooks.slack.com/services/T/B/X"),
    (Connection(conn_id="c", conn_type="https", host="example.com", schema="/mlflow/"), "http",
     "https://example.com/mlflow"),
])
def test_scheme_from_host_then_type_then_default(connection: Connection, default_scheme: str,
                                                 url: str) -> None:
    assert connection_url(connection, what="x", default_scheme=default_scheme) == url


def test_an_empty_host_is_named() -> None:
    with pytest.raises(ValueError, match="connection 'argocd_default': host is empty; set the address of "
                                         "Argo CD's API"):
        connection_url(Connection(conn_id="argocd_default", conn_type="http"), what="Argo CD's API")
