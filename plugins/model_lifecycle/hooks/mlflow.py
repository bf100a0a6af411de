"""The MLflow tracking server, reached through an Airflow connection (``mlflow_default``).

The connection's URI is the tracking server's address, for example ``http://mlflow:5000`` or
``https://mlflow.example.com/prefix``. Login and password, when set, are MLflow basic-auth
credentials. Extras:

- ``tracking_uri``: use this URI as is (for example ``sqlite:///mlflow.db``) instead of the host;
- ``artifacts_destination``: where the server stores proxied artifacts (its ``--artifacts-destination``,
  for example ``s3://mlflow/artifacts``), so that a ``mlflow-artifacts:/`` URI can be written into a
  manifest as the storage location a serving runtime reads directly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from model_lifecycle.hooks.http import connection_url

if TYPE_CHECKING:
    from mlflow import MlflowClient


class MlflowHook(BaseHook):
    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "http"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        connection = self.get_connection(mlflow_conn_id)
        extra = connection.extra_dejson
        self.tracking_uri: str = (extra.get("tracking_uri")
                                  or connection_url(connection, what="the MLflow tracking server"))
        self.artifacts_destination: str | None = extra.get("artifacts_destination")
        self._credentials = {
            "MLFLOW_TRACKING_USERNAME": connection.login,
            "MLFLOW_TRACKING_PASSWORD": connection.password,
        }

    @property
    def ui_url(self) -> str:
        return self.tracking_uri.rstrip("/")

    def credentials_env(self) -> dict[str, str]:
        """MLflow's own environment variables for the credentials, for processes we start."""
        return {name: value for name, value in self._credentials.items() if value}

    def get_client(self) -> MlflowClient:
        from mlflow import MlflowClient

        # The MLflow client reads basic-auth credentials only from the environment; this runs in the
        # task's own process, so setting them here reaches no other task.
        os.environ.update(self.credentials_env())
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def storage_uri(self, artifact_uri: str) -> str:
        """The location a serving runtime reads: proxied ``mlflow-artifacts:`` URIs are mapped onto the
        server's artifacts destination when the connection names it."""
        return artifact_location(artifact_uri, self.artifacts_destination)

    def proxied_uri(self, storage_uri: str) -> str:
        """The inverse of ``storage_uri``: a location under the server's artifacts destination as the
        proxied ``mlflow-artifacts:`` URI, which a worker without the store's credentials reads through
        the tracking server (the same files); any other URI as it is."""
        destination = (self.artifacts_destination or "").rstrip("/")
        if destination and storage_uri.startswith(f"{destination}/"):
            return f"mlflow-artifacts:/{storage_uri.removeprefix(f'{destination}/')}"
        return storage_uri


def artifact_location(artifact_uri: str, artifacts_destination: str | None) -> str:
    """Where the tracking server keeps a proxied ``mlflow-artifacts:`` URI's files, given its
    ``--artifacts-destination``; any other URI (or no destination) as it is."""
    prefix = "mlflow-artifacts:"
    if artifacts_destination and artifact_uri.startswith(prefix):
        path = artifact_uri.removeprefix(prefix).lstrip("/")
        return f"{artifacts_destination.rstrip('/')}/{path}"
    return artifact_uri
