"""MLflow as the system of record: runs found by their Airflow tags, versions registered once, stages and
aliases moved together, and the promotion record written on the version.

Every write here is idempotent: each operation first looks for its own earlier result and reuses it, so
an Airflow task that is cleared and rerun any number of times creates nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow.entities import Run, RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

from model_lifecycle.policy import Comparison, DataWindow, ScoredModel
from model_lifecycle.specs import ModelSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


class Tag:
    """Tag keys. Run tags are written by the trainer (its environment contract); version tags form
    the promotion record, readable without any other system."""

    DAG_ID = "airflow.dag_id"
    RUN_ID = "airflow.run_id"
    TASK_ID = "airflow.task_id"
    TRY_NUMBER = "airflow.try_number"
    RUN_URL = "airflow.run_url"
    MODEL = "model"
    DATA_SOURCE = "data.source"
    WINDOW_START = "data.window_start"
    WINDOW_END = "data.window_end"

    STATUS = "lifecycle.status"
    REJECTED_REASON = "lifecycle.rejected_reason"

    # The evaluation dataset the trainer held out (run tag, carried to the version)
    EVALUATION_DIGEST = "data.evaluation_digest"

    VERDICT = "evaluation.verdict"
    SUMMARY = "evaluation.summary"
    CHECKS = "evaluation.checks"
    BASELINE_VERSION = "evaluation.baseline_version"
    GATE = "evaluation.gate"
    # The comparison: the evaluation run that scored the version beside the champion, its dataset, every
    # role's figures (evaluation.scores.<role>, JSON), and why the champion was not compared, if not.
    EVALUATION_RUN = "evaluation.run_id"
    DATASET_DIGEST = "evaluation.dataset_digest"
    SCORES_PREFIX = "evaluation.scores."
    CHAMPION_PROBLEM = "evaluation.champion_problem"
    # Why a manual promotion could not score the version against the current production.
    NO_FRESH_COMPARISON = "evaluation.no_fresh_comparison"
    # Tags of the evaluation runs the evaluator logs (its environment contract)
    EVALUATION_KEY = "evaluation.key"
    EVALUATION_MODELS = "evaluation.models"
    EVALUATION_ROLE = "evaluation.role"
    EVALUATION_ERROR = "evaluation.error"
    EVALUATION_WINDOW_START = "data.evaluation_window_start"
    EVALUATION_WINDOW_END = "data.evaluation_window_end"

    PREFLIGHT_VERDICT = "preflight.verdict"
    PREFLIGHT_DETAIL = "preflight.detail"
    PREFLIGHT_RUNTIME = "preflight.runtime"
    PREFLIGHT_STORAGE_URI = "preflight.storage_uri"
    PREFLIGHT_WARNINGS = "preflight.warnings"

    PROMOTION_DECISION = "promotion.decision"
    PROMOTING_DAG = "promotion.dag_id"
    PROMOTING_RUN = "promotion.run_id"
    PROMOTING_RUN_URL = "promotion.airflow_run_url"
    REQUESTED_BY = "promotion.requested_by"
    REQUEST_REASON = "promotion.reason"
    REQUESTED_AT = "promotion.requested_at"
    FORCED_REASON = "promotion.forced_reason"
    BLOCKED_REASON = "promotion.blocked_reason"
    STAGING_AT = "promotion.staging_at"
    PRODUCTION_AT = "promotion.production_at"
    PREVIOUS_PRODUCTION = "promotion.previous_production_version"
    ARCHIVED_AT = "promotion.archived_at"
    SUCCEEDED_BY = "promotion.succeeded_by_version"

    PR_URL = "pr.url"
    PR_NUMBER = "pr.number"
    PR_BRANCH = "pr.branch"
    PR_HEAD_SHA = "pr.head_sha"
    MERGE_SHA = "pr.merge_sha"
    MERGED_BY = "pr.merged_by"
    MERGED_AT = "pr.merged_at"
    APPROVED_BY = "pr.approved_by"
    CLOSED_BY = "pr.closed_by"

    ROLLOUT_TARGET = "rollout.target"
    ROLLOUT_FAILURE = "rollout.failure"
    REVERT = "rollout.revert"
    PREVIOUS_REVISION = "rollout.previous_revision"
    ROLLOUT_VERIFIED_AT = "rollout.verified_at"
    ROLLOUT_DETAIL = "rollout.detail"

    # The canary stage (rollout.kserve.canary), and the change that took it to all of the traffic
    CANARY_TRAFFIC = "canary.traffic_percent"
    CANARY_VERIFIED_AT = "canary.verified_at"
    CANARY_DETAIL = "canary.detail"
    FULL_ROLLOUT_PR_URL = "canary.full_rollout_pr_url"
    FULL_ROLLOUT_MERGE_SHA = "canary.full_rollout_merge_sha"
    FULL_ROLLOUT_MERGED_BY = "canary.full_rollout_merged_by"
    FULL_ROLLOUT_MERGED_AT = "canary.full_rollout_merged_at"
    FULL_ROLLOUT_APPROVED_BY = "canary.full_rollout_approved_by"

    # An earlier promotion's record, when the version is promoted again (a rollback): promotion.history.N
    HISTORY_PREFIX = "promotion.history."
    PER_PROMOTION = (
        PROMOTION_DECISION, PROMOTING_DAG, PROMOTING_RUN, PROMOTING_RUN_URL, REQUESTED_BY, REQUEST_REASON,
        REQUESTED_AT, FORCED_REASON, BLOCKED_REASON, STAGING_AT, PRODUCTION_AT, PREVIOUS_PRODUCTION,
        ARCHIVED_AT, SUCCEEDED_BY, PR_URL, PR_NUMBER, PR_BRANCH, PR_HEAD_SHA, MERGE_SHA, MERGED_BY, MERGED_AT,
        APPROVED_BY, CLOSED_BY, ROLLOUT_TARGET, ROLLOUT_FAILURE, REVERT, PREVIOUS_REVISION,
        ROLLOUT_VERIFIED_AT, ROLLOUT_DETAIL, CANARY_TRAFFIC, CANARY_VERIFIED_AT, CANARY_DETAIL,
        FULL_ROLLOUT_PR_URL, FULL_ROLLOUT_MERGE_SHA, FULL_ROLLOUT_MERGED_BY, FULL_ROLLOUT_MERGED_AT,
        FULL_ROLLOUT_APPROVED_BY,
    )


class Status:
    REGISTERED = "registered"
    REJECTED = "rejected"
    STAGING = "staging"
    CANARY = "canary"
    PRODUCTION = "production"
    ARCHIVED = "archived"
    ROLLOUT_FAILED = "rollout_failed"


class RegistryError(RuntimeError):
    """MLflow does not hold what the cycle expects; the message says what is missing."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ModelRegistry:
    """One model's runs and versions in MLflow, as the spec describes them."""

    def __init__(self, client: MlflowClient, spec: ModelSpec) -> None:
        self.client = client
        self.spec = spec
        self.name = spec.registered_model

    # Runs -------------------------------------------------------------------------------------

    def experiment_id(self) -> str | None:
        experiment = self.client.get_experiment_by_name(self.spec.experiment)
        return experiment.experiment_id if experiment else None

    def runs_for_window(self, window: DataWindow, *, status: str | None = None) -> list[Run]:
        """Runs of this model trained on exactly this window (the idempotency key), newest first."""
        experiment_id = self.experiment_id()
        if experiment_id is None:
            return []
        start, end = window.as_strings()
        query = (
            f"tags.`{Tag.MODEL}` = '{_quoted(self.name)}' "
            f"and tags.`{Tag.WINDOW_START}` = '{start}' and tags.`{Tag.WINDOW_END}` = '{end}'"
        )
        if status:
            query += f" and attributes.status = '{status}'"
        return list(
            self.client.search_runs([experiment_id], filter_string=query, order_by=["start_time DESC"])
        )

    def finished_run(self, window: DataWindow) -> Run | None:
        runs = self.runs_for_window(window, status=RunStatus.to_string(RunStatus.FINISHED))
        return runs[0] if runs else None

    def fail_unfinished_runs(self, window: DataWindow) -> list[str]:
        """Runs left RUNNING by an earlier, interrupted attempt are marked KILLED so that the run list
        tells the truth; returns their ids."""
        killed = []
        for run in self.runs_for_window(window, status=RunStatus.to_string(RunStatus.RUNNING)):
            self.client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
        return killed

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def evaluation_runs(self, key: str, *, status: str) -> list[Run]:
        """The evaluator's runs of one comparison (``training.evaluation_key``), newest first."""
        experiment_id = self.experiment_id()
        if experiment_id is None:
            return []
        query = f"tags.`{Tag.EVALUATION_KEY}` = '{_quoted(key)}' and attributes.status = '{status}'"
        return list(self.client.search_runs([experiment_id], filter_string=query,
                                            order_by=["start_time DESC"]))

    def finished_evaluation(self, key: str) -> Run | None:
        runs = self.evaluation_runs(key, status=RunStatus.to_string(RunStatus.FINISHED))
        return runs[0] if runs else None

    def fail_unfinished_evaluations(self, key: str) -> list[str]:
        """Evaluation runs an interrupted attempt left RUNNING, and their nested runs, marked KILLED."""
        killed = []
        for run in self.evaluation_runs(key, status=RunStatus.to_string(RunStatus.RUNNING)):
            for nested in self._nested_runs(run):
                if nested.info.status == RunStatus.to_string(RunStatus.RUNNING):
                    self.client.set_terminated(nested.info.run_id, status="KILLED")
            self.client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
        return killed

    def comparison(self, run_id: str) -> Comparison:
        """What the evaluation run ``run_id`` found: each role's version and figures on its dataset."""
        run = self.client.get_run(run_id)
        tags = run.data.tags
        uris = json.loads(tags.get(Tag.EVALUATION_MODELS) or "{}")
        scored = []
        for nested in self._nested_runs(run):
            role = nested.data.tags.get(Tag.EVALUATION_ROLE)
            if role not in uris:
                continue
            error = nested.data.tags.get(Tag.EVALUATION_ERROR)
            if error is None and nested.info.status != RunStatus.to_string(RunStatus.FINISHED):
                error = f"its evaluation run {nested.info.run_id} ended {nested.info.status}"
            metrics = dict(nested.data.metrics) if error is None else {}
            scored.append(ScoredModel(role=role, version=uris[role].rsplit("/", 1)[-1], metrics=metrics,
                                      error=error))
        return Comparison(run_id=run_id, dataset_digest=tags.get(Tag.DATASET_DIGEST, ""),
                          window_start=tags.get(Tag.EVALUATION_WINDOW_START, ""),
                          window_end=tags.get(Tag.EVALUATION_WINDOW_END, ""),
                          scored=tuple(sorted(scored, key=lambda model: list(uris).index(model.role))),
                          experiment_id=run.info.experiment_id)

    def _nested_runs(self, run: Run) -> list[Run]:
        return list(self.client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"))

    def tag_run(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    # Versions ---------------------------------------------------------------------------------

    def register(self, run: Run, tags: Mapping[str, str]) -> ModelVersion:
        """The version registered from ``run``: the existing one if there is one, else a new one."""
        existing = self.client.search_model_versions(
            f"name = '{_quoted(self.name)}' and run_id = '{run.info.run_id}'"
        )
        if existing:
            version = min(existing, key=lambda v: int(v.version))
            log.info("Run %s is already registered as %s v%s; reusing it.", run.info.run_id,
                     self.name, version.version)
            return version
        logged_models = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'",
        )
        if not logged_models:
            raise RegistryError(
                f"MLflow run {run.info.run_id} logged no model; the trainer must log one "
                "(mlflow.<flavor>.log_model) before the run ends"
            )
        if len(logged_models) > 1:
            names = sorted(model.name for model in logged_models)
            raise RegistryError(f"MLflow run {run.info.run_id} logged {len(logged_models)} models "
                                f"({names}); exactly one is expected")
        self._ensure_registered_model()
        version = self.client.create_model_version(
            name=self.name,
            source=logged_models[0].model_uri,
            run_id=run.info.run_id,
            tags={**tags, Tag.STATUS: Status.REGISTERED},
            model_id=logged_models[0].model_id,
        )
        log.info("Registered %s v%s from run %s.", self.name, version.version, run.info.run_id)
        return version

    def _ensure_registered_model(self) -> None:
        try:
            self.client.create_registered_model(self.name, description=self.spec.description or None)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise

    def version(self, version: str) -> ModelVersion:
        return self.client.get_model_version(self.name, version)

    def artifact_uri(self, version: str) -> str:
        return self.client.get_model_version_download_uri(self.name, version)

    def by_alias(self, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as error:
            if error.error_code in (ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def production(self) -> ModelVersion | None:
        return self.by_alias(self.spec.aliases.production)

    def take_on(self, version: str, *, dag_id: str, run_id: str, run_url: str) -> None:
        """Record that an Airflow run promotes ``version``. A version an earlier run promoted (a
        rollback brings it back) starts a fresh record; the earlier one is kept whole, as JSON, in the
        next ``promotion.history.N`` tag."""
        tags = self.version(version).tags
        if tags.get(Tag.PROMOTING_RUN, run_id) != run_id:
            earlier = {key: value for key, value in tags.items() if key in Tag.PER_PROMOTION}
            number = 1 + sum(key.startswith(Tag.HISTORY_PREFIX) for key in tags)
            self.set_tags(version, {f"{Tag.HISTORY_PREFIX}{number}": json.dumps(earlier, sort_keys=True)})
            for key in earlier:
                self.client.delete_model_version_tag(self.name, version, key)
            log.info("%s v%s: the record of its earlier promotion by %s is kept as %s%s.", self.name, version,
                     earlier.get(Tag.PROMOTING_RUN), Tag.HISTORY_PREFIX, number)
        self.set_tags(version, {Tag.PROMOTING_DAG: dag_id, Tag.PROMOTING_RUN: run_id,
                                Tag.PROMOTING_RUN_URL: run_url})

    def set_tags(self, version: str, tags: Mapping[str, str], *, keep_existing: bool = False) -> None:
        """Write ``tags`` on the version; with ``keep_existing`` a tag already present is left as it is
        (the promotion record keeps the first time a fact was observed)."""
        current = self.version(version).tags if keep_existing else {}
        for key, value in tags.items():
            if key not in current:
                self.client.set_model_version_tag(self.name, version, key, str(value))

    def drop_tags(self, version: str, keys: list[str]) -> None:
        """Remove the tags among ``keys`` that the version has."""
        present = self.version(version).tags
        for key in keys:
            if key in present:
                self.client.delete_model_version_tag(self.name, version, key)

    def reject(self, version: str, reason: str, extra: Mapping[str, str] | None = None) -> None:
        self.set_tags(version, {**(extra or {}), Tag.STATUS: Status.REJECTED, Tag.REJECTED_REASON: reason})

    # Stages and aliases -----------------------------------------------------------------------

    def promote_to_staging(self, version: str) -> bool:
        """Stage Staging and the staging alias; a version already past Staging (in Production, or
        archived after it) is left where it is. Returns whether the version is (now) in Staging."""
        if self.version(version).current_stage in ("Production", "Archived"):
            return False
        self._move(version, stage="Staging", alias=self.spec.aliases.staging)
        self.set_tags(version, {Tag.STATUS: Status.STAGING})
        self.set_tags(version, {Tag.STAGING_AT: now_iso()}, keep_existing=True)
        return True

    def mark_canary(self, version: str, *, traffic_percent: int, detail: str) -> None:
        """The version serves a verified canary share: the canary alias, and the record of it."""
        if self.spec.aliases.canary not in (self.version(version).aliases or []):
            self.client.set_registered_model_alias(self.name, self.spec.aliases.canary, version)
        self.set_tags(version, {Tag.STATUS: Status.CANARY, Tag.CANARY_TRAFFIC: str(traffic_percent),
                                Tag.CANARY_DETAIL: detail})
        self.set_tags(version, {Tag.CANARY_VERIFIED_AT: now_iso()}, keep_existing=True)

    def drop_canary(self, version: str) -> None:
        """The canary alias leaves ``version`` (it is Production now, or its rollout failed)."""
        canary = self.by_alias(self.spec.aliases.canary)
        if canary is not None and canary.version == version:
            self.client.delete_registered_model_alias(self.name, self.spec.aliases.canary)

    def promote_to_production(self, version: str) -> str | None:
        """Make ``version`` the production version; the one it replaces is archived and keeps the
        previous-production alias. Returns the replaced version, if any.

        The replaced version is written on the new one before anything moves, so a rerun after a crash
        at any point completes the same promotion instead of losing track of the old version."""
        aliases = self.spec.aliases
        current = self.production()
        recorded = self.version(version).tags.get(Tag.PREVIOUS_PRODUCTION)
        if current is not None and current.version != version:
            previous = current.version
            self.set_tags(version, {Tag.PREVIOUS_PRODUCTION: previous})
        else:
            previous = recorded
        if previous and previous != version:
            self._move(previous, stage="Archived", alias=aliases.previous_production)
            self.set_tags(previous, {Tag.STATUS: Status.ARCHIVED, Tag.SUCCEEDED_BY: version})
            self.set_tags(previous, {Tag.ARCHIVED_AT: now_iso()}, keep_existing=True)
        self._move(version, stage="Production", alias=aliases.production)
        staging = self.by_alias(aliases.staging)
        if staging is not None and staging.version == version:
            self.client.delete_registered_model_alias(self.name, aliases.staging)
        self.drop_canary(version)
        self.set_tags(version, {Tag.STATUS: Status.PRODUCTION})
        self.set_tags(version, {Tag.PRODUCTION_AT: now_iso()}, keep_existing=True)
        return previous

    def _move(self, version: str, *, stage: str, alias: str) -> None:
        """Stage and alias move together; each is only written when it is not already so."""
        current = self.version(version)
        if current.current_stage != stage:
            with warnings.catch_warnings():
                # MLflow deprecates stages in favour of aliases; the design keeps both in step, for
                # the registry UI's stage view and for consumers that still load models:/<name>/<stage>.
                warnings.simplefilter("ignore", FutureWarning)
                self.client.transition_model_version_stage(self.name, version, stage)
        if alias not in (current.aliases or []):
            self.client.set_registered_model_alias(self.name, alias, version)


def window_end(version: ModelVersion) -> dt.datetime | None:
    """Where the data a version was trained on ends, from its promotion record."""
    end = version.tags.get(Tag.WINDOW_END)
    return dt.datetime.fromisoformat(end) if end else None


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")
