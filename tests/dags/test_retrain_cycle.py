"""The retraining DAG end to end: real Airflow (``dag.test()`` and real backfill runs), a real MLflow
server process, real git. Every test asserts what ends up in MLflow and in git."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
import yaml

from embedded.gitops_repo import Reviewer, git, promotion_branches
from model_lifecycle.runtimes import RUNTIMES, check_mlmodel
from tests.support.airflow_runs import backfill, drive, load_dag, manual_run, rerun_task

pytestmark = pytest.mark.usefixtures("airflow_db", "mlflow_server")

DAY = dt.datetime(2026, 11, 1, 3, tzinfo=dt.UTC)
PROMOTION_TASKS = ["preflight", "promote_staging", "open_pr", "wait_for_merge", "verify_rollout",
                   "promote_production"]
RECORD = [
    "data.source", "data.window_start", "data.window_end", "airflow.dag_id", "airflow.run_id",
    "airflow.run_url", "evaluation.verdict", "evaluation.summary", "evaluation.checks",
    "evaluation.baseline_version", "evaluation.run_id", "evaluation.dataset_digest",
    "evaluation.scores.challenger", "data.evaluation_digest", "promotion.decision", "pr.url", "pr.branch",
    "pr.merge_sha", "pr.merged_by", "pr.merged_at", "rollout.verified_at", "rollout.detail",
    "promotion.staging_at", "promotion.production_at", "lifecycle.status",
]


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def versions(client: Any, spec: Any) -> dict[str, Any]:
    found = client.search_model_versions(f"name = '{spec.registered_model}'")
    return {version.version: version for version in found}


def aliases(client: Any, spec: Any) -> dict[str, str]:
    return dict(client.get_registered_model(spec.registered_model).aliases)


def manifest_on_main(repo: Path, spec: Any) -> str:
    return git(repo, "show", f"main:{spec.gitops.manifest_path}")


def run_with_reviewer(spec: Any, repo: Path, decide: str | Callable[[str], str] = "merge",
                      dag_id: str | None = None, **kwargs: Any) -> tuple[Any, Reviewer]:
    """A manual run of the model's retraining DAG (or of ``dag_id``) while a reviewer acts on each pull
    request: ``decide`` is the action, or a function of the branch that returns it."""
    reviewer = Reviewer(repo, decide=decide if callable(decide) else lambda _: decide, delay=0.5,
                        say=lambda _: None)
    reviewer.start()
    try:
        run = manual_run(load_dag(dag_id or spec.dag_id), **kwargs)
    finally:
        reviewer.stop()
    return run, reviewer


def lose_the_pickle_then_merge(repo: Path, spec: Any, artifacts_destination: str) -> Callable[[str], str]:
    """A reviewer for a version that passed the preflight and whose pickle the artifact store loses
    before the merge, so that the runtime cannot load what the merged manifest pins. A revert is left
    open, for the test to look at."""

    def decide(branch: str) -> str:
        if "/revert-" in branch:
            return "leave"
        manifest = git(repo, "show", f"{branch}:{spec.gitops.manifest_path}")
        pinned = re.search(r"storageUri: (\S+)", manifest)[1]
        if pinned.startswith("file://"):  # the artifacts destination as the MLflow connection names it
            folder = Path(pinned.removeprefix("file://"))
        else:
            folder = Path(artifacts_destination) / pinned.removeprefix("mlflow-artifacts:/")
        (folder / "model.pkl").unlink()
        return "merge"

    return decide


def test_cycle_promotes_then_the_next_version_archives_it(write_spec, gitops_repo: Path,
                                                          mlflow_client: Any,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec()
    # Two daily intervals: dag.test() keeps one run per logical date, and the first run is cleared later.
    first, reviewer = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert set(states(first).values()) == {"success"}, states(first)
    # the evaluate log shows the gate's figures, not only a count of checks
    output = capsys.readouterr().out
    assert "| metric | v1 (challenger) | change vs champion | required | result |" in output
    row = (r"\| accuracy_score \(higher is better\) \| 0\.\d{4} \| - \| >= 0\.9; at most 0\.03 worse "
           r"\| pass \|")
    assert re.search(row, output)
    branch = f"model-lifecycle/models/demo-breast-cancer/{spec.registered_model}-v1"
    assert reviewer.handled == [(branch, "merge")]

    v1 = versions(mlflow_client, spec)["1"]
    assert v1.current_stage == "Production"
    assert aliases(mlflow_client, spec) == {"production": "1"}
    assert [key for key in RECORD if key not in v1.tags] == []
    assert v1.tags["lifecycle.status"] == "production"
    assert v1.tags["evaluation.verdict"] == "passed"
    assert v1.tags["evaluation.baseline_version"] == "none"
    assert v1.tags["pr.merged_by"] == "Demo Reviewer <reviewer@example.com>"
    assert v1.tags["pr.approved_by"] == "Demo Reviewer <reviewer@example.com>"  # merging is approving
    assert v1.tags["pr.merge_sha"] == git(gitops_repo, "rev-parse", "main").strip()
    assert v1.tags["airflow.run_id"] == first.run_id
    run = mlflow_client.get_run(v1.run_id)
    assert run.data.tags["airflow.dag_id"] == spec.dag_id
    assert run.data.tags["data.window_end"] == v1.tags["data.window_end"]
    assert {"accuracy", "roc_auc", "log_loss"} <= set(run.data.metrics)
    # logged in a form KServe's default MLflow runtime (MLflow 2.19, no skops) reads
    mlmodel = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"{mlflow_client.get_model_version_download_uri(spec.registered_model, '1')}/MLmodel",
        tracking_uri=mlflow_client.tracking_uri)).read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    findings = check_mlmodel(RUNTIMES["kserve-mlserver"], mlmodel, source="v1")
    assert [finding for finding in findings if finding.severity == "error"] == []

    # git: one reviewed commit that changed only the manifest's URI and annotations
    head = v1.tags["pr.head_sha"]
    assert git(gitops_repo, "diff", "--name-only", f"{head}^", head).split() == [spec.gitops.manifest_path]
    changed = [line for line in git(gitops_repo, "diff", "-U0", f"{head}^", head).splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) == 5 and all("storageUri" in line or "model-lifecycle/" in line for line in changed)
    description = git(gitops_repo, "log", "-1", "--format=%B", head)
    assert description.startswith(f"Promote {spec.registered_model} v1 to InferenceService "
                                  "models/demo-breast-cancer")
    assert "| accuracy_score (higher is better) |" in description
    assert f"/#/models/{spec.registered_model}/versions/1" in description
    # the evaluation dataset is the one the trainer held out, and the comparison is an MLflow run
    assert v1.tags["evaluation.dataset_digest"] == v1.tags["data.evaluation_digest"]
    assert v1.tags["evaluation.dataset_digest"] in description
    evaluation = mlflow_client.get_run(v1.tags["evaluation.run_id"])
    assert [d.dataset.digest for d in evaluation.inputs.dataset_inputs] == [v1.tags["data.evaluation_digest"]]
    assert [d.dataset.digest for d in run.inputs.dataset_inputs if any(
        t.value == "evaluation" for t in d.tags)] == [v1.tags["data.evaluation_digest"]]
    assert "# set by the retraining DAG" in manifest_on_main(gitops_repo, spec)  # comments survive
    assert "model-lifecycle/model-version: '1'" in manifest_on_main(gitops_repo, spec)

    second, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY + dt.timedelta(days=1))
    assert set(states(second).values()) == {"success"}, states(second)
    found = versions(mlflow_client, spec)
    assert (found["1"].current_stage, found["2"].current_stage) == ("Archived", "Production")
    assert aliases(mlflow_client, spec) == {"production": "2", "previous-production": "1"}
    assert found["2"].tags["promotion.previous_production_version"] == "1"
    assert found["2"].tags["evaluation.baseline_version"] == "1"
    # v2 and v1 were scored on v2's evaluation dataset, side by side
    scores = {role: json.loads(found["2"].tags[f"evaluation.scores.{role}"])
              for role in ("challenger", "champion")}
    assert (scores["challenger"]["version"], scores["champion"]["version"]) == ("2", "1")
    assert {"accuracy_score", "roc_auc", "log_loss"} <= set(scores["champion"]["metrics"])
    second_pr = git(gitops_repo, "log", "-1", "--format=%B", found["2"].tags["pr.head_sha"])
    assert "| metric | v2 (challenger) | production v1 (champion) | change vs champion |" in second_pr
    assert found["1"].tags["lifecycle.status"] == "archived"
    assert found["1"].tags["promotion.succeeded_by_version"] == "2"
    assert "model-lifecycle/model-version: '2'" in manifest_on_main(gitops_repo, spec)
    assert promotion_branches(gitops_repo) == []

    # clearing the first run's promotion by hand must not roll production back to v1
    dag = load_dag(spec.dag_id)
    for task_id in ("promote_production", "open_pr", "promote_staging"):
        assert rerun_task(dag, first.run_id, task_id) == "failed"
    assert aliases(mlflow_client, spec) == {"production": "2", "previous-production": "1"}
    assert promotion_branches(gitops_repo) == []
    # a rerun of the promotion that changed production changes nothing, and announces nothing again
    assert rerun_task(dag, second.run_id, "promote_production") == "success"

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == f"mlflow-model/{spec.registered_model}/production")
            .order_by(AssetEvent.timestamp)
        ).all()
        assert [(event.extra["version"], event.extra["previous_version"]) for event in events] == [
            ("1", None), ("2", "1")]


def test_clearing_any_task_of_a_finished_run_creates_nothing_twice(write_spec, gitops_repo: Path,
                                                                    mlflow_client: Any) -> None:
    spec = write_spec()
    run, _ = run_with_reviewer(spec, gitops_repo)
    assert set(states(run).values()) == {"success"}, states(run)

    def snapshot() -> dict[str, Any]:
        found = versions(mlflow_client, spec)
        experiment = mlflow_client.get_experiment_by_name(spec.experiment)
        return {
            "versions": sorted(found),
            "stages": {v: version.current_stage for v, version in found.items()},
            "aliases": aliases(mlflow_client, spec),
            "runs": len(mlflow_client.search_runs([experiment.experiment_id])),
            "record": found["1"].tags,
            "main": git(gitops_repo, "rev-parse", "main").strip(),
            "branches": git(gitops_repo, "for-each-ref", "--format=%(refname)", "refs/heads").split(),
        }

    before = snapshot()
    dag = load_dag(spec.dag_id)
    for task_id in dag.task_dict:
        assert rerun_task(dag, run.run_id, task_id) == "success", task_id
        assert snapshot() == before, f"rerunning {task_id} changed MLflow or git"

    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session

    with create_session() as session:  # the whole run cleared, as "Clear DAG run" does
        tis = [ti for ti in run.get_task_instances(session=session)]
        clear_task_instances(tis, session)
    assert set(states(drive(dag, run.run_id)).values()) == {"success"}
    assert snapshot() == before


def test_backfill_trains_and_evaluates_but_never_promotes(write_spec, gitops_repo: Path,
                                                          mlflow_client: Any) -> None:
    spec = write_spec()
    main_before = git(gitops_repo, "rev-parse", "main").strip()
    dag = load_dag(spec.dag_id)
    runs = backfill(dag, start=dt.datetime(2026, 3, 2, 3, tzinfo=dt.UTC),
                    end=dt.datetime(2026, 3, 3, 3, tzinfo=dt.UTC))
    assert [run.run_type for run in runs] == ["backfill", "backfill"]
    for run in runs:
        found = states(run)
        assert {task: found[task] for task in ("plan", "train", "register", "evaluate")} == dict.fromkeys(
            ("plan", "train", "register", "evaluate"), "success")
        assert {found[task] for task in PROMOTION_TASKS} == {"skipped"}
    found = versions(mlflow_client, spec)
    assert sorted(found) == ["1", "2"]
    assert aliases(mlflow_client, spec) == {}
    assert {version.current_stage for version in found.values()} == {"None"}
    for version in found.values():
        assert version.tags["evaluation.verdict"] == "passed"
        assert version.tags["promotion.decision"].startswith("promotion blocked because this is a backfill")
        run_tags = mlflow_client.get_run(version.run_id).data.tags
        assert run_tags["promotion.decision"] == version.tags["promotion.decision"]
    windows = sorted(version.tags["data.window_end"] for version in found.values())
    assert windows == ["2026-03-03T03:00:00+00:00", "2026-03-04T03:00:00+00:00"]  # interval ends
    assert git(gitops_repo, "rev-parse", "main").strip() == main_before
    assert promotion_branches(gitops_repo) == []


def test_older_window_than_production_is_not_promoted(write_spec, gitops_repo: Path,
                                                      mlflow_client: Any) -> None:
    spec = write_spec()
    current, _ = run_with_reviewer(spec, gitops_repo)
    assert states(current)["promote_production"] == "success"
    older = manual_run(load_dag(spec.dag_id), logical_date=dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC))
    found = states(older)
    assert found["evaluate"] == "success" and {found[t] for t in PROMOTION_TASKS} == {"skipped"}
    assert aliases(mlflow_client, spec) == {"production": "1"}
    assert "before the production version's" in versions(mlflow_client, spec)["2"].tags["promotion.decision"]


def test_version_that_fails_the_gate_is_rejected_not_crashed(write_spec, gitops_repo: Path,
                                                             mlflow_client: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # An experiment chosen in the worker's environment (mlflow.set_experiment exports it) is not the
    # trainer's: the spec's experiment is.
    spec = write_spec(evaluation={"metrics": {"accuracy_score": {"threshold": 0.999}}})
    mlflow_client.create_experiment(spec.experiment)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", mlflow_client.create_experiment(f"{spec.name}-elsewhere"))
    run = manual_run(load_dag(spec.dag_id))
    found = states(run)
    assert run.state == "success"
    assert [found[t] for t in ("plan", "train", "register", "score", "evaluate")] == ["success"] * 5
    assert {found[task] for task in PROMOTION_TASKS} == {"skipped"}
    version = versions(mlflow_client, spec)["1"]
    assert version.tags["lifecycle.status"] == "rejected"
    assert version.tags["evaluation.verdict"] == "rejected"
    assert "misses the threshold: at least 0.999 is required" in version.tags["lifecycle.rejected_reason"]
    checks = {check["metric"]: check for check in json.loads(version.tags["evaluation.checks"])}
    assert checks["accuracy_score"]["passed"] is False
    assert aliases(mlflow_client, spec) == {} and version.current_stage == "None"
    assert promotion_branches(gitops_repo) == []


def test_metric_the_run_lacks_fails_evaluation_naming_it(write_spec, mlflow_client: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    gate = {"greater_is_better": True, "threshold": 0.5}
    spec = write_spec(evaluation={"metrics": {"precision_at_10": gate}})
    run = manual_run(load_dag(spec.dag_id))
    found = states(run)
    assert run.state == "failed"
    assert found["evaluate"] == "failed"
    assert {found[task] for task in PROMOTION_TASKS} == {"upstream_failed"}
    problem = "names metric(s) ['precision_at_10'] but the evaluation of the challenger produced only"
    assert problem in capsys.readouterr().out
    assert aliases(mlflow_client, spec) == {}
    version = versions(mlflow_client, spec)["1"]  # and the version says why it went no further
    assert version.tags["evaluation.verdict"] == "error"
    assert problem in version.tags["evaluation.summary"]


@pytest.mark.parametrize(("gitops", "problem"), [
    ({"repository": "no-such-repository"}, "is not a git repository"),
    ({"manifest_path": "models/elsewhere/inferenceservice.yaml"}, "does not exist at main"),
    ({"inference_service": {"name": "someone-else", "namespace": "models"}}, "someone-else"),
])
def test_unusable_gitops_target_fails_before_staging_without_retries(
        gitops: dict[str, Any], problem: str, write_spec, mlflow_client: Any) -> None:
    spec = write_spec(gitops=gitops, retries=3)
    run = manual_run(load_dag(spec.dag_id))
    found = states(run)
    # the preflight, the first step that reads the target, fails; nothing reaches Staging
    assert found["evaluate"] == "success" and found["preflight"] == "failed"
    assert found["promote_staging"] == "upstream_failed"
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "preflight")
    assert ti.try_number == 1  # a spec error: failed at once, not retried
    version = versions(mlflow_client, spec)["1"]
    assert version.current_stage == "None" and aliases(mlflow_client, spec) == {}  # nothing moved
    assert version.tags["lifecycle.status"] == "registered"
    reason = version.tags["promotion.blocked_reason"]
    assert f"gitops of spec {spec.name!r}" in reason and problem in reason


def test_branch_deleted_without_merge_rejects_the_version_at_once(write_spec, gitops_repo: Path,
                                                                  mlflow_client: Any) -> None:
    spec = write_spec()
    run, reviewer = run_with_reviewer(spec, gitops_repo, decide="delete")
    found = states(run)
    assert reviewer.handled and reviewer.handled[0][1] == "delete"
    assert found["wait_for_merge"] == "failed"
    assert {found["verify_rollout"], found["promote_production"]} == {"upstream_failed"}
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "wait_for_merge")
    assert ti.try_number == 1  # failed at once, no retries
    version = versions(mlflow_client, spec)["1"]
    assert version.tags["lifecycle.status"] == "rejected"
    assert version.tags["lifecycle.rejected_reason"].startswith("pull request closed without merge")
    assert version.current_stage == "Staging"
    assert aliases(mlflow_client, spec) == {"staging": "1"}
    assert "model-lifecycle/model-version" not in manifest_on_main(gitops_repo, spec)


def test_merge_timeout_fails_with_a_clear_message(write_spec, gitops_repo: Path, mlflow_client: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(gitops={"merge_timeout_hours": 0.001})
    run = manual_run(load_dag(spec.dag_id))
    assert states(run)["wait_for_merge"] == "failed"
    assert "was not merged within gitops.merge_timeout_hours (0.001 h)" in capsys.readouterr().out
    assert aliases(mlflow_client, spec) == {"staging": "1"}
    assert len(promotion_branches(gitops_repo)) == 1  # left open for a later decision
