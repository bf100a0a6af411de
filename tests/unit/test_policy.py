"""The pure rules: data window, backfill safety, the evaluation gate, branch names."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from model_lifecycle.policy import (
    MissingMetricError,
    data_window,
    decide_promotion,
    evaluate_gate,
    gate_fingerprint,
    promotion_branch,
    promotion_branch_prefix,
    superseded_by,
)
from model_lifecycle.specs import MetricGate

UTC = dt.UTC
END = dt.datetime(2026, 11, 20, 3, tzinfo=UTC)


def test_window_ends_at_the_data_interval_and_reaches_back_the_lookback() -> None:
    window = data_window(interval_end=END, run_after=END + dt.timedelta(hours=5), lookback_days=14)
    assert (window.start, window.end) == (END - dt.timedelta(days=14), END)
    assert window.as_strings() == ("2026-11-06T03:00:00+00:00", "2026-11-20T03:00:00+00:00")


def test_window_of_a_run_without_data_interval_ends_when_it_was_triggered() -> None:
    triggered = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    window = data_window(interval_end=None, run_after=triggered, lookback_days=1)
    assert window.end == triggered and window.end.tzinfo == UTC
    assert window.start == triggered - dt.timedelta(days=1)


def test_window_rejects_a_lookback_below_one_day() -> None:
    with pytest.raises(ValueError, match="lookback_days must be at least 1, got 0"):
        data_window(interval_end=END, run_after=END, lookback_days=0)


@pytest.mark.parametrize("run_type", ["scheduled", "manual", "asset_triggered"])
def test_newer_or_equal_window_may_promote(run_type: str) -> None:
    for production_end in (None, END - dt.timedelta(days=1), END):
        decision = decide_promotion(run_type=run_type, window_end=END,
                                    production_window_end=production_end, force_reason=None)
        assert decision.allowed and not decision.forced


def test_backfill_never_promotes_unless_forced() -> None:
    blocked = decide_promotion(run_type="backfill", window_end=END, production_window_end=None,
                               force_reason=None)
    assert not blocked.allowed
    assert "backfill" in blocked.reason and "force_promotion" in blocked.reason
    forced = decide_promotion(run_type="backfill", window_end=END, production_window_end=None,
                              force_reason="re-train after the label fix of 2026-11")
    assert forced.allowed and forced.forced
    assert forced.reason.endswith("re-train after the label fix of 2026-11")


def test_window_older_than_production_never_promotes_unless_forced() -> None:
    newer = END + dt.timedelta(days=1)
    blocked = decide_promotion(run_type="manual", window_end=END, production_window_end=newer,
                               force_reason=None)
    assert not blocked.allowed
    assert "before the production version's (2026-11-21T03:00:00+00:00)" in blocked.reason
    both = decide_promotion(run_type="backfill", window_end=END, production_window_end=newer,
                            force_reason=None)
    assert "backfill run and its data window ends" in both.reason


GATES = {
    "accuracy": MetricGate(min=0.9, max_regression=0.02),
    "log_loss": MetricGate(goal="minimize", max=0.4, max_regression=0.05),
}


def test_gate_passes_within_bounds_and_allowed_regression() -> None:
    result = evaluate_gate(GATES, {"accuracy": 0.93, "log_loss": 0.2, "extra": 1.0},
                           baseline_metrics={"accuracy": 0.94, "log_loss": 0.17}, baseline_version="4")
    assert result.passed and result.failures == []
    assert result.summary() == "passed 2 metric checks (baseline: production v4)"
    checks = {check.metric: check for check in result.checks}
    assert checks["accuracy"].regression == pytest.approx(0.01)
    assert checks["log_loss"].regression == pytest.approx(0.03)


def test_improvement_is_not_a_regression() -> None:
    result = evaluate_gate(GATES, {"accuracy": 0.99, "log_loss": 0.1},
                           baseline_metrics={"accuracy": 0.9, "log_loss": 0.3}, baseline_version="1")
    assert result.passed
    assert all(check.regression == 0 for check in result.checks)


def test_gate_fails_on_bounds_and_on_regression_in_the_metric_direction() -> None:
    result = evaluate_gate(GATES, {"accuracy": 0.85, "log_loss": 0.3},
                           baseline_metrics={"accuracy": 0.95, "log_loss": 0.2}, baseline_version="7")
    assert not result.passed
    assert result.failures == [
        "accuracy 0.85 is below the minimum 0.9",
        "accuracy 0.85 regresses by 0.1 against production v7 (0.95); at most 0.02 is allowed",
        "log_loss 0.3 regresses by 0.1 against production v7 (0.2); at most 0.05 is allowed",
    ]
    assert result.summary().startswith("rejected: accuracy 0.85 is below the minimum 0.9")


def test_nan_never_passes() -> None:
    result = evaluate_gate({"accuracy": MetricGate(min=0.5)}, {"accuracy": float("nan")})
    assert not result.passed
    assert "accuracy is NaN" in result.failures


def test_without_production_only_absolute_bounds_apply() -> None:
    result = evaluate_gate(GATES, {"accuracy": 0.91, "log_loss": 0.39})
    assert result.passed and result.baseline_version is None
    assert result.summary() == "passed 2 metric checks (baseline: no production)"


def test_baseline_lacking_a_metric_is_not_compared_on_it() -> None:
    result = evaluate_gate(GATES, {"accuracy": 0.95, "log_loss": 0.2},
                           baseline_metrics={"accuracy": 0.95}, baseline_version="2")
    assert result.passed
    assert {c.metric: c.regression for c in result.checks} == {"accuracy": 0.0, "log_loss": None}


def test_metric_missing_from_the_run_is_named() -> None:
    with pytest.raises(MissingMetricError, match=r"names metric\(s\) \['log_loss'\] but the run logged "
                                                 r"only \['accuracy', 'f1'\]"):
        evaluate_gate(GATES, {"accuracy": 0.95, "f1": 0.9})


def test_gate_result_serialises_every_check() -> None:
    result = evaluate_gate(GATES, {"accuracy": 0.95, "log_loss": 0.2})
    checks = json.loads(result.to_json())
    assert [check["metric"] for check in checks] == ["accuracy", "log_loss"]
    assert checks[0]["min"] == 0.9 and checks[0]["passed"] is True


def test_gate_fingerprint_changes_with_the_gate() -> None:
    assert gate_fingerprint(GATES) == gate_fingerprint(dict(reversed(list(GATES.items()))))
    stricter = {**GATES, "accuracy": MetricGate(min=0.95, max_regression=0.02)}
    assert gate_fingerprint(stricter) != gate_fingerprint(GATES)


def test_branch_name_is_deterministic_and_a_valid_ref() -> None:
    name = promotion_branch(namespace="models", inference_service="fraud", model="Fraud Model/EU",
                            version="12")
    assert name == "model-lifecycle/models/fraud/fraud-model-eu-v12"
    assert name == promotion_branch(namespace="models", inference_service="fraud",
                                    model="Fraud Model/EU", version="12")


def test_a_newer_version_supersedes_older_ones_of_the_same_model_and_inference_service() -> None:
    prefix = promotion_branch_prefix(namespace="models", inference_service="fraud")
    assert promotion_branch(namespace="models", inference_service="fraud", model="fraud",
                            version="3").startswith(prefix)
    open_branches = [f"{prefix}fraud-v1", f"{prefix}fraud-v2", f"{prefix}fraud-v10", f"{prefix}fraud-eu-v1",
                     f"{prefix}fraud-v3", "model-lifecycle/models/other/fraud-v1", "feature/tweak"]
    assert superseded_by(f"{prefix}fraud-v3", open_branches) == [f"{prefix}fraud-v1", f"{prefix}fraud-v2"]
    assert superseded_by("feature/tweak", open_branches) == []
