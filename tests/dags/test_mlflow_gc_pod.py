"""Runner ``kubernetes`` of the mlflow_gc DAG: the real KubernetesPodOperator builds the pod it would
create (no cluster needed to build it); these tests assert that pod. Running it for real needs only
a Kubernetes API server behind the ``kubernetes_default`` connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.airflow_runs import load_dag

BACKEND_STORE_URI = "postgresql://mlflow:s3cret@db.mlflow.svc:5432/mlflow"
CONFIG = {
    "schedule": "30 1 * * 6",
    "batch_size": 250,
    "runner": "kubernetes",
    "kubernetes": {
        "image": "registry.example.com/ml-platform/mlflow-gc:3.17.2",
        "namespace": "mlflow",
        "backend_store_secret": {"name": "mlflow-backend-store", "key": "uri"},
        "env_from_secrets": ["mlflow-s3-credentials"],
        "service_account": "mlflow-gc",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    },
}
FORM = {"older_than": "30d", "dry_run": False, "experiment_ids": [], "all_workspaces": False}


@pytest.fixture
def pod_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def parse(**overrides: Any) -> Any:
        config = tmp_path / "mlflow_gc.yaml"
        config.write_text(yaml.safe_dump({**CONFIG, "kubernetes": {**CONFIG["kubernetes"], **overrides}}))
        monkeypatch.setenv("MODEL_LIFECYCLE_GC_CONFIG", str(config))
        return load_dag("mlflow_gc")

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "http://mlflow.mlflow.svc.cluster.local:5000")
    # The secret's value exists only in the cluster; were it in the environment, it must not leak.
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", BACKEND_STORE_URI)
    return parse


def pod_of(task: Any, params: dict[str, Any]) -> Any:
    task.prepare_pod({"params": params})
    return task.build_pod_request_obj(None, dry_run=True)


def test_collect_pod_runs_the_gc_module_with_the_backend_store_secret(pod_dag: Any) -> None:
    dag = pod_dag()
    assert dag.timetable.expression == "30 1 * * 6"
    collect = dag.task_dict["collect"]
    assert type(collect).__name__ == "KubernetesMlflowGcOperator"
    assert collect.kubernetes_conn_id == "kubernetes_default"
    collect.report = {"cutoff_ms": 1767225600000}

    pod = pod_of(collect, {**FORM, "experiment_ids": ["3", "7"], "all_workspaces": True})

    assert pod.metadata.namespace == "mlflow"
    assert pod.metadata.name.startswith("mlflow-gc-collect")
    assert pod.metadata.labels["app.kubernetes.io/name"] == "mlflow-gc"
    assert pod.spec.service_account_name == "mlflow-gc"
    assert pod.spec.restart_policy == "Never"
    base, sidecar = pod.spec.containers
    assert sidecar.name == "airflow-xcom-sidecar"  # the result comes back as the task's XCom
    assert base.image == "registry.example.com/ml-platform/mlflow-gc:3.17.2"
    assert base.command == ["python", "-m", "model_lifecycle.gc.collector"]
    assert base.args == ["collect", "--cutoff-ms", "1767225600000", "--batch-size", "250",
                         "--experiment-ids", "3,7", "--all-workspaces",
                         "--output", "/airflow/xcom/return.json"]
    env = {variable.name: variable for variable in base.env}
    assert set(env) == {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_TRACKING_URI"}
    store = env["MLFLOW_BACKEND_STORE_URI"]
    assert store.value is None
    assert (store.value_from.secret_key_ref.name, store.value_from.secret_key_ref.key) == (
        "mlflow-backend-store", "uri")
    assert env["MLFLOW_TRACKING_URI"].value == "http://mlflow.mlflow.svc.cluster.local:5000"
    assert [source.secret_ref.name for source in base.env_from] == ["mlflow-s3-credentials"]
    assert base.resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert base.resources.limits == {"memory": "1Gi"}
    assert "s3cret" not in json.dumps(pod.to_dict(), default=str)


def test_report_pod_and_dry_run(pod_dag: Any) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    dag = pod_dag(tracking_uri="http://mlflow:5000")
    report = dag.task_dict["report"]
    base = pod_of(report, {**FORM, "older_than": "1d2h"}).spec.containers[0]
    assert base.args == ["report", "--older-than", "1d2h", "--output", "/airflow/xcom/return.json"]
    assert {v.name: v.value for v in base.env}["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"

    collect = dag.task_dict["collect"]
    collect.report = {"cutoff_ms": 1}
    with pytest.raises(AirflowSkipException, match="dry run"):
        collect.prepare_pod({"params": {**FORM, "dry_run": True}})
