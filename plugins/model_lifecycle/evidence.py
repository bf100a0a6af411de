"""The pull request a reviewer approves: a title that says what changes and a body with the evidence,
above all the version scored beside the production version on the same evaluation dataset.

Pure module: it formats what the caller has gathered from MLflow and Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_lifecycle.policy import CHALLENGER, CHAMPION


@dataclass(frozen=True)
class Evidence:
    registered_model: str
    version: str
    inference_service: str
    storage_uri: str
    window_start: str
    window_end: str
    data_source: str
    mlflow_run_url: str
    mlflow_version_url: str
    airflow_run_url: str
    decision: str
    # The version in production when the change is proposed (None: none is).
    production_version: str | None = None
    # The latest comparison of the version: the gate's checks on it, each role's version, its dataset.
    checks: Sequence[Mapping[str, Any]] = ()
    roles: Mapping[str, str] = field(default_factory=dict)
    gate_summary: str | None = None
    dataset_digest: str | None = None
    evaluation_window: tuple[str, str] | None = None
    evaluation_run_url: str | None = None
    # Why the latest attempt to compare the version with the current production failed, if it did.
    no_comparison_reason: str | None = None

    @property
    def compared_with_production(self) -> bool:
        """Whether the figures compare the version with what is in production now, on the same data."""
        if not self.checks:
            return False
        champion = self.roles.get(CHAMPION)
        return champion == self.production_version or (champion is None
                                                       and self.production_version in (None, self.version))


def pull_request_title(evidence: Evidence) -> str:
    return (
        f"Promote {evidence.registered_model} v{evidence.version} "
        f"to InferenceService {evidence.inference_service}"
    )


def pull_request_body(evidence: Evidence) -> str:
    return f"""\
Points InferenceService `{evidence.inference_service}` at `{evidence.registered_model}` \
version {evidence.version}. Merging this change is the approval: the GitOps agent applies it, \
Airflow verifies the rollout and then marks the version Production.

{_comparison(evidence)}

- Data: `{evidence.data_source}`, window {evidence.window_start} to {evidence.window_end}
- Storage URI: `{evidence.storage_uri}`
- MLflow run: {evidence.mlflow_run_url}
- MLflow model version: {evidence.mlflow_version_url}
- Airflow run: {evidence.airflow_run_url}
- Promotion: {evidence.decision}
"""


def _comparison(evidence: Evidence) -> str:
    now = (f"the current production v{evidence.production_version}" if evidence.production_version
           else "production (none now)")
    why = f" ({evidence.no_comparison_reason})" if evidence.no_comparison_reason else ""
    if not evidence.checks:
        return (f"**No fresh comparison was made**{why}: v{evidence.version} has not been scored against "
                f"{now}.")
    table = metric_table(evidence.checks, evidence.roles)
    start, end = evidence.evaluation_window or ("unknown", "unknown")
    scored = (f"Scored with MLflow's evaluation on evaluation dataset `{evidence.dataset_digest}` (drawn "
              f"from the data of {start} to {end})"
              + (f": {evidence.evaluation_run_url}" if evidence.evaluation_run_url else "."))
    gate = f"\n\nGate: {evidence.gate_summary}" if evidence.gate_summary else ""
    if evidence.compared_with_production:
        return f"{scored}\n\n{table}{gate}"
    champion = evidence.roles.get(CHAMPION)
    then = f"v{champion}" if champion else "no production version"
    return (f"**No fresh comparison was made**{why}: these figures are from an earlier evaluation of "
            f"v{evidence.version}, against {then} then; it has not been scored against {now} on the same "
            f"data.\n\n{scored}\n\n{table}{gate}")


def role_label(role: str, version: str) -> str:
    if role == CHALLENGER:
        return f"v{version} (challenger)"
    if role == CHAMPION:
        return f"production v{version} (champion)"
    return f"{role} v{version}"


def metric_table(checks: Sequence[Mapping[str, Any]], roles: Mapping[str, str]) -> str:
    """The gate's checks as a Markdown table, one column per model scored on the same data: the pull
    request's, and the evaluate task's log."""
    others = [role for role in roles if role not in (CHALLENGER, CHAMPION)]
    shown = [role for role in (CHALLENGER, CHAMPION) if role in roles] + others
    if CHALLENGER not in roles:  # a record that names no roles: the challenger's column still shows
        shown = [CHALLENGER]
    header = ["metric", *(role_label(role, roles.get(role, "?")) for role in shown)]
    header += ["change vs champion", "required", "result"]
    rows = [_metric_row(check, shown) for check in checks]
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _metric_row(check: Mapping[str, Any], shown: Sequence[str]) -> list[str]:
    values = {CHALLENGER: check["value"], CHAMPION: check.get("champion"), **(check.get("others") or {})}
    direction = "higher is better" if check["greater_is_better"] else "lower is better"
    change = "-" if check.get("change") is None else f"{check['change']:+.4f}"
    return [f"{check['metric']} ({direction})",
            *("-" if values.get(role) is None else f"{values[role]:.4f}" for role in shown),
            change, requirement(check) or "-", "pass" if check["passed"] else "FAIL"]


def requirement(check: Mapping[str, Any]) -> str:
    """What the gate asks of one metric, in MetricThreshold's terms (and max_regression)."""
    sign = ">=" if check["greater_is_better"] else "<="
    parts = []
    if check.get("threshold") is not None:
        parts.append(f"{sign} {check['threshold']:g}")
    if check.get("min_absolute_change") is not None:
        parts.append(f"better by {check['min_absolute_change']:g}")
    if check.get("min_relative_change") is not None:
        parts.append(f"better by {check['min_relative_change']:.0%}")
    if check.get("max_regression") is not None:
        parts.append(f"at most {check['max_regression']:g} worse")
    return "; ".join(parts)
