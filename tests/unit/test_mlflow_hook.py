"""The MLflow connection's artifacts destination maps proxied URIs onto the store and back."""

from __future__ import annotations

import json

import pytest

from model_lifecycle.hooks.mlflow import MlflowHook


def test_a_location_under_the_artifacts_destination_is_read_through_the_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({
        "conn_type": "http", "host": "mlflow", "port": 5000,
        "extra": {"artifacts_destination": "s3://mlflow/artifacts/"}}))
    hook = MlflowHook()
    proxied = "mlflow-artifacts:/1/models/m-1/artifacts"
    assert hook.storage_uri(proxied) == "s3://mlflow/artifacts/1/models/m-1/artifacts"
    assert hook.proxied_uri(hook.storage_uri(proxied)) == proxied
    # elsewhere, or only sharing a prefix with the destination: read where it is
    assert hook.proxied_uri("s3://mlflow/artifacts-old/m-1") == "s3://mlflow/artifacts-old/m-1"
    assert hook.proxied_uri("gs://models/m-1") == "gs://models/m-1"
