"""Opening the promotion pull request (the manifest edit plus the evidence a reviewer needs), and,
after a verified canary, the one that takes the version to all of the traffic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model_lifecycle.lease import PromotionLeaseMixin
from model_lifecycle.links import run_url
from model_lifecycle.notifications import notify
from model_lifecycle.operators.base import force_reason, run_type
from model_lifecycle.operators.lifecycle import VersionStepOperator
from model_lifecycle.promotion import PromotionService

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from model_lifecycle.results import RegisteredVersion
    from model_lifecycle.specs import ModelSpec


class OpenPullRequestOperator(PromotionLeaseMixin, VersionStepOperator):
    """Proposes pointing the InferenceService at the version (``PromotionService.propose``), once this
    run holds the InferenceService's lease. When the base branch already pins the version there is
    nothing to review and the run goes straight to verification. The evidence comes from the version's
    record: its data window, its gate result, the decision to promote it. With ``canary`` the version
    gets the spec's canary share of the traffic (``rollout.kserve.canary``)."""

    ui_color = "#d3f9d8"

    def __init__(self, *, spec: ModelSpec | str, registered: RegisteredVersion | XComArg,
                 canary: bool = False, **kwargs: Any) -> None:
        super().__init__(spec=spec, registered=registered, **kwargs)
        self.canary = canary

    def execute(self, context: Context) -> dict[str, Any]:
        from model_lifecycle.registry import Tag

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        version = self.version.version
        name = self.spec.registered_model
        promotion = PromotionService.of(self)
        promotion.require_allowed(version, run_type=run_type(context), force_reason=force_reason(context))
        self.wait_for_turn(context, version)
        recorded = self.registry.version(version).tags
        proposal = promotion.propose(version, airflow_run_url=run_url(context), canary=self.canary)
        change = proposal.change
        if change is None:
            self.log.info("%s on %s already pins %s v%s; no pull request is needed.",
                          gitops.manifest_path, gitops.base_branch, name, version)
            return proposal.to_xcom()
        self.log.info("Pull request for %s v%s: %s", name, version, change.url)
        if recorded.get(Tag.PR_URL) != change.url:
            notify(context, self.spec, "pr_opened",
                   f"{change.url} proposes {name} v{version} for {isvc.namespace}/{isvc.name} "
                   f"({recorded.get(Tag.PROMOTION_DECISION, 'no decision recorded')}); merging it is the "
                   "approval.", version=version, links=self.extra_link_urls)
        return proposal.to_xcom()


class OpenFullRolloutOperator(VersionStepOperator):
    """After the canary is verified: proposes ``canaryTrafficPercent: 100`` for the version
    (``PromotionService.propose_full_rollout``). The run still holds the InferenceService's lease."""

    ui_color = "#d3f9d8"

    def execute(self, context: Context) -> dict[str, Any]:
        promotion = PromotionService.of(self)
        version = self.version.version
        promotion.require_allowed(version, run_type=run_type(context), force_reason=force_reason(context))
        proposal = promotion.propose_full_rollout(version, airflow_run_url=run_url(context))
        if proposal.change is None:
            self.log.info("%s already sends all of the traffic to v%s.", self.spec.gitops.manifest_path,
                          version)
        else:
            self.log.info("Pull request for the full rollout of v%s: %s", version, proposal.change.url)
        return proposal.to_xcom()
