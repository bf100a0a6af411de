"""The preflight before review: a version the declared serving runtime cannot load is rejected with the
runtime's own words, and no branch or pull request is made. Real Airflow, the real MLflow server, real
git, and the real MLServer of ``kserve-mlserver`` (``runtime_server``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from embedded.gitops_repo import git, promotion_branches
from model_lifecycle.runtime_server import runtime_error
from tests.dags.test_on_call import PROMOTE
from tests.dags.test_retrain_cycle import states
from tests.support.airflow_runs import load_dag, manual_run


def test_the_runtime_error_is_its_error_records_then_its_exceptions_each_once() -> None:
    log = "\n".join([
        "2026-12-03 08:01:02,003 [mlserver] INFO - Loading model demo",
        "2026-12-03 08:01:03,004 [mlserver.parallel] ERROR - Some of the models failed to load during "
        "startup!",
        "Traceback (most recent call last):",
        '  File "/venv/lib/python3.11/site-packages/mlflow/sklearn/__init__.py", line 1, in _load',
        "mlflow.exceptions.MlflowException: Unrecognized serialization format: skops.",
        "mlflow.exceptions.MlflowException: Unrecognized serialization format: skops.",
    ])
    assert runtime_error(log) == (
        "Some of the models failed to load during startup!: "
        "mlflow.exceptions.MlflowException: Unrecognized serialization format: skops.")
    assert runtime_error("INFO - all well\n") == ""


def register(mlflow_server: Any, spec: Any, log_model: Callable[[], Any],
             monkeypatch: pytest.MonkeyPatch) -> str:
    """A version of the spec's model from a run that ``log_model`` logs, as an older trainer left it.
    The tracking URI comes from the environment for this test only: a URI set in the process would
    outlive it."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_experiment(spec.experiment)
    with mlflow.start_run():
        info = log_model()
    return mlflow.register_model(info.model_uri, spec.registered_model).version


def assert_rejected_before_review(spec: Any, version: str, gitops_repo: Path, mlflow_client: Any,
                                  error: str) -> dict[str, str]:
    main_before = git(gitops_repo, "rev-parse", "main").strip()
    run = manual_run(load_dag(PROMOTE), conf={"model": spec.name, "version": version,
                                              "reason": "on-call promotes an older version"})
    found = states(run)
    assert run.state == "failed"
    assert found["resolve"] == "success" and found["preflight"] == "failed"
    assert {found[task] for task in ("open_pr", "wait_for_merge", "verify_rollout",
                                     "promote_production")} == {"upstream_failed"}
    assert promotion_branches(gitops_repo) == []
    assert git(gitops_repo, "rev-parse", "main").strip() == main_before
    tags = mlflow_client.get_model_version(spec.registered_model, version).tags
    assert tags["preflight.verdict"] == "rejected" and tags["lifecycle.status"] == "rejected"
    assert tags["preflight.runtime"].startswith("kserve-mlserver")
    assert error in tags["preflight.detail"] and error in tags["lifecycle.rejected_reason"]
    assert "No pull request is opened" in tags["preflight.detail"]
    return tags


@pytest.mark.usefixtures("airflow_db")
def test_a_model_the_runtime_cannot_load_is_rejected_with_its_error(
        write_spec, gitops_repo: Path, mlflow_server: Any, mlflow_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc

    from tests.support.foreign_model import ForeignModel

    spec = write_spec()
    version = register(mlflow_server, spec, lambda: mlflow.pyfunc.log_model(
        name="model", python_model=ForeignModel()), monkeypatch)
    # Its MLmodel is fine; only loading it in MLServer shows it depends on code the runtime lacks.
    assert_rejected_before_review(spec, version, gitops_repo, mlflow_client, "No module named 'tests'")


@pytest.mark.usefixtures("airflow_db")
def test_a_model_whose_mlmodel_the_runtime_cannot_read_is_rejected_naming_the_field(
        write_spec, gitops_repo: Path, mlflow_server: Any, mlflow_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    spec = write_spec()
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    version = register(mlflow_server, spec, lambda: mlflow.sklearn.log_model(
        model, name="model", serialization_format="skops"), monkeypatch)
    tags = assert_rejected_before_review(spec, version, gitops_repo, mlflow_client,
                                         "flavors.sklearn.serialization_format 'skops'")
    assert "serialization_format='cloudpickle'" in tags["preflight.detail"]  # and says what to change
