"""Waiting for the reviewer: the promotion change is merged (approval) or closed (rejection)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from model_lifecycle.operators.base import ModelLifecycleOperator
from model_lifecycle.operators.gitops import ALREADY_ON_BASE
from model_lifecycle.triggers.merge import ERROR, TIMEOUT, MergeTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.gitops import ChangeStatus


class WaitForMergeSensor(ModelLifecycleOperator, BaseSensorOperator):
    """Deferrable: checks once, then waits in the triggerer without holding a worker slot.

    Merged: the merge SHA, who merged, who approved and when go to XCom and to the version's MLflow tags.
    Closed without merge: the version is tagged rejected and the task fails at once, without retries.
    No merge within ``gitops.merge_timeout_hours``: the task fails with a message that says so (and, with
    ``gitops.close_on_timeout``, the change is closed with a comment). With ``gitops.auto_merge``, a
    change whose required checks have passed is merged by the wait itself.
    """

    inputs = ("opened", "registered")
    ui_color = "#fff3bf"

    def execute(self, context: Context) -> dict[str, Any]:
        from model_lifecycle.gitops import ChangeRef, ChangeStatus, MergeRefused, RetryLater, provider_for

        gitops = self.spec.gitops
        if self.opened["state"] == ALREADY_ON_BASE:
            return self._finish(context, ChangeStatus(
                state="merged", merge_sha=self.opened["base_sha"],
                merged_by=f"(already on {gitops.base_branch}; no pull request was needed)",
                merged_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            ))
        ref = ChangeRef.from_dict(self.opened["change"])
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
                change=ref.to_dict(),
                deadline=deadline.isoformat(),
                poll_interval=gitops.poll_interval_seconds,
                first_check=first_check,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from model_lifecycle.gitops import ChangeRef, ChangeStatus, provider_for

        url = self.opened["change"]["url"]
        if event["state"] == ERROR:
            failure = AirflowException if event["retry"] else AirflowFailException
            raise failure(f"{url}: {event['message']}")
        status = ChangeStatus.from_dict(event["status"])
        if event["state"] == TIMEOUT:
            gitops = self.spec.gitops
            message = (f"{url} was not merged within gitops.merge_timeout_hours "
                       f"({gitops.merge_timeout_hours} h) of spec {self.spec.name!r}: {status.detail}")
            if gitops.close_on_timeout:
                provider_for(gitops).close_change(ChangeRef.from_dict(self.opened["change"]),
                                                  f"Closed by Airflow: {message} (gitops.close_on_timeout).")
            raise AirflowSensorTimeout(message)
        return self._finish(context, status)

    def _finish(self, context: Context, status: ChangeStatus) -> dict[str, Any]:
        from model_lifecycle.registry import Tag

        version = self.registered["version"]
        name = self.spec.registered_model
        if status.state == "closed":
            reason = f"pull request closed without merge by {status.closed_by}: {status.detail}"
            self.registry.reject(version, reason, {Tag.CLOSED_BY: status.closed_by or "unknown"})
            self.notify(context, "pr_closed", f"{name} v{version} is rejected: {reason}", version=version)
            raise AirflowFailException(f"{name} v{version} rejected: {reason}")
        approved_by = ", ".join(status.approved_by) or "none"
        self.registry.set_tags(version, {
            Tag.MERGE_SHA: status.merge_sha, Tag.MERGED_BY: status.merged_by, Tag.MERGED_AT: status.merged_at,
            Tag.APPROVED_BY: approved_by,
        }, keep_existing=True)
        self.log.info("Merged as %s by %s at %s (approved by %s).", status.merge_sha, status.merged_by,
                      status.merged_at, approved_by)
        return {"merge_sha": status.merge_sha, "merged_by": status.merged_by, "merged_at": status.merged_at,
                "approved_by": list(status.approved_by)}
