"""The pure rules: data window, backfill safety, the evaluation gate, branch names."""

from __future__ import annotations

import datetime as dt
import json

import mlflow
import pytest
from mlflow.models import MetricThreshold

from model_lifecycle.policy import (
    Comparison,
    MissingMetricError,
    ScoredModel,
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
    "accuracy_score": MetricGate(greater_is_better=True, threshold=0.9, max_regression=0.02),
    "log_loss": MetricGate(greater_is_better=False, threshold=0.4, max_regression=0.05),
}


def comparison(challenger: dict[str, float], champion: dict[str, float] | None = None, *,
               champion_error: str | None = None, **others: dict[str, float]) -> Comparison:
    scored = [ScoredModel(role="challenger", version="5", metrics=challenger)]
    if champion is not None or champion_error:
        scored.append(ScoredModel(role="champion", version="4", metrics=champion or {}, error=champion_error))
    scored += [ScoredModel(role=role, version="3", metrics=metrics) for role, metrics in others.items()]
    return Comparison(run_id="r1", dataset_digest="d1g35t", window_start="s", window_end="e",
                      scored=tuple(scored))


def test_gate_passes_within_threshold_and_allowed_regression() -> None:
    result = evaluate_gate(GATES, comparison({"accuracy_score": 0.93, "log_loss": 0.2, "extra": 1.0},
                                             {"accuracy_score": 0.94, "log_loss": 0.17}))
    assert result.passed and result.failures == []
    assert result.summary() == "passed 2 metric checks on evaluation dataset d1g35t (against production v4)"
    checks = {check.metric: check for check in result.checks}
    assert checks["accuracy_score"].change == pytest.approx(-0.01)
    assert checks["log_loss"].change == pytest.approx(-0.03)  # worse by 0.03, lower being better


def test_gate_fails_on_threshold_and_on_regression_in_the_metric_direction() -> None:
    result = evaluate_gate(GATES, comparison({"accuracy_score": 0.85, "log_loss": 0.3},
                                             {"accuracy_score": 0.95, "log_loss": 0.2}))
    assert not result.passed
    assert result.failures == [
        "accuracy_score 0.85 misses the threshold: at least 0.9 is required",
        "accuracy_score 0.85 is worse than production v4's 0.95 by more than 0.02 (max_regression)",
        "log_loss 0.3 is worse than production v4's 0.2 by more than 0.05 (max_regression)",
    ]
    assert result.summary().startswith("rejected: accuracy_score 0.85 misses the threshold")


def test_nan_never_passes() -> None:
    gates = {"accuracy_score": MetricGate(greater_is_better=True, threshold=0.5)}
    assert not evaluate_gate(gates, comparison({"accuracy_score": float("nan")})).passed


def test_first_version_is_judged_on_the_thresholds_alone() -> None:
    gates = {**GATES, "roc_auc": MetricGate(greater_is_better=True, min_absolute_change=0.01)}
    result = evaluate_gate(gates, comparison({"accuracy_score": 0.91, "log_loss": 0.39, "roc_auc": 0.5}))
    assert result.passed and result.champion_version is None
    assert result.summary().endswith("(against no production version)")


def test_champion_that_cannot_be_scored_leaves_the_thresholds_or_blocks() -> None:
    broken = comparison({"accuracy_score": 0.95, "log_loss": 0.2}, champion_error="OSError: model.pkl gone")
    result = evaluate_gate(GATES, broken)
    assert result.passed and result.champion_version == "4"
    assert result.champion_problem == "production v4 could not be scored: OSError: model.pkl gone"
    assert "thresholds only: production v4 could not be scored" in result.summary()
    assert all(check.champion is None for check in result.checks)
    blocked = evaluate_gate(GATES, broken, if_champion_unavailable="block")
    assert not blocked.passed
    assert blocked.failures == ["production v4 could not be scored: OSError: model.pkl gone "
                                "(evaluation.if_champion_unavailable is 'block')"]


def test_champion_lacking_a_metric_fails_a_required_change_as_mlflow_does() -> None:
    scored = comparison({"accuracy_score": 0.95, "log_loss": 0.2}, {"accuracy_score": 0.95})
    result = evaluate_gate(GATES, scored)
    assert result.failures == ["log_loss is missing from the evaluation of production v4: no change can be "
                               "measured"]


def test_metric_missing_from_the_challengers_evaluation_is_named() -> None:
    with pytest.raises(MissingMetricError, match=r"names metric\(s\) \['log_loss'\] but the evaluation of "
                       r"the challenger produced only \['accuracy_score', 'f1_score'\]"):
        evaluate_gate(GATES, comparison({"accuracy_score": 0.95, "f1_score": 0.9}))


def test_gate_result_serialises_every_check_with_every_role() -> None:
    result = evaluate_gate(GATES, comparison({"accuracy_score": 0.95, "log_loss": 0.2},
                                             {"accuracy_score": 0.9, "log_loss": 0.25},
                                             **{"previous-production": {"accuracy_score": 0.8}}))
    checks = json.loads(result.to_json())
    assert [check["metric"] for check in checks] == ["accuracy_score", "log_loss"]
    assert checks[0]["threshold"] == 0.9 and checks[0]["champion"] == 0.9 and checks[0]["passed"] is True
    assert checks[0]["others"] == {"previous-production": 0.8} and checks[1]["others"] == {}
    assert checks[0]["change"] == pytest.approx(0.05)


def test_gate_fingerprint_changes_with_the_gate_and_the_evaluation() -> None:
    def fingerprint(gates: dict[str, MetricGate], run: str = "r1", rule: str = "thresholds_only") -> str:
        return gate_fingerprint(gates, if_champion_unavailable=rule, evaluation_run_id=run)

    assert fingerprint(GATES) == fingerprint(dict(reversed(list(GATES.items()))))
    stricter = {**GATES, "accuracy_score": MetricGate(greater_is_better=True, threshold=0.95)}
    assert fingerprint(stricter) != fingerprint(GATES)
    assert fingerprint(GATES, run="r2") != fingerprint(GATES)
    assert fingerprint(GATES, rule="block") != fingerprint(GATES)


def _mlflow_passes(threshold: MetricThreshold, candidate: float, baseline: float | None) -> bool:
    from mlflow.models import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    baseline_result = None if baseline is None else EvaluationResult(metrics={"m": baseline}, artifacts={})
    try:
        mlflow.validate_evaluation_results({"m": threshold}, EvaluationResult(metrics={"m": candidate},
                                                                              artifacts={}), baseline_result)
    except ModelValidationFailedException:
        return False
    return True


VALUES = [-1.5, -0.2, 0.0, 1e-11, 0.1, 0.3, 0.5, 0.50000001, 0.7, 0.9, 1.0, 2.0]


@pytest.mark.parametrize("greater_is_better", [True, False])
@pytest.mark.parametrize(("threshold", "min_absolute_change", "min_relative_change"), [
    (0.5, None, None), (None, 0.1, None), (None, None, 0.1), (None, None, 0.0), (0.3, 0.2, 0.5),
    (0.7, 1e-9, None), (-0.2, None, 1.0),
])
def test_the_gate_decides_as_mlflow_validate_evaluation_results(
        greater_is_better: bool, threshold: float | None, min_absolute_change: float | None,
        min_relative_change: float | None) -> None:
    """Every pair of challenger and champion values, through MLflow's own validator and through ours."""
    gate = MetricGate(greater_is_better=greater_is_better, threshold=threshold,
                      min_absolute_change=min_absolute_change, min_relative_change=min_relative_change)
    mlflow_threshold = MetricThreshold(threshold=threshold, min_absolute_change=min_absolute_change,
                                       min_relative_change=min_relative_change,
                                       greater_is_better=greater_is_better)
    disagreements = []
    for candidate in VALUES:
        for baseline in [*VALUES, None]:
            champion = None if baseline is None else {"m": baseline}
            ours = evaluate_gate({"m": gate}, comparison({"m": candidate}, champion)).passed
            if baseline is None:  # without a champion, MLflow's decision on the threshold alone
                alone = MetricThreshold(threshold=threshold, greater_is_better=greater_is_better) if (
                    threshold is not None) else None
                expected = alone is None or _mlflow_passes(alone, candidate, None)
            else:
                expected = _mlflow_passes(mlflow_threshold, candidate, baseline)
            if ours != expected:
                disagreements.append((candidate, baseline, ours, expected))
    assert disagreements == []


@pytest.mark.parametrize(("greater_is_better", "challenger", "champion", "passed"), [
    (True, 0.90, 0.92, True), (True, 0.90, 0.9200001, False), (True, 0.95, 0.92, True),
    (False, 0.22, 0.20, True), (False, 0.2200001, 0.20, False), (False, 0.10, 0.20, True),
])
def test_max_regression_allows_the_challenger_that_much_worse(greater_is_better: bool, challenger: float,
                                                              champion: float, passed: bool) -> None:
    gate = MetricGate(greater_is_better=greater_is_better, max_regression=0.02)
    result = evaluate_gate({"m": gate}, comparison({"m": challenger}, {"m": champion}))
    assert result.passed is passed


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
