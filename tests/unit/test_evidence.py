"""The pull request carries the evidence a reviewer needs."""

from __future__ import annotations

import json

from model_lifecycle.evidence import Evidence, pull_request_body, pull_request_title
from model_lifecycle.policy import Comparison, ScoredModel, evaluate_gate
from model_lifecycle.specs import MetricGate

GATES = {"accuracy_score": MetricGate(greater_is_better=True, threshold=0.9, max_regression=0.02),
         "log_loss": MetricGate(greater_is_better=False, threshold=0.4)}


def evidence(champion: str | None = "4", **overrides: object) -> Evidence:
    scored = [ScoredModel(role="challenger", version="5", metrics={"accuracy_score": 0.95, "log_loss": 0.2})]
    if champion:
        scored.append(ScoredModel(role="champion", version=champion,
                                  metrics={"accuracy_score": 0.96, "log_loss": 0.25}))
    comparison = Comparison(run_id="e5", dataset_digest="a1b2c3d4", window_start="2026-11-01T00:00:00+00:00",
                            window_end="2026-11-15T00:00:00+00:00", scored=tuple(scored))
    gate = evaluate_gate(GATES, comparison)
    values = dict(
        registered_model="fraud", version="5", inference_service="models/fraud",
        storage_uri="s3://b/m-5", window_start="2026-11-01T00:00:00+00:00",
        window_end="2026-11-15T00:00:00+00:00", data_source="s3://data/fraud",
        mlflow_run_url="http://mlflow/#/experiments/1/runs/r5",
        mlflow_version_url="http://mlflow/#/models/fraud/versions/5",
        airflow_run_url="http://airflow/dags/retrain__fraud/runs/scheduled__x",
        decision="latest data; promotion allowed", production_version=champion,
        checks=json.loads(gate.to_json()), roles={model.role: model.version for model in scored},
        gate_summary=gate.summary(), dataset_digest="a1b2c3d4",
        evaluation_window=("2026-11-01T00:00:00+00:00", "2026-11-15T00:00:00+00:00"),
        evaluation_run_url="http://mlflow/#/experiments/1/runs/e5",
    )
    return Evidence(**{**values, **overrides})


def test_title_names_model_version_and_target() -> None:
    assert pull_request_title(evidence()) == "Promote fraud v5 to InferenceService models/fraud"


def test_body_has_both_columns_on_the_same_data_links_and_window() -> None:
    body = pull_request_body(evidence())
    assert ("Scored with MLflow's evaluation on evaluation dataset `a1b2c3d4` (drawn from the data of "
            "2026-11-01T00:00:00+00:00 to 2026-11-15T00:00:00+00:00): http://mlflow/#/experiments/1/runs/e5"
            ) in body
    assert ("| metric | v5 (challenger) | production v4 (champion) | change vs champion | required "
            "| result |") in body
    assert ("| accuracy_score (higher is better) | 0.9500 | 0.9600 | -0.0100 | >= 0.9; at most 0.02 worse "
            "| pass |") in body
    assert "| log_loss (lower is better) | 0.2000 | 0.2500 | +0.0500 | <= 0.4 | pass |" in body
    assert "Gate: passed 2 metric checks on evaluation dataset a1b2c3d4 (against production v4)" in body
    assert "No fresh comparison" not in body
    for text in ("http://mlflow/#/experiments/1/runs/r5", "http://mlflow/#/models/fraud/versions/5",
                 "http://airflow/dags/retrain__fraud/runs/scheduled__x", "`s3://b/m-5`",
                 "window 2026-11-01T00:00:00+00:00 to 2026-11-15T00:00:00+00:00"):
        assert text in body


def test_body_of_a_first_version() -> None:
    body = pull_request_body(evidence(champion=None))
    assert "| metric | v5 (challenger) | change vs champion | required | result |" in body
    assert "(against no production version)" in body and "No fresh comparison" not in body


def test_rollback_body_says_plainly_that_no_fresh_comparison_was_made() -> None:
    """v5 is promoted again while v7 is in production: its only comparison is against v4, of its time."""
    body = pull_request_body(evidence(production_version="7",
                                      no_comparison_reason="the evaluator exited with code 2: no data"))
    assert ("**No fresh comparison was made** (the evaluator exited with code 2: no data): these figures are "
            "from an earlier evaluation of v5, against v4 then; it has not been scored against the current "
            "production v7 on the same data.") in body
    assert "production (none)" not in body
    never = pull_request_body(evidence(production_version="7", checks=(), roles={}))
    assert ("**No fresh comparison was made**: v5 has not been scored against the current production v7."
            in never)
