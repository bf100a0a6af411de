"""Pure decisions: the data window, whether a run may promote, the evaluation gate, and names.

No Airflow, no MLflow: every function takes plain values and returns plain values, so the rules that
decide what reaches production are tested on their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal

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


CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class ScoredModel:
    """One model's figures on the evaluation dataset, or why it could not be scored."""

    role: str
    version: str
    metrics: Mapping[str, float]
    error: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The models of one evaluation run, scored on the same evaluation dataset."""

    run_id: str
    dataset_digest: str
    window_start: str
    window_end: str
    scored: tuple[ScoredModel, ...]
    experiment_id: str = ""

    def role(self, role: str) -> ScoredModel | None:
        return next((model for model in self.scored if model.role == role), None)

    @property
    def challenger(self) -> ScoredModel:
        found = self.role(CHALLENGER)
        if found is None:
            raise ValueError(f"evaluation run {self.run_id} scored no {CHALLENGER}")
        return found

    @property
    def champion(self) -> ScoredModel | None:
        return self.role(CHAMPION)


@dataclass(frozen=True)
class MetricCheck:
    """One metric: the challenger's and the champion's value on the same data, what was required and
    whether it held. ``others`` are the further versions scored beside them (role to value)."""

    metric: str
    greater_is_better: bool
    value: float
    champion: float | None
    threshold: float | None
    min_absolute_change: float | None
    min_relative_change: float | None
    max_regression: float | None
    passed: bool
    failures: tuple[str, ...]
    others: Mapping[str, float] = field(default_factory=dict)

    @property
    def change(self) -> float | None:
        """How much better than the champion (negative: worse), in the metric's units."""
        if self.champion is None:
            return None
        return self.value - self.champion if self.greater_is_better else self.champion - self.value


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[MetricCheck, ...]
    champion_version: str | None
    dataset_digest: str
    # Why the champion's figures were not compared (it could not be loaded), when they were not.
    champion_problem: str | None = None
    blocked: str | None = None

    @property
    def failures(self) -> list[str]:
        return [*([self.blocked] if self.blocked else []),
                *(failure for check in self.checks for failure in check.failures)]

    def summary(self) -> str:
        if not self.passed:
            return "rejected: " + "; ".join(self.failures)
        if self.champion_version is None:
            against = "no production version"
        elif self.champion_problem:
            against = f"thresholds only: production v{self.champion_version} could not be scored"
        else:
            against = f"production v{self.champion_version}"
        return (f"passed {len(self.checks)} metric checks on evaluation dataset {self.dataset_digest} "
                f"(against {against})")

    def to_json(self) -> str:
        return json.dumps([{**asdict(check), "others": dict(check.others), "change": check.change}
                           for check in self.checks], sort_keys=True)


class MissingMetricError(ValueError):
    """The gate names a metric the challenger's evaluation did not produce."""


def evaluate_gate(
    gates: Mapping[str, MetricGate],
    comparison: Comparison,
    *,
    if_champion_unavailable: str = "thresholds_only",
) -> GateResult:
    """The gate on the challenger's and the champion's figures on the same evaluation dataset.

    Per metric it decides as MLflow's ``mlflow.validate_evaluation_results`` does with a
    ``MetricThreshold`` (mlflow/models/evaluation/validation.py, ``_validate``, MLflow 3.17): the
    threshold is inclusive, the changes are measured in ``Decimal``, a relative change against a
    champion of 0 falls back to "better by 1e-10", and a change required against a champion that lacks
    the metric fails. ``max_regression`` is decided the same way as ``min_absolute_change``, with the
    allowance in place of the requirement. Without a champion (none in production, or one that could
    not be scored: ``if_champion_unavailable`` says whether that blocks) only the thresholds are
    checked, as MLflow does without a baseline."""
    challenger = comparison.challenger
    missing = sorted(set(gates) - set(challenger.metrics))
    if missing:
        raise MissingMetricError(
            f"the evaluation gate names metric(s) {missing} but the evaluation of the challenger produced "
            f"only {sorted(challenger.metrics)}"
        )
    champion = comparison.champion
    champion_version = champion.version if champion else None
    problem = blocked = None
    if champion is not None and champion.error is not None:
        problem = f"production v{champion.version} could not be scored: {champion.error}"
        if if_champion_unavailable == "block":
            blocked = f"{problem} (evaluation.if_champion_unavailable is 'block')"
        champion = None
    others = [model for model in comparison.scored
              if model.role not in (CHALLENGER, CHAMPION) and model.error is None]
    checks = []
    for name, gate in gates.items():
        value = float(challenger.metrics[name])
        baseline = None if champion is None else champion.metrics.get(name)
        checks.append(MetricCheck(
            metric=name, greater_is_better=gate.greater_is_better, value=value,
            champion=None if baseline is None else float(baseline), threshold=gate.threshold,
            min_absolute_change=gate.min_absolute_change, min_relative_change=gate.min_relative_change,
            max_regression=gate.max_regression,
            failures=tuple(metric_failures(name, gate, value, baseline, compared=champion is not None,
                                           champion_version=champion_version)),
            passed=False,
            others={model.role: model.metrics[name] for model in others if name in model.metrics},
        ))
    checks = [replace(check, passed=not check.failures) for check in checks]
    return GateResult(
        passed=blocked is None and all(check.passed for check in checks), checks=tuple(checks),
        champion_version=champion_version, dataset_digest=comparison.dataset_digest,
        champion_problem=problem, blocked=blocked,
    )


def metric_failures(name: str, gate: MetricGate, value: float, baseline: float | None, *, compared: bool,
                    champion_version: str | None) -> list[str]:
    """What fails for one metric; empty when it passes. The comparisons are MLflow's (see
    ``evaluate_gate``)."""
    better = operator.ge if gate.greater_is_better else operator.le
    toward = operator.add if gate.greater_is_better else operator.sub
    than = "at least" if gate.greater_is_better else "at most"
    failures = []
    if gate.threshold is not None and not better(value, gate.threshold):
        failures.append(f"{name} {value:.4g} misses the threshold: {than} {gate.threshold:g} is required")
    changes = (gate.min_absolute_change, gate.min_relative_change, gate.max_regression)
    if not compared or all(change is None for change in changes):
        return failures
    production = f"production v{champion_version}"
    if baseline is None:
        return [*failures, f"{name} is missing from the evaluation of {production}: no change can be "
                           "measured"]
    if gate.min_absolute_change is not None and not better(
            Decimal(value), Decimal(toward(baseline, gate.min_absolute_change))):
        failures.append(f"{name} {value:.4g} is not better than {production}'s {baseline:.4g} by "
                        f"{gate.min_absolute_change:g} (min_absolute_change)")
    if gate.min_relative_change is not None:
        if baseline == 0:
            short = not better(Decimal(value), Decimal(toward(baseline, 1e-10)))
        else:
            short = (value - baseline if gate.greater_is_better else baseline - value) / abs(baseline) < (
                gate.min_relative_change)
        if short:
            failures.append(f"{name} {value:.4g} is not better than {production}'s {baseline:.4g} by "
                            f"{gate.min_relative_change:.0%} (min_relative_change)")
    if gate.max_regression is not None:
        allowed = operator.sub if gate.greater_is_better else operator.add
        if not better(Decimal(value), Decimal(allowed(baseline, gate.max_regression))):
            failures.append(f"{name} {value:.4g} is worse than {production}'s {baseline:.4g} by more than "
                            f"{gate.max_regression:g} (max_regression)")
    return failures


def gate_fingerprint(gates: Mapping[str, MetricGate], *, if_champion_unavailable: str,
                     evaluation_run_id: str) -> str:
    """Identifies a verdict: the gate, and the evaluation run it judged. A stored verdict is reused
    only for the same pair."""
    canonical = json.dumps({"gates": {k: v.model_dump() for k, v in sorted(gates.items())},
                            "if_champion_unavailable": if_champion_unavailable,
                            "evaluation_run_id": evaluation_run_id}, sort_keys=True)
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

