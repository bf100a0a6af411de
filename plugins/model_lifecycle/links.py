"""Addresses of the things a reviewer or an on-call engineer opens: MLflow runs and model versions, the
pull request and the Airflow run; and the operator extra links that show them in the Airflow UI.
Cheap to import (DAG files load this module): MLflow is reached only through a registry given."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink, conf

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

    from model_lifecycle.registry import ModelRegistry

# Link names: the buttons in the UI, and the keys of the links in notifications.
MODEL_VERSION = "Model version"
MLFLOW_RUN = "MLflow run"
PULL_REQUEST = "Pull request"
AIRFLOW_RUN = "Airflow run"


def mlflow_run_url(mlflow_ui: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_version_url(mlflow_ui: str, model: str, version: str) -> str:
    return f"{mlflow_ui.rstrip('/')}/#/models/{quote(model, safe='')}/versions/{version}"


def airflow_run_url(airflow_ui: str, dag_id: str, run_id: str) -> str:
    return f"{airflow_ui.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def run_url(context: Context) -> str:
    """This task's Airflow run in the UI (``[api] base_url``)."""
    base_url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return airflow_run_url(base_url, context["dag"].dag_id, context["run_id"])


def version_links(registry: ModelRegistry, mlflow_ui: str, version: str) -> dict[str, str]:
    """The model version, the MLflow run it was registered from, and its pull request (empty until
    one is opened)."""
    from model_lifecycle.registry import Tag

    model_version = registry.version(version)
    experiment_id = registry.client.get_run(model_version.run_id).info.experiment_id
    return {
        MODEL_VERSION: mlflow_version_url(mlflow_ui, registry.name, version),
        MLFLOW_RUN: mlflow_run_url(mlflow_ui, experiment_id, model_version.run_id),
        PULL_REQUEST: model_version.tags.get(Tag.PR_URL, ""),
    }


class VersionLink(BaseOperatorLink):
    """A button on the tasks that work on a registered model version: the version, its MLflow run, its
    pull request. The task's ``extra_link_urls`` are read when it ends (not when it defers), and kept
    in an XCom that the UI reads, so the UI needs neither MLflow nor a plugin."""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # A task that defers is asked too: its process must exit at once, the trigger may fire soon.
        if getattr(ti_key, "state", None) == "deferred":
            return ""
        return getattr(operator, "extra_link_urls", {}).get(self.name, "")


class ModelVersionLink(VersionLink):
    name = MODEL_VERSION


class MlflowRunLink(VersionLink):
    name = MLFLOW_RUN


class PullRequestLink(VersionLink):
    name = PULL_REQUEST


VERSION_LINKS = (ModelVersionLink(), MlflowRunLink(), PullRequestLink())
