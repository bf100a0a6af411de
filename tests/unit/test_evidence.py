"""The pull request carries the evidence a reviewer needs."""

from __future__ import annotations

import json

from model_lifecycle.evidence import Evidence, pull_request_body, pull_request_title
from model_lifecycle.policy import evaluate_gate
from model_lifecycle.specs import MetricGate


def evidence(**overrides: object) -> Evidence:
    gate = evaluate_gate({"accuracy": MetricGate(min=0.9, max_regression=0.02),
                          "log_loss": MetricGate(goal="minimize", max=0.4)},
                         {"accuracy": 0.95, "log_loss": 0.2},
                         baseline_metrics={"accuracy": 0.96, "log_loss": 0.25}, baseline_version="4")
    values = dict(
        registered_model="fraud", version="5", inference_service="models/fraud",
        storage_uri="s3://b/m-5", window_start="2026-11-01T00:00:00+00:00",
        window_end="2026-11-15T00:00:00+00:00", data_source="s3://data/fraud",
        checks=json.loads(gate.to_json()), baseline_version="4",
        mlflow_run_url="http://mlflow/#/experiments/1/runs/r5",
        mlflow_version_url="http://mlflow/#/models/fraud/versions/5",
        airflow_run_url="http://airflow/dags/retrain__fraud/runs/scheduled__x",
        decision="latest data; promotion allowed",
    )
    return Evidence(**{**values, **overrides})


def test_title_names_model_version_and_target() -> None:
    assert pull_request_title(evidence()) == "Promote fraud v5 to InferenceService models/fraud"


def test_body_has_metric_table_links_and_window() -> None:
    body = pull_request_body(evidence())
    assert "| metric | candidate v5 | bounds | production (v4) | regression (max) | result |" in body
    assert "| accuracy (maximize) | 0.9500 | >= 0.9 | 0.9600 | 0.0100 (0.02) | pass |" in body
    assert "| log_loss (minimize) | 0.2000 | <= 0.4 | 0.2500 | 0.0000 | pass |" in body
    for text in ("http://mlflow/#/experiments/1/runs/r5", "http://mlflow/#/models/fraud/versions/5",
                 "http://airflow/dags/retrain__fraud/runs/scheduled__x", "`s3://b/m-5`",
                 "window 2026-11-01T00:00:00+00:00 to 2026-11-15T00:00:00+00:00"):
        assert text in body


def test_body_without_production() -> None:
    body = pull_request_body(evidence(baseline_version=None))
    assert "production (none)" in body


def test_body_compared_with_the_production_of_now() -> None:
    body = pull_request_body(evidence(production_version="4"))
    assert "| production (v4) |" in body and "No fresh comparison" not in body


def test_rollback_body_says_plainly_that_no_fresh_comparison_was_made() -> None:
    """v5 is promoted again while v7 is in production: its figures are against v4, of its own time."""
    body = pull_request_body(evidence(production_version="7"))
    assert ("**No fresh comparison was made**: these figures are v5's own evaluation from when it was "
            "trained, against v4 then; it has not been scored against the current production v7 on the "
            "same data.") in body
    assert "| metric | candidate v5 | bounds | production when evaluated (v4) | regression (max) |" in body
    first = pull_request_body(evidence(production_version="7", baseline_version=None))
    assert "against no production version then" in first and "production (none)" not in first
