"""The pull request a reviewer approves: a title that says what changes and a body with the evidence.

Pure module: it formats what the caller has gathered from MLflow and Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Evidence:
    registered_model: str
    version: str
    inference_service: str
    storage_uri: str
    window_start: str
    window_end: str
    data_source: str
    checks: Sequence[Mapping[str, Any]]
    baseline_version: str | None
    mlflow_run_url: str
    mlflow_version_url: str
    airflow_run_url: str
    decision: str
    # The version in production when the change is proposed (None: none is).
    production_version: str | None = None

    @property
    def compared_with_production(self) -> bool:
        """Whether the figures compare the version with what is in production now: they come from its
        own evaluation, against the production version of that time, which a rollback or a manual
        promotion may no longer have."""
        return self.production_version in (None, self.baseline_version, self.version)


def pull_request_title(evidence: Evidence) -> str:
    return (
        f"Promote {evidence.registered_model} v{evidence.version} "
        f"to InferenceService {evidence.inference_service}"
    )


def pull_request_body(evidence: Evidence) -> str:
    baseline = f"v{evidence.baseline_version}" if evidence.baseline_version else "none"
    column, note = f"production ({baseline})", ""
    if not evidence.compared_with_production:
        then = f"v{evidence.baseline_version}" if evidence.baseline_version else "no production version"
        column = f"production when evaluated ({baseline})"
        note = (f"\n**No fresh comparison was made**: these figures are v{evidence.version}'s own "
                f"evaluation from when it was trained, against {then} then; it has not been scored "
                f"against the current production v{evidence.production_version} on the same data.\n")
    return f"""\
Points InferenceService `{evidence.inference_service}` at `{evidence.registered_model}` \
version {evidence.version}. Merging this change is the approval: the GitOps agent applies it, \
Airflow verifies the rollout and then marks the version Production.
{note}
{metric_table(evidence.checks, version=evidence.version, baseline_column=column)}

- Data: `{evidence.data_source}`, window {evidence.window_start} to {evidence.window_end}
- Storage URI: `{evidence.storage_uri}`
- MLflow run: {evidence.mlflow_run_url}
- MLflow model version: {evidence.mlflow_version_url}
- Airflow run: {evidence.airflow_run_url}
- Promotion: {evidence.decision}
"""


def metric_table(checks: Sequence[Mapping[str, Any]], *, version: str, baseline_column: str) -> str:
    """The gate's checks as a Markdown table: the pull request's, and the evaluate task's log."""
    rows = "\n".join(_metric_row(check) for check in checks)
    return (f"| metric | candidate v{version} | bounds | {baseline_column} | regression (max) | result |\n"
            f"| --- | --- | --- | --- | --- | --- |\n{rows}")


def _metric_row(check: Mapping[str, Any]) -> str:
    bounds = " and ".join(
        text
        for text in (
            f">= {check['min']:g}" if check.get("min") is not None else "",
            f"<= {check['max']:g}" if check.get("max") is not None else "",
        )
        if text
    )
    baseline = "" if check.get("baseline") is None else f"{check['baseline']:.4f}"
    regression = "" if check.get("regression") is None else f"{check['regression']:.4f}"
    if check.get("max_regression") is not None:
        regression = f"{regression or 'n/a'} ({check['max_regression']:g})"
    result = "pass" if check["passed"] else "FAIL"
    return (
        f"| {check['metric']} ({check['goal']}) | {check['value']:.4f} | {bounds or '-'} "
        f"| {baseline or '-'} | {regression or '-'} | {result} |"
    )
