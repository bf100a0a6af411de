"""Waiting for the reviewer: the promotion change is merged (approval) or closed (rejection)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from model_lifecycle.operators.base import ModelLifecycleOperator
from model_lifecycle.operators.gitops import ALREADY_ON_BASE
from model_lifecycle.triggers.merge import TIMEOUT, MergeTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.gitops import ChangeStatus


class WaitForMergeSensor(ModelLifecycleOperator, BaseSensorOperator):
    """Deferrable: checks once, then waits in the triggerer without holding a worker slot.

    Merged: the merge SHA, who merged and when go to XCom and to the version's MLflow tags.
    Closed without merge: the version is tagged rejected and the task fails at once, without retries.
    No merge within ``gitops.merge_timeout_hours``: the task fails with a message that says so.
    """

    template_fields: Sequence[str] = ("opened", "registered")
    ui_color = "#fff3bf"

    def __init__(self, *, opened: Any, registered: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened = opened
        self.registered = registered

    def execute(self, context: Context) -> dict[str, str | None]:
        from model_lifecycle.gitops import ChangeRef, ChangeStatus, provider_for

        if self.opened["state"] == ALREADY_ON_BASE:
            return self._finish(ChangeStatus(
                state="merged", merge_sha=self.opened["base_sha"],
                merged_by=f"(already on {self.spec.gitops.base_branch}; no pull request was needed)",
                merged_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            ))
        ref = ChangeRef.from_dict(self.opened["change"])
        status = provider_for(self.spec.gitops).change_status(ref)
        if status.state != "open":
            return self._finish(status)
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(hours=self.spec.gitops.merge_timeout_hours)
        self.log.info("Waiting for the merge of %s until %s (%s).", ref.url,
                      deadline.isoformat(timespec="seconds"), status.detail)
        self.defer(
            trigger=MergeTrigger(
                gitops=self.spec.gitops.model_dump(mode="json"),
                change=ref.to_dict(),
                deadline=deadline.isoformat(),
                poll_interval=self.spec.gitops.poll_interval_seconds,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, str | None]:
        from model_lifecycle.gitops import ChangeStatus

        status = ChangeStatus(**event["status"])
        if event["state"] == TIMEOUT:
            raise AirflowSensorTimeout(
                f"{self.opened['change']['url']} was not merged within gitops.merge_timeout_hours "
                f"({self.spec.gitops.merge_timeout_hours} h) of spec {self.spec.name!r}: {status.detail}"
            )
        return self._finish(status)

    def _finish(self, status: ChangeStatus) -> dict[str, str | None]:
        from model_lifecycle.registry import Tag

        version = self.registered["version"]
        name = self.spec.registered_model
        if status.state == "closed":
            reason = f"pull request closed without merge by {status.closed_by}: {status.detail}"
            self.registry.reject(version, reason, {Tag.CLOSED_BY: status.closed_by or "unknown"})
            raise AirflowFailException(f"{name} v{version} rejected: {reason}")
        self.registry.set_tags(version, {
            Tag.MERGE_SHA: status.merge_sha, Tag.MERGED_BY: status.merged_by, Tag.MERGED_AT: status.merged_at,
        }, keep_existing=True)
        self.log.info("Merged as %s by %s at %s.", status.merge_sha, status.merged_by, status.merged_at)
        return {"merge_sha": status.merge_sha, "merged_by": status.merged_by, "merged_at": status.merged_at}
