"""Addresses of the things a reviewer or an on-call engineer opens: MLflow runs and model versions, and
the Airflow run. Pure string building, cheap to import (the plugin loads this module)."""

from __future__ import annotations

from urllib.parse import quote


def mlflow_run_url(mlflow_ui: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_version_url(mlflow_ui: str, model: str, version: str) -> str:
    return f"{mlflow_ui.rstrip('/')}/#/models/{quote(model, safe='')}/versions/{version}"


def airflow_run_url(airflow_ui: str, dag_id: str, run_id: str) -> str:
    return f"{airflow_ui.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
