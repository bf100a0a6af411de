"""Configuration of the ``mlflow_gc`` DAG: ``include/mlflow_gc.yaml`` (``$MODEL_LIFECYCLE_GC_CONFIG``
points elsewhere), validated when the DAG file is parsed, errors naming the file and the field.

Schedule, default threshold, batch size and where the collection runs (``local``: a child process of
the Airflow task; ``kubernetes``: a pod with the backend store's Secret) are chosen here, never by
editing DAG code.

Pure module: no Airflow imports.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from model_lifecycle.gc.decisions import parse_older_than
from model_lifecycle.specs import (
    PROJECT_ROOT,
    K8sName,
    NonEmptyStr,
    Resources,
    SpecError,
    Strict,
    cron_expression,
    describe_problem,
    read_mapping,
)

CONFIG_ENV = "MODEL_LIFECYCLE_GC_CONFIG"


class SecretKey(Strict):
    name: K8sName
    key: NonEmptyStr


class KubernetesRunner(Strict):
    """The pod that collects: the MLflow image with this package's gc module (include/mlflow_gc/)."""

    image: NonEmptyStr
    namespace: K8sName
    # MLFLOW_BACKEND_STORE_URI comes from this Secret's key (a secretKeyRef: never in the pod spec).
    backend_store_secret: SecretKey
    # Secrets whose keys become environment variables too: artifact store and tracking credentials.
    env_from_secrets: list[K8sName] = Field(default_factory=list)
    # The tracking server as the pod reaches it; default: the mlflow_default connection's URI.
    tracking_uri: NonEmptyStr | None = None
    service_account: K8sName | None = None
    resources: Resources = Field(default_factory=Resources)
    conn_id: NonEmptyStr = "kubernetes_default"
    startup_timeout_seconds: int = Field(default=300, ge=10, le=3600)


class GcConfig(Strict):
    schedule: NonEmptyStr = "0 2 * * 0"
    start_date: dt.date = dt.date(2026, 1, 1)
    older_than: NonEmptyStr = "30d"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    timeout_minutes: int = Field(default=240, ge=1, le=24 * 60)
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay_minutes: int = Field(default=5, ge=1, le=24 * 60)
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesRunner | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        return cron_expression(schedule)

    @field_validator("older_than")
    @classmethod
    def _duration(cls, older_than: str) -> str:
        try:
            parse_older_than(older_than)
        except ValueError as error:
            raise ValueError(str(error).removeprefix("older_than: ")) from None
        return older_than

    @model_validator(mode="after")
    def _runner_configured(self) -> GcConfig:
        if self.runner == "kubernetes" and self.kubernetes is None:
            raise ValueError("runner is kubernetes but the kubernetes section is missing")
        return self


def config_path() -> Path:
    configured = os.environ.get(CONFIG_ENV)
    return Path(configured) if configured else PROJECT_ROOT / "include" / "mlflow_gc.yaml"


def load_gc_config(path: Path | None = None) -> GcConfig:
    path = path or config_path()
    if not path.is_file():
        raise SpecError(path, [f"the mlflow_gc configuration file does not exist (set {CONFIG_ENV})"])
    try:
        return GcConfig.model_validate(read_mapping(path))
    except ValidationError as error:
        raise SpecError(path, [describe_problem(problem) for problem in error.errors()]) from None
