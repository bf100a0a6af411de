"""Pure decisions: the data window, whether a run may promote, the evaluation gate, and names.

No Airflow, no MLflow: every function takes plain values and returns plain values, so the rules that
decide what reaches production are tested on their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from model_lifecycle.specs import MetricGate

BACKFILL_RUN_TYPE = "backfill"
# The Airflow pool, of a single slot, of the promotion tasks that check for and take an InferenceService
# on: they run one at a time (they are short; the long wait for the merge is not in this pool).
PROMOTION_POOL = "model_lifecycle_promotion"
_BRANCH_VERSION = re.compile(r"(?P<stem>.+)-v(?P<version>[0-9]+)")


@dataclass(frozen=True)
class DataWindow:
    """The half-open interval ``[start, end)`` of data a model is trained on (UTC)."""

    start: dt.datetime
    end: dt.datetime

    def as_strings(self) -> tuple[str, str]:
        return self.start.isoformat(), self.end.isoformat()


def data_window(
    *,
    interval_end: dt.datetime | None,
    run_after: dt.datetime,
    lookback_days: int,
) -> DataWindow:
    """The window ends where the run's data interval ends; a run without one (a manual trigger with no
    logical date) trains on the data up to the moment it was triggered. It reaches back
    ``lookback_days``."""
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be at least 1, got {lookback_days}")
    end = (interval_end or run_after).astimezone(dt.UTC)
    return DataWindow(start=end - dt.timedelta(days=lookback_days), end=end)


@dataclass(frozen=True)
class PromotionDecision:
    allowed: bool
    reason: str
    forced: bool = False


def decide_promotion(
    *,
    run_type: str,
    window_end: dt.datetime,
    production_window_end: dt.datetime | None,
    force_reason: str | None,
) -> PromotionDecision:
    """A backfill, or a window that ends before the production version's, trains and evaluates but
    never promotes, unless the trigger form forces it with a reason."""
    blockers = []
    if run_type == BACKFILL_RUN_TYPE:
        blockers.append("this is a backfill run")
    if production_window_end is not None and window_end < production_window_end:
        blockers.append(
            f"its data window ends {window_end.isoformat()}, before the production version's "
            f"({production_window_end.isoformat()})"
        )
    if not blockers:
        return PromotionDecision(allowed=True, reason="latest data; promotion allowed")
    why = " and ".join(blockers)
    if force_reason:
        return PromotionDecision(
            allowed=True, forced=True, reason=f"forced although {why}: {force_reason}"
        )
    return PromotionDecision(
        allowed=False,
        reason=f"promotion blocked because {why}; set force_promotion to a reason to override",
    )


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    value: float
    goal: str
    min: float | None
    max: float | None
    baseline: float | None
    max_regression: float | None
    regression: float | None
    passed: bool
    failures: tuple[str, ...]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[MetricCheck, ...]
    baseline_version: str | None

    @property
    def failures(self) -> list[str]:
        return [failure for check in self.checks for failure in check.failures]

    def summary(self) -> str:
        if self.passed:
            against = f"production v{self.baseline_version}" if self.baseline_version else "no production"
            return f"passed {len(self.checks)} metric checks (baseline: {against})"
        return "rejected: " + "; ".join(self.failures)

    def to_json(self) -> str:
        return json.dumps([asdict(check) for check in self.checks], sort_keys=True)


class MissingMetricError(ValueError):
    """The gate names a metric the candidate run did not log."""


def evaluate_gate(
    gates: Mapping[str, MetricGate],
    metrics: Mapping[str, float],
    *,
    baseline_metrics: Mapping[str, float] | None = None,
    baseline_version: str | None = None,
) -> GateResult:
    """Check every gated metric against its absolute bounds and, when there is a production version,
    against that version's value. A baseline that lacks a metric is not compared on it (an older
    production model may predate the metric); a candidate that lacks one is an error."""
    missing = sorted(set(gates) - set(metrics))
    if missing:
        raise MissingMetricError(
            f"the evaluation gate names metric(s) {missing} but the run logged only {sorted(metrics)}"
        )
    checks = []
    for name, gate in gates.items():
        value = float(metrics[name])
        failures = []
        if math.isnan(value):
            failures.append(f"{name} is NaN")
        if gate.min is not None and not value >= gate.min:
            failures.append(f"{name} {value:.4g} is below the minimum {gate.min:g}")
        if gate.max is not None and not value <= gate.max:
            failures.append(f"{name} {value:.4g} is above the maximum {gate.max:g}")
        baseline = (baseline_metrics or {}).get(name)
        regression = None
        if baseline is not None:
            worse_by = baseline - value if gate.goal == "maximize" else value - baseline
            regression = max(worse_by, 0.0)
            if gate.max_regression is not None and regression > gate.max_regression + 1e-12:
                failures.append(
                    f"{name} {value:.4g} regresses by {regression:.4g} against production "
                    f"v{baseline_version} ({baseline:.4g}); at most {gate.max_regression:g} is allowed"
                )
        checks.append(
            MetricCheck(
                metric=name,
                value=value,
                goal=gate.goal,
                min=gate.min,
                max=gate.max,
                baseline=None if baseline is None else float(baseline),
                max_regression=gate.max_regression,
                regression=regression,
                passed=not failures,
                failures=tuple(failures),
            )
        )
    return GateResult(
        passed=all(check.passed for check in checks),
        checks=tuple(checks),
        baseline_version=baseline_version,
    )


def gate_fingerprint(gates: Mapping[str, MetricGate]) -> str:
    """Identifies a gate configuration, so a stored verdict is reused only for the same gate."""
    canonical = json.dumps({k: v.model_dump() for k, v in sorted(gates.items())}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def promotion_branch_prefix(*, namespace: str, inference_service: str) -> str:
    """What every promotion branch of one InferenceService starts with."""
    return f"model-lifecycle/{namespace}/{inference_service}/"


def promotion_branch(*, namespace: str, inference_service: str, model: str, version: str) -> str:
    """One branch per (InferenceService, model, version): the same inputs always give the same name."""
    prefix = promotion_branch_prefix(namespace=namespace, inference_service=inference_service)
    return f"{prefix}{_slug(model)}-v{version}"


def promotion_lease_key(*, namespace: str, inference_service: str) -> str:
    """The Airflow Variable naming the run that promotes a model to this InferenceService now."""
    return f"model_lifecycle.promotion_lease.{namespace}.{inference_service}"


def full_rollout_branch(*, namespace: str, inference_service: str, model: str, version: str) -> str:
    """The branch that takes a verified canary to all of the traffic."""
    prefix = promotion_branch_prefix(namespace=namespace, inference_service=inference_service)
    return f"{prefix}full-rollout-{_slug(model)}-v{version}"


def revert_branch(*, namespace: str, inference_service: str, model: str, version: str) -> str:
    """The branch that takes the InferenceService back after ``version`` failed its rollout."""
    prefix = promotion_branch_prefix(namespace=namespace, inference_service=inference_service)
    return f"{prefix}revert-{_slug(model)}-v{version}"


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.").lower()


def superseded_by(branch: str, candidates: list[str]) -> list[str]:
    """The promotion branches among ``candidates`` that ``branch`` supersedes: the same InferenceService
    and model, an older version. A proposal of another model is a different decision and stays."""
    newer = _BRANCH_VERSION.fullmatch(branch)
    if newer is None:
        return []
    older = []
    for candidate in candidates:
        match = _BRANCH_VERSION.fullmatch(candidate)
        if match and match["stem"] == newer["stem"] and int(match["version"]) < int(newer["version"]):
            older.append(candidate)
    return older

