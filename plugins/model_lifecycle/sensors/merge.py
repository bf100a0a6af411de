"""Waiting for the reviewer: the promotion change is merged (approval) or closed (rejection)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from model_lifecycle.notifications import notify
from model_lifecycle.operators.base import MLFLOW_CONN_ID
from model_lifecycle.operators.lifecycle import VersionOperator
from model_lifecycle.results import Merge, Proposal
from model_lifecycle.triggers.merge import ERROR, TIMEOUT, MergeTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from model_lifecycle.gitops import ChangeStatus
    from model_lifecycle.results import RegisteredVersion
    from model_lifecycle.specs import GitOps, ModelSpec


class WaitForMergeSensor(VersionOperator):
    """Deferrable: checks once, then waits in the triggerer without holding a worker slot, until the
    change is decided or ``gitops.merge_timeout_hours`` pass.

    Merged: the merge SHA, who merged, who approved and when go to XCom and to the version's MLflow tags.
    Closed without merge: the version is tagged rejected and the task fails at once, without retries.
    No merge within ``gitops.merge_timeout_hours``: the task fails with a message that says so (and, with
    ``gitops.close_on_timeout``, the change is closed with a comment). With ``gitops.auto_merge``, a
    change whose required checks have passed is merged by the wait itself.

    With ``full_rollout`` it waits for the change that takes a canary to all of the traffic: its merge
    is recorded under ``canary.full_rollout_*``, and ``rollout.kserve.canary.auto_merge`` may merge it.
    """

    template_fields = ("model", "proposal", "registered")
    ui_color = "#fff3bf"

    def __init__(self, *, spec: ModelSpec | str, proposal: Proposal | XComArg,
                 registered: RegisteredVersion | XComArg, full_rollout: bool = False,
                 mlflow_conn_id: str = MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.proposal = proposal
        self.registered = registered
        self.full_rollout = full_rollout

    @property
    def gitops(self) -> GitOps:
        """The spec's GitOps settings, with the canary's auto-merge for the full rollout."""
        canary = self.spec.rollout.kserve.canary
        if self.full_rollout and canary is not None:
            return self.spec.gitops.model_copy(update={"auto_merge": canary.auto_merge})
        return self.spec.gitops

    def execute(self, context: Context) -> dict[str, Any]:
        from model_lifecycle.gitops import ChangeStatus, MergeRefused, RetryLater, provider_for

        gitops = self.gitops
        proposal = Proposal.from_xcom(self.proposal)
        ref = proposal.change
        if ref is None:
            return self._finish(context, ChangeStatus(
                state="merged", merge_sha=proposal.base_sha,
                merged_by=f"(already on {gitops.base_branch}; no pull request was needed)",
                merged_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            ))
        first_check = None
        try:
            status = provider_for(gitops).check(ref, auto_merge=gitops.auto_merge)
        except MergeRefused as error:
            raise AirflowFailException(f"{ref.url}: {error}") from None
        except RetryLater as later:
            at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=later.seconds)
            first_check = {"at": at.isoformat(), "reason": later.reason}
            status = ChangeStatus(state="open", detail=later.reason)
        if status.state != "open":
            return self._finish(context, status)
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(hours=gitops.merge_timeout_hours)
        self.log.info("Waiting for the merge of %s until %s (%s).", ref.url,
                      deadline.isoformat(timespec="seconds"), status.detail)
        self.defer(
            trigger=MergeTrigger(
                gitops=gitops.model_dump(mode="json"),
                change=ref.to_xcom(),
                deadline=deadline.isoformat(),
                poll_interval=gitops.poll_interval_seconds,
                first_check=first_check,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from model_lifecycle.gitops import ChangeStatus, provider_for

        ref = Proposal.from_xcom(self.proposal).change
        assert ref is not None, "only a proposed change is waited for"
        url = ref.url
        if event["state"] == ERROR:
            failure = AirflowException if event["retry"] else AirflowFailException
            raise failure(f"{url}: {event['message']}")
        status = ChangeStatus.from_dict(event["status"])
        if event["state"] == TIMEOUT:
            gitops = self.gitops
            message = (f"{url} was not merged within gitops.merge_timeout_hours "
                       f"({gitops.merge_timeout_hours} h) of spec {self.spec.name!r}: {status.detail}")
            if gitops.close_on_timeout:
                provider_for(gitops).close_change(ref, f"Closed by Airflow: {message} "
                                                       "(gitops.close_on_timeout).")
            raise AirflowSensorTimeout(message)
        return self._finish(context, status)

    def _finish(self, context: Context, status: ChangeStatus) -> dict[str, Any]:
        from model_lifecycle.registry import Tag

        version = self.version.version
        name = self.spec.registered_model
        if status.state == "closed":
            reason = f"pull request closed without merge by {status.closed_by}: {status.detail}"
            self.registry.reject(version, reason, {Tag.CLOSED_BY: status.closed_by or "unknown"})
            notify(context, self.spec, "pr_closed", f"{name} v{version} is rejected: {reason}",
                   version=version, links=self.extra_link_urls)
            raise AirflowFailException(f"{name} v{version} rejected: {reason}")
        merge = Merge(merge_sha=status.merge_sha or "", merged_by=status.merged_by or "unknown",
                      merged_at=status.merged_at or "", approved_by=status.approved_by)
        if self.full_rollout:
            keys = (Tag.FULL_ROLLOUT_MERGE_SHA, Tag.FULL_ROLLOUT_MERGED_BY, Tag.FULL_ROLLOUT_MERGED_AT,
                    Tag.FULL_ROLLOUT_APPROVED_BY)
        else:
            keys = (Tag.MERGE_SHA, Tag.MERGED_BY, Tag.MERGED_AT, Tag.APPROVED_BY)
        values = (merge.merge_sha, merge.merged_by, merge.merged_at, approval(merge))
        self.registry.set_tags(version, dict(zip(keys, values, strict=True)), keep_existing=True)
        self.log.info("Merged as %s by %s at %s (approved by %s).", merge.merge_sha, merge.merged_by,
                      merge.merged_at, approval(merge))
        return merge.to_xcom()


def approval(merge: Merge) -> str:
    """The ``pr.approved_by`` tag: who approved, or, told apart, that nobody did or that it is unknown.
    The two words in parentheses cannot be logins (GitHub logins have no spaces or parentheses)."""
    if merge.approved_by is None:
        return "(unknown: the merge does not say who approved it)"
    if not merge.approved_by:
        return "(nobody: merged without an approving review)"
    return ", ".join(merge.approved_by)
