"""Opening the promotion pull request: the manifest edit plus the evidence a reviewer needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.operators.base import ModelLifecycleOperator, run_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.evidence import Evidence

ALREADY_ON_BASE = "already_on_base"
OPENED = "opened"


class OpenPullRequestOperator(ModelLifecycleOperator):
    """Proposes pointing the InferenceService at the new version. Idempotent: the branch is named after
    (InferenceService, model, version), an open or merged change for it is adopted, and when the base
    branch already pins the version there is nothing to propose and the run goes straight to
    verification. Open proposals of older versions of the model for the same InferenceService are
    closed, with a comment that links the new one."""

    inputs = ("plan", "registered")
    kubernetes_conn_id = "kubernetes_default"
    ui_color = "#d3f9d8"

    def execute(self, context: Context) -> dict[str, Any]:
        from model_lifecycle.evidence import pull_request_body, pull_request_title
        from model_lifecycle.gitops import ChangeRequest, provider_for
        from model_lifecycle.manifests import ManifestError, pin_model_version
        from model_lifecycle.policy import promotion_branch, promotion_branch_prefix
        from model_lifecycle.registry import Tag

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        version, run_id = self.registered["version"], self.registered["run_id"]
        name = self.spec.registered_model
        self.require_promotion_allowed(context, version)
        self.wait_for_turn(context, version)
        storage_uri = self.storage_uri(version)
        evidence = self._evidence(context, storage_uri)

        def pin(manifest: str) -> str:
            return pin_model_version(
                manifest, path=gitops.manifest_path, name=isvc.name, namespace=isvc.namespace,
                storage_uri=storage_uri, registered_model=name, version=version, run_id=run_id,
            )

        provider = provider_for(gitops)
        if self.spec.rollout.target == "kserve":
            current, _ = provider.read_file(gitops.base_branch, gitops.manifest_path)
            if pin(current) != current:  # a change will be proposed: note what serves before it
                self._record_serving_revision(version)
        try:
            proposal = provider.propose(ChangeRequest(
                branch=promotion_branch(namespace=isvc.namespace, inference_service=isvc.name, model=name,
                                        version=version),
                base_branch=gitops.base_branch,
                path=gitops.manifest_path,
                edit=pin,
                title=pull_request_title(evidence),
                body=pull_request_body(evidence),
                labels=tuple(gitops.labels),
                reviewers=tuple(gitops.reviewers),
                team_reviewers=tuple(gitops.team_reviewers),
            ))
        except ManifestError as error:
            raise AirflowFailException(f"{gitops.repository} ({gitops.base_branch}): {error}") from None
        change = proposal.change
        if change is None:
            self.log.info("%s on %s already pins %s v%s; no pull request is needed.",
                          gitops.manifest_path, gitops.base_branch, name, version)
            return {"state": ALREADY_ON_BASE, "base_sha": proposal.base_sha, "change": None}

        tags = {Tag.PR_URL: change.url, Tag.PR_BRANCH: change.branch, Tag.PR_HEAD_SHA: change.head_sha}
        if change.number is not None:
            tags[Tag.PR_NUMBER] = str(change.number)
        announced = self.registry.version(version).tags.get(Tag.PR_URL) == change.url
        self.registry.set_tags(version, tags)
        self.log.info("Pull request for %s v%s: %s", name, version, change.url)
        if not announced:
            self.notify(context, "pr_opened", f"{change.url} proposes {name} v{version} for "
                                              f"{isvc.namespace}/{isvc.name} ({self.plan['decision']}); "
                                              "merging it is the approval.", version=version)
        prefix = promotion_branch_prefix(namespace=isvc.namespace, inference_service=isvc.name)
        for older in provider.close_superseded(change, prefix):
            self.log.info("Closed %s (%s): superseded by %s.", older.url, older.branch, change.url)
        return {"state": OPENED, "base_sha": proposal.base_sha, "change": change.to_dict()}

    def _evidence(self, context: Context, storage_uri: str) -> Evidence:
        from model_lifecycle.evidence import Evidence
        from model_lifecycle.links import MLFLOW_RUN, MODEL_VERSION
        from model_lifecycle.registry import Tag

        isvc = self.spec.gitops.inference_service
        version = self.registered["version"]
        tags = self.registry.version(version).tags
        links = self.version_links(version)
        return Evidence(
            registered_model=self.spec.registered_model,
            version=version,
            inference_service=f"{isvc.namespace}/{isvc.name}",
            storage_uri=storage_uri,
            window_start=self.plan["window_start"],
            window_end=self.plan["window_end"],
            data_source=self.spec.data.source,
            checks=json.loads(tags.get(Tag.CHECKS, "[]")),
            baseline_version=None if tags.get(Tag.BASELINE_VERSION) in (None, "none")
            else tags[Tag.BASELINE_VERSION],
            mlflow_run_url=links[MLFLOW_RUN],
            mlflow_version_url=links[MODEL_VERSION],
            airflow_run_url=run_url(context),
            decision=self.plan["decision"],
        )

    def _record_serving_revision(self, version: str) -> None:
        """The predictor revision serving before the change: the rollout check waits for a newer one.
        Recorded once, before anything can be merged, so a rerun after the merge keeps the first."""
        from model_lifecycle.hooks.kserve import read_inference_service
        from model_lifecycle.registry import Tag

        isvc = self.spec.gitops.inference_service
        current = read_inference_service(self.kubernetes_conn_id, isvc.namespace, isvc.name) or {}
        predictor = ((current.get("status") or {}).get("components") or {}).get("predictor") or {}
        revision = predictor.get("latestReadyRevision")
        self.log.info("%s/%s serves revision %r before the change.", isvc.namespace, isvc.name, revision)
        if revision:
            self.registry.set_tags(version, {Tag.PREVIOUS_REVISION: revision}, keep_existing=True)
