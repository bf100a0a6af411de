"""Champion against challenger on the same data: real Airflow, a real MLflow server, the trainer and
the evaluator as the training backend runs them, data that drifts. Every test asserts on MLflow state."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from embedded.gitops_repo import git
from tests.dags.test_retrain_cycle import aliases, run_with_reviewer, states, versions
from tests.support.airflow_runs import load_dag, manual_run, rerun_task

pytestmark = pytest.mark.usefixtures("airflow_db", "mlflow_server")

DAY = dt.datetime(2026, 11, 1, 3, tzinfo=dt.UTC)
LATER = DAY + dt.timedelta(days=14)  # the next window: no row in common with the first
# Two features; far out on the diagonal, every rule of these streams agrees on the class.
SMOKE = {"instances": [[4.0, 4.0], [-4.0, -4.0]], "expected_predictions": [1, 0]}
# The gate of these tests: accuracy may regress by at most 0.03 against the champion, as in the demo.
GATE = {"accuracy_score": {"threshold": 0.5, "max_regression": 0.03},
        "roc_auc": {"threshold": 0.5, "max_regression": 1.0}, "log_loss": {"threshold": 5.0}}
Rule = Callable[[np.ndarray], np.ndarray]


def x0_positive(x: np.ndarray) -> np.ndarray:
    return x[:, 0] > 0


def x1_positive(x: np.ndarray) -> np.ndarray:
    return x[:, 1] > 0


def shifted_boundary(x: np.ndarray) -> np.ndarray:
    return x[:, 0] + x[:, 1] > 0.5


def write_stream(path: Path, segments: list[tuple[dt.datetime, dt.datetime, Rule, float]]) -> str:
    """A CSV data source, a row every ten minutes; in each segment the class follows ``rule``, with that
    share of labels flipped."""
    rng = np.random.default_rng(7)
    frames = []
    for start, end, rule, noise in segments:
        times = pd.date_range(start, end, freq="10min", inclusive="left")
        features = rng.normal(size=(len(times), 2))
        labels = rule(features) ^ (rng.random(len(times)) < noise)
        frames.append(pd.DataFrame({"timestamp": times.map(dt.datetime.isoformat), "x0": features[:, 0],
                                    "x1": features[:, 1], "target": labels.astype(int)}))
    pd.concat(frames).to_csv(path, index=False)
    return f"csv:{path}"


def stream_spec(write_spec: Callable[..., Any], source: str, **overrides: Any) -> Any:
    return write_spec(data={"source": source}, rollout={"smoke_request": SMOKE},
                      evaluation={"metrics": GATE, **overrides})


def training_accuracy(client: Any, version: Any) -> float:
    """What the former gate compared: the accuracy the version's training run cross-validated."""
    return client.get_run(version.run_id).data.metrics["accuracy"]


def scores(version: Any, role: str) -> dict[str, Any]:
    return json.loads(version.tags[f"evaluation.scores.{role}"])


def evaluation_runs(client: Any, spec: Any) -> list[Any]:
    experiment = client.get_experiment_by_name(spec.experiment)
    return client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`evaluation.model` = '{spec.registered_model}'")


def test_after_drift_the_better_model_on_todays_data_is_promoted(write_spec, gitops_repo: Path,
                                                                 mlflow_client: Any, tmp_path: Path) -> None:
    source = write_stream(tmp_path / "drift.csv", [(DAY - dt.timedelta(days=14), DAY, x0_positive, 0.02),
                                                   (DAY, LATER, shifted_boundary, 0.15)])
    spec = stream_spec(write_spec, source)
    first, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert set(states(first).values()) == {"success"}, states(first)
    v1 = versions(mlflow_client, spec)["1"]
    # a first version: nothing to compare with, judged on the thresholds
    assert v1.tags["evaluation.baseline_version"] == "none" and "evaluation.scores.champion" not in v1.tags
    assert "(against no production version)" in v1.tags["evaluation.summary"]

    second, _ = run_with_reviewer(spec, gitops_repo, logical_date=LATER)
    assert set(states(second).values()) == {"success"}, states(second)
    v1, v2 = (versions(mlflow_client, spec)[number] for number in ("1", "2"))
    assert aliases(mlflow_client, spec) == {"production": "2", "previous-production": "1"}
    challenger, champion = scores(v2, "challenger")["metrics"], scores(v2, "champion")["metrics"]
    assert scores(v2, "champion")["version"] == "1"
    # The data changed: both models score lower than v1 did on its own window...
    assert training_accuracy(mlflow_client, v2) < training_accuracy(mlflow_client, v1)
    assert champion["accuracy_score"] < training_accuracy(mlflow_client, v1)
    # ...so the former gate, v2's cross-validated accuracy against v1's, would have rejected v2,
    assert training_accuracy(mlflow_client, v1) - training_accuracy(mlflow_client, v2) > 0.03
    # while on the same data v2 is the better model, and passed.
    assert challenger["accuracy_score"] > champion["accuracy_score"] + 0.1
    assert v2.tags["evaluation.verdict"] == "passed"
    assert v2.tags["evaluation.dataset_digest"] == v2.tags["data.evaluation_digest"]


def test_a_candidate_worse_on_the_same_data_is_rejected_though_it_cross_validated_better(
        write_spec, gitops_repo: Path, mlflow_client: Any, tmp_path: Path) -> None:
    # v1 learns x0 on noisy data; v2 trains on a stretch where x1 decides, but the most recent days,
    # held out for evaluation, follow x0 again.
    source = write_stream(tmp_path / "turn.csv", [
        (DAY - dt.timedelta(days=14), DAY, x0_positive, 0.2),
        (DAY, DAY + dt.timedelta(days=11), x1_positive, 0.0),
        (DAY + dt.timedelta(days=11), LATER, x0_positive, 0.0),
    ])
    spec = stream_spec(write_spec, source)
    first, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert set(states(first).values()) == {"success"}, states(first)
    second, _ = run_with_reviewer(spec, gitops_repo, logical_date=LATER)
    v1, v2 = (versions(mlflow_client, spec)[number] for number in ("1", "2"))
    assert training_accuracy(mlflow_client, v2) > training_accuracy(mlflow_client, v1) + 0.1
    assert states(second)["evaluate"] == "success" and states(second)["promote_staging"] == "skipped"
    assert v2.tags["lifecycle.status"] == "rejected"
    assert "accuracy_score" in v2.tags["lifecycle.rejected_reason"]
    assert "worse than production v1's" in v2.tags["lifecycle.rejected_reason"]
    assert scores(v2, "challenger")["metrics"]["accuracy_score"] < scores(v2, "champion")["metrics"][
        "accuracy_score"]
    assert aliases(mlflow_client, spec) == {"production": "1"}


def test_a_rerun_of_score_and_evaluate_reuses_the_comparison(write_spec, gitops_repo: Path,
                                                             mlflow_client: Any) -> None:
    spec = write_spec()
    run, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert set(states(run).values()) == {"success"}, states(run)
    before = versions(mlflow_client, spec)["1"].tags
    [comparison] = [found for found in evaluation_runs(mlflow_client, spec)
                    if "mlflow.parentRunId" not in found.data.tags]
    dag = load_dag(spec.dag_id)
    assert rerun_task(dag, run.run_id, "score") == "success"
    assert rerun_task(dag, run.run_id, "evaluate") == "success"
    after = versions(mlflow_client, spec)["1"].tags
    assert [found.info.run_id for found in evaluation_runs(mlflow_client, spec)
            if "mlflow.parentRunId" not in found.data.tags] == [comparison.info.run_id]
    assert after["evaluation.run_id"] == comparison.info.run_id
    assert {key: after[key] for key in before if key.startswith("evaluation.")} == {
        key: value for key, value in before.items() if key.startswith("evaluation.")}


@pytest.mark.parametrize("rule", ["thresholds_only", "block"])
def test_a_champion_that_cannot_be_loaded(rule: str, write_spec, gitops_repo: Path, mlflow_client: Any,
                                          mlflow_server: Any) -> None:
    spec = write_spec(evaluation={"if_champion_unavailable": rule})
    first, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY)
    assert set(states(first).values()) == {"success"}, states(first)
    # v1's artifacts are lost (collected, or a store that forgot them): it can no longer be loaded
    location = mlflow_client.get_model_version_download_uri(spec.registered_model, "1")
    folder = Path(mlflow_server.artifacts_destination) / location.removeprefix("mlflow-artifacts:/")
    (folder / "model.pkl").unlink()

    second, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY + dt.timedelta(days=1))
    v2 = versions(mlflow_client, spec)["2"]
    assert "production v1 could not be scored" in v2.tags["evaluation.champion_problem"]
    assert "model.pkl" in scores(v2, "champion")["error"]
    assert states(second)["score"] == "success" and states(second)["evaluate"] == "success"
    if rule == "thresholds_only":
        assert set(states(second).values()) == {"success"}, states(second)
        assert "thresholds only: production v1 could not be scored" in v2.tags["evaluation.summary"]
        assert aliases(mlflow_client, spec)["production"] == "2"
        # the reviewer read why there is no champion column
        body = git(gitops_repo, "log", "-1", "--format=%B", v2.tags["pr.head_sha"])
        assert "| production v1 (champion) |" in body
        assert "thresholds only: production v1 could not be scored" in body
    else:
        assert v2.tags["lifecycle.status"] == "rejected"
        assert "evaluation.if_champion_unavailable is 'block'" in v2.tags["lifecycle.rejected_reason"]
        assert aliases(mlflow_client, spec) == {"production": "1"}


def test_a_champion_that_trained_on_the_evaluation_rows_is_not_scored_on_them(
        write_spec, gitops_repo: Path, mlflow_client: Any) -> None:
    spec = write_spec()
    run_with_reviewer(spec, gitops_repo, logical_date=DAY + dt.timedelta(days=3))
    assert aliases(mlflow_client, spec) == {"production": "1"}
    # an earlier interval, run late: production v1 trained on the days this run holds out
    older = manual_run(load_dag(spec.dag_id), logical_date=DAY)
    assert states(older)["score"] == "success" and states(older)["evaluate"] == "success"
    v2 = versions(mlflow_client, spec)["2"]
    assert "evaluation.scores.challenger" in v2.tags
    champion = scores(v2, "champion")
    assert champion["version"] == "1" and champion["error"].startswith("it trained on rows from")
    assert "production v1 could not be scored" in v2.tags["evaluation.champion_problem"]
    assert v2.tags["evaluation.verdict"] == "passed"  # on the thresholds, as the spec's rule says
    assert aliases(mlflow_client, spec) == {"production": "1"}
