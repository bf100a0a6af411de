"""The retraining DAG end to end with provider ``github``: real Airflow (``dag.test()``, the merge wait
deferred to its trigger), a real MLflow server process, and the GitHub stand-in on loopback, where the
reviewer acts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.dags.test_retrain_cycle import RECORD, aliases, states, versions
from tests.support.airflow_runs import load_dag, manual_run
from tests.support.github_server import FakeGitHub

pytestmark = pytest.mark.usefixtures("airflow_db", "mlflow_server")


def github_spec(write_spec: Any, **gitops: Any) -> Any:
    return write_spec(gitops={"provider": "github", "repository": "acme/gitops",
                              "labels": ["model-promotion"], "reviewers": ["alice"], **gitops})


def stored_by_airflow(dag_id: str) -> str:
    """Everything Airflow keeps of the DAG's runs that a user can read: XCom values and rendered
    template fields."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.scalars(select(XComModel.value).where(XComModel.dag_id == dag_id)).all()
        rendered = session.scalars(select(RenderedTaskInstanceFields.rendered_fields)
                                   .where(RenderedTaskInstanceFields.dag_id == dag_id)).all()
    return json.dumps([xcoms, rendered], default=str)


def test_cycle_promotes_through_a_reviewed_pull_request(write_spec, github: FakeGitHub, mlflow_client: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = github_spec(write_spec)
    github.review_each_new_pull("alice", "merge", delay=3)  # after the wait has deferred
    run = manual_run(load_dag(spec.dag_id))
    assert set(states(run).values()) == {"success"}, states(run)

    [pull] = github.pulls_with()
    assert (pull.state, pull.merged_by, pull.labels) == ("closed", "alice", ["model-promotion"])
    assert pull.head == f"model-lifecycle/models/demo-breast-cancer/{spec.registered_model}-v1"
    assert pull.title == f"Promote {spec.registered_model} v1 to InferenceService models/demo-breast-cancer"
    for evidence in ("| accuracy_score (higher is better) |", "| roc_auc (higher is better) |",
                     "/#/experiments/",
                     f"/#/models/{spec.registered_model}/versions/1",
                     "- Data: `sklearn:breast_cancer`, window",
                     f"- Airflow run: http://localhost:8080/dags/{spec.dag_id}/runs/"):
        assert evidence in pull.body
    assert "model-lifecycle/model-version: '1'" in github.file("main", spec.gitops.manifest_path)

    v1 = versions(mlflow_client, spec)["1"]
    assert v1.current_stage == "Production" and aliases(mlflow_client, spec) == {"production": "1"}
    assert [key for key in RECORD if key not in v1.tags] == []
    assert v1.tags["pr.number"] == str(pull.number)
    assert v1.tags["pr.url"] == f"{github.html}/pull/{pull.number}"
    assert (v1.tags["pr.merged_by"], v1.tags["pr.approved_by"]) == ("alice", "alice")
    assert v1.tags["pr.merge_sha"] == pull.merge_commit_sha == github.branches["main"]
    merged = run.get_task_instance("wait_for_merge").xcom_pull(task_ids="wait_for_merge")
    assert (merged["merge_sha"], merged["merged_by"], merged["approved_by"]) == (
        pull.merge_commit_sha, "alice", ["alice"])

    # The token appears nowhere: not in logs, XCom, rendered templates, the pull request or MLflow.
    output = capsys.readouterr()
    texts = {
        "logs": output.out + output.err,
        "airflow": stored_by_airflow(spec.dag_id),
        "pull requests": json.dumps([pull.__dict__ for pull in github.pulls.values()], default=str),
        "mlflow": json.dumps(v1.tags),
    }
    assert [where for where, text in texts.items() if github.token in text] == []
    assert f"Waiting for the merge of {github.html}/pull/{pull.number}" in texts["logs"]  # logs are there


def test_timeout_fails_and_closes_the_pull_request_with_a_comment(write_spec, github: FakeGitHub,
                                                                  mlflow_client: Any,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = github_spec(write_spec, merge_timeout_hours=0.001, close_on_timeout=True)
    run = manual_run(load_dag(spec.dag_id))
    assert states(run)["wait_for_merge"] == "failed"
    assert run.get_task_instance("wait_for_merge").try_number == 1  # no retries
    message = "was not merged within gitops.merge_timeout_hours (0.001 h)"
    assert message in capsys.readouterr().out
    [pull] = github.pulls_with()
    assert pull.state == "closed" and pull.merged_at is None
    [comment] = pull.comments
    assert comment["body"].startswith(f"Closed by Airflow: {github.html}/pull/{pull.number} {message}")
    assert aliases(mlflow_client, spec) == {"staging": "1"}
