"""What on call does: promote or roll back from the trigger form, revert a failed rollout, hear about it,
follow the links, and never have two runs race on one InferenceService. Real Airflow, the real MLflow
server, real git; notifications land on a webhook and an SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from embedded.gitops_repo import REVIEWER, Reviewer, git, promotion_branches
from model_lifecycle.policy import promotion_lease_key
from model_lifecycle.specs import PROJECT_ROOT
from tests.dags.test_retrain_cycle import (
    DAY,
    aliases,
    lose_the_pickle_then_merge,
    manifest_on_main,
    run_with_reviewer,
    states,
    versions,
)
from tests.support.airflow_runs import load_dag, manual_run
from tests.support.receivers import MailReceiver, WebhookReceiver

pytestmark = pytest.mark.usefixtures("airflow_db", "mlflow_server")

PROMOTE = "promote_model_version"
WEBHOOK = {"webhook": {"connection_id": "oncall_webhook"}}


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_ONCALL_WEBHOOK",
                           json.dumps({"conn_type": "http", "host": receiver.url}))
        yield receiver


def pins(manifest: str, version: str) -> bool:
    return f"model-lifecycle/model-version: '{version}'" in manifest


def ui_links(run: Any, task_id: str) -> dict[str, str | None]:
    """The task's extra links as the Airflow UI resolves them: from the serialized DAG and the XComs the
    task left."""
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    with create_session() as session:
        task = DBDagBag().get_dag_for_run(run, session=session).get_task(task_id)
        ti = run.get_task_instance(task_id, session=session)
        return {name: task.get_extra_links(ti, name) for name in task.extra_links}


def promote(spec: Any, conf: dict) -> Any:
    """A run of the promotion DAG, without a reviewer."""
    return manual_run(load_dag(PROMOTE), conf={"model": spec.name, "reason": "on-call drill, ticket 42",
                                               **conf})


def two_promoted_versions(spec: Any, repo: Path) -> None:
    for day in (DAY, DAY + dt.timedelta(days=1)):
        run, _ = run_with_reviewer(spec, repo, logical_date=day)
        assert set(states(run).values()) == {"success"}, states(run)


def test_rolling_back_restores_the_previous_version_end_to_end(write_spec, gitops_repo: Path,
                                                               mlflow_client: Any, mlflow_server: Any,
                                                               webhook: WebhookReceiver) -> None:
    spec = write_spec(notifications=WEBHOOK)
    two_promoted_versions(spec, gitops_repo)
    assert aliases(mlflow_client, spec) == {"production": "2", "previous-production": "1"}
    webhook.received.clear()

    reason = "v2 answers slowly under production traffic"
    run, reviewer = run_with_reviewer(spec, gitops_repo, dag_id=PROMOTE, conf={
        "model": spec.name, "version": "previous-production", "reason": reason})
    assert set(states(run).values()) == {"success"}, states(run)
    branch = f"model-lifecycle/models/demo-breast-cancer/{spec.registered_model}-v1"
    assert reviewer.handled == [(branch, "merge")]  # v1's branch, proposed again and merged again

    found = versions(mlflow_client, spec)
    assert (found["1"].current_stage, found["2"].current_stage) == ("Production", "Archived")
    assert aliases(mlflow_client, spec) == {"production": "1", "previous-production": "2"}
    assert pins(manifest_on_main(gitops_repo, spec), "1")
    record = found["1"].tags
    assert record["promotion.reason"] == reason
    assert record["promotion.requested_by"]
    assert record["promotion.decision"] == f"requested by {record['promotion.requested_by']}: {reason}"
    assert (record["promotion.dag_id"], record["promotion.run_id"]) == (PROMOTE, run.run_id)
    assert record["promotion.airflow_run_url"].endswith(f"/dags/{PROMOTE}/runs/{quote(run.run_id, safe='')}")
    assert record["pr.merge_sha"] == git(gitops_repo, "rev-parse", "main").strip()
    assert found["2"].tags["lifecycle.status"] == "archived"
    # v1 was scored against the production of then, v2, on fresh data, and the pull request shows it
    body = git(gitops_repo, "log", "-1", "--format=%B", f"{record['pr.merge_sha']}^2")
    assert "| metric | v1 (challenger) | production v2 (champion) | change vs champion |" in body
    assert "No fresh comparison" not in body
    fresh = mlflow_client.get_run(record["evaluation.run_id"])
    assert fresh.data.tags["airflow.dag_id"] == PROMOTE
    assert json.loads(fresh.data.tags["evaluation.models"]) == {
        "challenger": f"models:/{spec.registered_model}/1", "champion": f"models:/{spec.registered_model}/2"}
    # the freshest window: the model's lookback up to the moment the rollback was triggered
    assert fresh.data.tags["data.evaluation_window_end"] > found["2"].tags["data.window_end"]

    # the on-call engineer heard of the pull request and of the promotion, with the links to open
    version_url = f"{mlflow_server.url}/#/models/{spec.registered_model}/versions/1"
    run_url = f"{mlflow_server.url}/#/experiments/"
    texts = webhook.texts()
    assert [text.split("]")[0] for text in texts] == ["[pr_opened", "[promoted"]
    for text in texts:
        assert f"Model version: {version_url}" in text
        assert f"MLflow run: {run_url}" in text and found["1"].run_id in text
        assert f"Pull request: {record['pr.url']}" in text
        assert f"Airflow run: {record['promotion.airflow_run_url']}" in text
    assert "is in Production; v2 is archived as previous-production" in texts[1]

    # the buttons in the Airflow UI open the same version, run and pull request
    links = ui_links(run, "promote_production")
    assert links["Model version"] == version_url
    assert links["MLflow run"].endswith(f"/runs/{found['1'].run_id}")
    assert links["Pull request"] == record["pr.url"]
    # and the MLflow run links back to the Airflow run that trained it
    assert "/dags/" in mlflow_client.get_run(found["1"].run_id).data.tags["airflow.run_url"]

    # rolling back twice returns to the version rolled back from
    again, _ = run_with_reviewer(spec, gitops_repo, dag_id=PROMOTE, conf={
        "model": spec.name, "version": "previous-production", "reason": "the slowness was the network"})
    assert set(states(again).values()) == {"success"}, states(again)
    assert aliases(mlflow_client, spec) == {"production": "2", "previous-production": "1"}
    assert pins(manifest_on_main(gitops_repo, spec), "2")


@pytest.mark.parametrize(("registered", "version", "message"), [
    (False, "previous-production", "model: {model} is not registered in MLflow"),
    (True, "7", "version: {model} has no version 7"),
    (True, "canary", "version: {model} has no alias 'canary' (its aliases: none)"),
])
def test_promoting_what_does_not_exist_fails_naming_it(write_spec, gitops_repo: Path, mlflow_client: Any,
                                                       capsys: pytest.CaptureFixture[str], registered: bool,
                                                       version: str, message: str) -> None:
    spec = write_spec()
    if registered:
        mlflow_client.create_registered_model(spec.registered_model)
    main_before = git(gitops_repo, "rev-parse", "main").strip()
    run = promote(spec, {"version": version})
    found = states(run)
    assert found["resolve"] == "failed" and found["open_pr"] == "upstream_failed"
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "resolve")
    assert ti.try_number == 1  # no retries: asking again cannot make it exist
    assert message.format(model=spec.registered_model) in capsys.readouterr().out
    assert git(gitops_repo, "rev-parse", "main").strip() == main_before
    assert promotion_branches(gitops_repo) == []


def test_failed_rollout_proposes_the_revert_and_fails_with_both_links(
        write_spec, gitops_repo: Path, mlflow_server: Any, mlflow_client: Any, webhook: WebhookReceiver,
        capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(notifications=WEBHOOK)
    first, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert states(first)["promote_production"] == "success"

    webhook.received.clear()
    capsys.readouterr()

    run, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY + dt.timedelta(days=1),
                               decide=lose_the_pickle_then_merge(
                                   gitops_repo, spec, mlflow_server.artifacts_destination))
    found = states(run)
    assert (found["verify_rollout"], found["promote_production"]) == ("failed", "upstream_failed")
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "verify_rollout")
    assert ti.try_number == 1  # no retries: retrying cannot change what was merged

    v2 = versions(mlflow_client, spec)["2"].tags
    revert = f"model-lifecycle/models/demo-breast-cancer/revert-{spec.registered_model}-v2"
    assert v2["lifecycle.status"] == "rollout_failed"
    assert "does not load in kserve-mlserver" in v2["rollout.failure"]
    assert "model.pkl" in v2["rollout.failure"]  # in the runtime's own words
    assert v2["rollout.revert"].endswith(revert)
    assert aliases(mlflow_client, spec) == {"production": "1", "staging": "2"}
    assert pins(manifest_on_main(gitops_repo, spec), "2")  # what was merged is still there...
    assert revert in promotion_branches(gitops_repo)  # ...and the way back waits for its review
    reverted = git(gitops_repo, "show", f"{revert}:{spec.gitops.manifest_path}")
    assert pins(reverted, "1") and "Revert InferenceService models/demo-breast-cancer" in git(
        gitops_repo, "log", "-1", "--format=%B", revert)

    output = capsys.readouterr().out
    assert (f"failed: {v2['rollout.failure']}. The change: {v2['pr.url']}. The revert: "
            f"{v2['rollout.revert']}.") in output
    opened, text = webhook.texts()
    assert opened.startswith(f"[pr_opened] {spec.registered_model} v2")
    assert text.startswith(f"[rollout_failed] {spec.registered_model} v2")
    assert f"revert: {v2['rollout.revert']}" in text and f"Pull request: {v2['pr.url']}" in text

    # merging the revert brings v1 back to the InferenceService
    git(gitops_repo, "merge", "--no-ff", "--quiet", "-m", f"Merge {revert}", revert, env=REVIEWER)
    assert pins(manifest_on_main(gitops_repo, spec), "1")


def test_rejections_are_notified_by_webhook_and_email(write_spec, gitops_repo: Path, mlflow_client: Any,
                                                     mlflow_server: Any, webhook: WebhookReceiver,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with MailReceiver() as mail:
        monkeypatch.setenv("AIRFLOW_CONN_ONCALL_SMTP", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": mail.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"}}))
        spec = write_spec(evaluation={"metrics": {"accuracy_score": {"threshold": 0.999}}}, notifications={
            **WEBHOOK, "email": {"to": ["oncall@example.com"], "connection_id": "oncall_smtp"}})
        run = manual_run(load_dag(spec.dag_id))
        assert states(run)["evaluate"] == "success" and states(run)["promote_staging"] == "skipped"

        version_url = f"{mlflow_server.url}/#/models/{spec.registered_model}/versions/1"
        [text] = webhook.texts()
        assert text.startswith(f"[rejected] {spec.registered_model} v1 for models/demo-breast-cancer")
        assert "The evaluation gate rejected" in text
        assert "misses the threshold: at least 0.999 is required" in text
        assert f"Model version: {version_url}" in text
        [message] = mail.received
        assert message.recipients == ["oncall@example.com"] and message.sender == "airflow@example.com"
        assert message.subject == f"[rejected] {spec.registered_model} v1 for models/demo-breast-cancer"
        assert f'<a href="{version_url}">' in message.html

        # a pull request closed without merge is news too
        closed = write_spec(notifications=WEBHOOK)
        webhook.received.clear()
        run, _ = run_with_reviewer(closed, gitops_repo, decide="delete")
        assert states(run)["wait_for_merge"] == "failed"
        assert [text.split("]")[0] for text in webhook.texts()] == ["[pr_opened", "[pr_closed"]
        assert "is rejected: pull request closed without merge" in webhook.texts()[1]


def test_two_promotions_for_one_inference_service_run_one_after_the_other(write_spec, gitops_repo: Path,
                                                                          mlflow_client: Any,
                                                                          tmp_path: Path) -> None:
    """A retraining run (in a process of its own) proposes v2 while on call asks for v1 again: the
    rollback waits for the retraining run to end, then writes its change on top of the merged v2."""
    from airflow.models.variable import Variable

    spec = write_spec()
    first, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert states(first)["promote_production"] == "success"

    reviewer = Reviewer(gitops_repo, delay=4, say=lambda _: None)
    reviewer.start()
    log = tmp_path / "retraining.log"  # a file, not a pipe: nobody reads a pipe while the rollback runs
    with log.open("w") as output:
        retraining = subprocess.Popen(
            [sys.executable, "-m", "tests.support.airflow_runs", spec.dag_id,
             (DAY + dt.timedelta(days=1)).isoformat()],
            cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}"},
            stdout=output, stderr=subprocess.STDOUT)
    try:
        isvc = spec.gitops.inference_service
        key = promotion_lease_key(namespace=isvc.namespace, inference_service=isvc.name)
        deadline = time.monotonic() + 120

        def holder() -> tuple[str, str] | None:
            lease = Variable.get(key, default_var=None, deserialize_json=True)
            return (lease["dag_id"], lease["run_id"]) if lease else None

        while holder() in (None, (spec.dag_id, first.run_id)):  # until the retraining run takes it
            assert retraining.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, "the retraining run never took the InferenceService on"
            time.sleep(0.2)
        rollback = promote(spec, {"version": "1"})
        retraining.wait(timeout=120)
    finally:
        retraining.kill()
        reviewer.stop()
    assert retraining.returncode == 0, log.read_text()[-5000:]
    assert set(states(rollback).values()) == {"success"}, states(rollback)

    found = versions(mlflow_client, spec)
    # v2 went live first; the rollback's change was written on top of v2's merge, and won
    assert aliases(mlflow_client, spec) == {"production": "1", "previous-production": "2"}
    v2_merge, v1_change = found["2"].tags["pr.merge_sha"], found["1"].tags["pr.head_sha"]
    assert git(gitops_repo, "merge-base", "--is-ancestor", v2_merge, v1_change) == ""
    assert pins(manifest_on_main(gitops_repo, spec), "1")
    assert [branch for branch, _ in reviewer.handled] == [
        f"model-lifecycle/models/demo-breast-cancer/{spec.registered_model}-v2",
        f"model-lifecycle/models/demo-breast-cancer/{spec.registered_model}-v1"]
