"""Promoting a model version: may this run promote it, can the GitOps target take it, and the one way
to propose it (pin the manifest, open or adopt the change, supersede older ones, write the evidence).
Its refusals are ``AirflowFailException``s: permanent, a task fails at once without retries.

``open_pr`` of the retraining DAG and of ``promote_model_version``, and the revert after a failed
rollout, all propose through ``PromotionService.propose`` and ``propose_revert``, which share ``_propose``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.policy import PromotionDecision, decide_promotion

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from model_lifecycle.evidence import Evidence
    from model_lifecycle.gitops import GitOpsProvider
    from model_lifecycle.hooks.mlflow import MlflowHook
    from model_lifecycle.operators.base import ModelLifecycleOperator
    from model_lifecycle.policy import Comparison, GateResult
    from model_lifecycle.registry import ModelRegistry
    from model_lifecycle.results import Proposal
    from model_lifecycle.specs import ModelSpec

log = logging.getLogger(__name__)

KUBERNETES_CONN_ID = "kubernetes_default"


class PromotionBlocked(AirflowFailException):
    """This run may not promote this version; the message says why. Permanent: retrying cannot help."""


class TargetUnusable(AirflowFailException):
    """The spec's GitOps target (repository, base branch, manifest, InferenceService in it) cannot take a
    proposal; the message names the field and what is wrong. Permanent: the spec must change."""


@dataclass
class PromotionService:
    """One model's promotions, as its spec describes them, with MLflow as the record."""

    spec: ModelSpec
    registry: ModelRegistry
    mlflow: MlflowHook

    @classmethod
    def of(cls, operator: ModelLifecycleOperator) -> PromotionService:
        return cls(spec=operator.spec, registry=operator.registry, mlflow=operator.mlflow)

    @cached_property
    def provider(self) -> GitOpsProvider:
        from model_lifecycle.gitops import provider_for

        return provider_for(self.spec.gitops)

    # May it promote? ----------------------------------------------------------------------------

    def decision(self, *, run_type: str, window_end: dt.datetime,
                 force_reason: str | None) -> PromotionDecision:
        """May data up to ``window_end`` replace what is in production now, in this run?"""
        from model_lifecycle.registry import window_end as production_window_end

        production = self.registry.production()
        return decide_promotion(
            run_type=run_type,
            window_end=window_end,
            production_window_end=production_window_end(production) if production else None,
            force_reason=force_reason,
        )

    def require_allowed(self, version: str, *, run_type: str, force_reason: str | None) -> None:
        """Guards the steps that move aliases or propose a rollout, when they run again on their own
        (cleared by hand) after production has moved on: an older version must not quietly replace a
        newer one."""
        from model_lifecycle.registry import window_end

        trained_until = window_end(self.registry.version(version))
        if trained_until is None:
            return
        decision = self.decision(run_type=run_type, window_end=trained_until, force_reason=force_reason)
        if not decision.allowed:
            raise PromotionBlocked(f"{self.spec.registered_model} v{version}: {decision.reason}")

    def check_target(self, version: str) -> None:
        """The repository, its base branch and the manifest exist, and the manifest holds the
        InferenceService the spec names, editable as a proposal needs; checked before anything moves.
        An unusable target is recorded on the version (``promotion.blocked_reason``) and raised as
        ``TargetUnusable``; a transient failure (``gitops.RetryLater``) is raised as it is, for a retry."""
        from model_lifecycle.registry import Tag

        try:
            self._check_target(version)
        except TargetUnusable as error:
            self.registry.set_tags(version, {Tag.BLOCKED_REASON: str(error)})
            raise

    def _check_target(self, version: str) -> None:
        from model_lifecycle.gitops import GitOpsError, RetryLater
        from model_lifecycle.manifests import ManifestError, read_inference_service
        from model_lifecycle.rollout import check_traffic_split

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        try:
            current, _ = self.provider.read_file(gitops.base_branch, gitops.manifest_path)
            self._pin(version)(current)
            canary = self.spec.rollout.kserve.canary
            problems = check_traffic_split(
                read_inference_service(current, path=gitops.manifest_path, name=isvc.name,
                                       namespace=isvc.namespace),
                canary_percent=canary.traffic_percent if canary else None, manifest=gitops.manifest_path)
            if problems:
                raise ManifestError("; ".join(problems))
        except RetryLater:
            raise
        except (GitOpsError, ManifestError) as error:
            raise TargetUnusable(
                f"gitops of spec {self.spec.name!r} (repository {gitops.repository!r}, base_branch "
                f"{gitops.base_branch!r}, manifest_path {gitops.manifest_path!r}, inference_service "
                f"{isvc.namespace}/{isvc.name}): {error}") from None

    # Proposing ---------------------------------------------------------------------------------

    def propose(self, version: str, *, airflow_run_url: str, canary: bool = False) -> Proposal:
        """Propose pointing the InferenceService at ``version``, with the evidence a reviewer needs.
        Idempotent: the branch is named after (InferenceService, model, version), an open or merged
        change for it is adopted, and when the base branch already pins the version there is nothing to
        propose. The change's URL is recorded on the version; open proposals of older versions of the
        model for the same InferenceService are closed, with a comment that links this one. With
        ``canary`` the version gets the spec's canary share of the traffic (``propose_full_rollout``
        then takes it to all of it)."""
        from model_lifecycle.evidence import pull_request_body, pull_request_title
        from model_lifecycle.policy import promotion_branch, promotion_branch_prefix
        from model_lifecycle.registry import Tag

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        name = self.spec.registered_model
        evidence = self._evidence(version, airflow_run_url)
        pin = self._pin(version, self._traffic_percent(canary=canary))
        if self.spec.rollout.target == "kserve":
            current, _ = self.provider.read_file(gitops.base_branch, gitops.manifest_path)
            if pin(current) != current:  # a change will be proposed
                self._record_serving_revision(version)
        proposal = self._propose(
            pin,
            branch=promotion_branch(namespace=isvc.namespace, inference_service=isvc.name, model=name,
                                    version=version),
            title=pull_request_title(evidence),
            body=pull_request_body(evidence),
        )
        change = proposal.change
        if change is None:
            return proposal
        tags = {Tag.PR_URL: change.url, Tag.PR_BRANCH: change.branch, Tag.PR_HEAD_SHA: change.head_sha}
        if change.number is not None:
            tags[Tag.PR_NUMBER] = str(change.number)
        self.registry.set_tags(version, tags)
        prefix = promotion_branch_prefix(namespace=isvc.namespace, inference_service=isvc.name)
        for older in self.provider.close_superseded(change, prefix):
            log.info("Closed %s (%s): superseded by %s.", older.url, older.branch, change.url)
        return proposal

    def propose_full_rollout(self, version: str, *, airflow_run_url: str) -> Proposal:
        """After a verified canary: the change that sends all the requests to ``version``, through the
        same review and merge path (its own branch; ``rollout.kserve.canary.auto_merge`` lets the wait
        merge it). Idempotent like ``propose``."""
        from model_lifecycle.policy import full_rollout_branch
        from model_lifecycle.registry import Tag

        canary = self.spec.rollout.kserve.canary
        assert canary is not None, "only a spec with a canary stage has a full rollout"
        isvc = self.spec.gitops.inference_service
        name = self.spec.registered_model
        tags = self.registry.version(version).tags
        merging = ("The wait merges it once its checks pass (rollout.kserve.canary.auto_merge)."
                   if canary.auto_merge else "Merging it is the approval.")
        proposal = self._propose(
            self._pin(version, 100),
            branch=full_rollout_branch(namespace=isvc.namespace, inference_service=isvc.name, model=name,
                                       version=version),
            title=f"Roll out {name} v{version} to all of InferenceService {isvc.namespace}/{isvc.name}",
            body=(f"{name} v{version} has served {canary.traffic_percent}% of the requests to "
                  f"`{isvc.namespace}/{isvc.name}` since {tags.get(Tag.PR_URL, 'its promotion')} was "
                  f"merged, and its canary passed: {tags.get(Tag.CANARY_DETAIL, 'see the run')}.\n\n"
                  "This sets `canaryTrafficPercent: 100`, so that every request reaches it; the version "
                  f"becomes Production once that rollout is verified. {merging}\n\n"
                  f"Airflow run: {airflow_run_url}\n"),
        )
        if proposal.change is not None:
            self.registry.set_tags(version, {Tag.FULL_ROLLOUT_PR_URL: proposal.change.url})
        return proposal

    def propose_revert(self, failed: str, reason: str) -> str:
        """A change pointing the InferenceService back at the production version after ``failed``
        failed its rollout; its URL, or why there is none."""
        from model_lifecycle.policy import revert_branch

        production = self.registry.production()
        if production is None or production.version == failed:
            return "none (no production version to go back to)"
        gitops = self.spec.gitops
        isvc = gitops.inference_service
        name = self.spec.registered_model
        proposal = self._propose(
            self._pin(production.version, self._traffic_percent(canary=False)),
            branch=revert_branch(namespace=isvc.namespace, inference_service=isvc.name, model=name,
                                 version=failed),
            title=f"Revert InferenceService {isvc.namespace}/{isvc.name} to {name} v{production.version}",
            body=(f"The rollout of {name} v{failed} failed after its merge: {reason}\n\n"
                  f"This points InferenceService `{isvc.namespace}/{isvc.name}` back at the production "
                  f"version {production.version} (`{self.storage_uri(production.version)}`). Merging it "
                  "is the approval.\n"),
        )
        if proposal.change is None:
            return f"none needed ({gitops.base_branch} already pins v{production.version})"
        log.warning("Proposed the revert to v%s: %s", production.version, proposal.change.url)
        return proposal.change.url

    def storage_uri(self, version: str) -> str:
        """Where the serving side reads this version: the URI the manifest pins."""
        return self.mlflow.storage_uri(self.registry.artifact_uri(version))

    def _propose(self, edit: Callable[[str], str], *, branch: str, title: str, body: str) -> Proposal:
        from model_lifecycle.gitops import ChangeRequest
        from model_lifecycle.manifests import ManifestError

        gitops = self.spec.gitops
        try:
            return self.provider.propose(ChangeRequest(
                branch=branch,
                base_branch=gitops.base_branch,
                path=gitops.manifest_path,
                edit=edit,
                title=title,
                body=body,
                labels=tuple(gitops.labels),
                reviewers=tuple(gitops.reviewers),
                team_reviewers=tuple(gitops.team_reviewers),
            ))
        except ManifestError as error:
            raise TargetUnusable(f"{gitops.repository} ({gitops.base_branch}): {error}") from None

    def _traffic_percent(self, *, canary: bool) -> int | None:
        """``canaryTrafficPercent`` for a proposal: the canary's share for a canary step, all of the
        traffic for any other (a full rollout, a revert, a rollback) when the spec has a canary stage,
        and untouched otherwise (``check_target`` allows no share then)."""
        stage = self.spec.rollout.kserve.canary
        if stage is None:
            return None
        return stage.traffic_percent if canary else 100

    def _pin(self, version: str, traffic_percent: int | None = None) -> Callable[[str], str]:
        """The manifest edit that points the InferenceService at ``version`` (with that share of the
        traffic)."""
        from model_lifecycle.manifests import pin_model_version

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        model_version = self.registry.version(version)
        storage_uri = self.storage_uri(version)

        def pin(manifest: str) -> str:
            return pin_model_version(
                manifest, path=gitops.manifest_path, name=isvc.name, namespace=isvc.namespace,
                storage_uri=storage_uri, registered_model=self.spec.registered_model, version=version,
                run_id=model_version.run_id, canary_traffic_percent=traffic_percent,
            )

        return pin

    def _evidence(self, version: str, airflow_run_url: str) -> Evidence:
        """What the reviewer reads, from the version's record: data, gate, decision, links."""
        from model_lifecycle.evidence import Evidence
        from model_lifecycle.links import MLFLOW_RUN, MODEL_VERSION, mlflow_run_url, version_links
        from model_lifecycle.registry import Tag

        isvc = self.spec.gitops.inference_service
        tags = self.registry.version(version).tags
        links = version_links(self.registry, self.mlflow.ui_url, version)
        judged = self.judge(tags[Tag.EVALUATION_RUN]) if Tag.EVALUATION_RUN in tags else None
        comparison = {}
        if judged is not None:
            scored, gate = judged
            comparison = dict(
                checks=json.loads(gate.to_json()),
                roles={model.role: model.version for model in scored.scored},
                gate_summary=gate.summary(),
                dataset_digest=scored.dataset_digest,
                evaluation_window=(scored.window_start, scored.window_end),
                evaluation_run_url=mlflow_run_url(self.mlflow.ui_url, scored.experiment_id, scored.run_id),
            )
        return Evidence(
            registered_model=self.spec.registered_model,
            version=version,
            inference_service=f"{isvc.namespace}/{isvc.name}",
            storage_uri=self.storage_uri(version),
            window_start=tags.get(Tag.WINDOW_START, "unknown"),
            window_end=tags.get(Tag.WINDOW_END, "unknown"),
            data_source=tags.get(Tag.DATA_SOURCE, self.spec.data.source),
            mlflow_run_url=links[MLFLOW_RUN],
            mlflow_version_url=links[MODEL_VERSION],
            airflow_run_url=airflow_run_url,
            decision=tags.get(Tag.PROMOTION_DECISION, "not recorded"),
            production_version=production.version if (production := self.registry.production()) else None,
            no_comparison_reason=tags.get(Tag.NO_FRESH_COMPARISON),
            **comparison,
        )

    def judge(self, evaluation_run_id: str) -> tuple[Comparison, GateResult]:
        """The comparison an evaluation run made, and the spec's gate on it."""
        from model_lifecycle.policy import evaluate_gate

        comparison = self.registry.comparison(evaluation_run_id)
        evaluation = self.spec.evaluation
        return comparison, evaluate_gate(evaluation.metrics, comparison,
                                         if_champion_unavailable=evaluation.if_champion_unavailable)

    def _record_serving_revision(self, version: str) -> None:
        """The predictor revision serving before the change: the rollout check waits for a newer one.
        Recorded once, before anything can be merged, so a rerun after the merge keeps the first."""
        from model_lifecycle.hooks.kserve import KServeHook
        from model_lifecycle.registry import Tag

        isvc = self.spec.gitops.inference_service
        current = KServeHook(KUBERNETES_CONN_ID).get_inference_service(isvc.namespace, isvc.name) or {}
        predictor = ((current.get("status") or {}).get("components") or {}).get("predictor") or {}
        revision = predictor.get("latestReadyRevision")
        log.info("%s/%s serves revision %r before the change.", isvc.namespace, isvc.name, revision)
        if revision:
            self.registry.set_tags(version, {Tag.PREVIOUS_REVISION: revision}, keep_existing=True)
