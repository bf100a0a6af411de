"""Waits in the triggerer until a promotion change is merged or closed, or its deadline passes.

Stateless: everything it needs is in its arguments (never a secret: the provider reads its connection
itself), so the triggerer may restart it, or run it more than once, and it reaches the same answer.
The provider's blocking calls run in a thread, off the triggerer's event loop; every wait (the poll
interval, or what a rate limit or a server error asks for) is an asyncio sleep, logged with its reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

TIMEOUT = "timeout"
ERROR = "error"


class MergeTrigger(BaseTrigger):
    def __init__(self, *, gitops: dict[str, Any], change: dict[str, Any], deadline: str,
                 poll_interval: float, first_check: dict[str, str] | None = None) -> None:
        super().__init__()
        self.gitops = gitops
        self.change = change
        self.deadline = deadline
        self.poll_interval = poll_interval
        # {"at": ISO time, "reason": why}: the task was told to wait (rate limit) before checking again.
        self.first_check = first_check

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"gitops": self.gitops, "change": self.change, "deadline": self.deadline,
             "poll_interval": self.poll_interval, "first_check": self.first_check},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from model_lifecycle.gitops import (
            ChangeStatus,
            GitOpsError,
            MergeRefused,
            RetryLater,
            provider_for_triggerer,
        )
        from model_lifecycle.hooks.github import GitHubConnectionError
        from model_lifecycle.results import ChangeRef
        from model_lifecycle.specs import GitOps
        from model_lifecycle.triggers.waiting import WaitLog

        gitops = GitOps.model_validate(self.gitops)
        ref = ChangeRef.from_xcom(self.change)
        deadline = dt.datetime.fromisoformat(self.deadline)
        try:
            provider = await provider_for_triggerer(gitops)
        except GitHubConnectionError as error:  # the connection must change: retrying cannot help
            yield TriggerEvent({"state": ERROR, "message": str(error), "retry": False})
            return
        except GitOpsError as error:
            yield TriggerEvent({"state": ERROR, "message": str(error), "retry": True})
            return
        status = ChangeStatus(state="open", detail="not checked yet")
        waits = WaitLog(self.log)
        wait, reason = 0.0, ""
        if self.first_check:
            first = dt.datetime.fromisoformat(self.first_check["at"])
            wait, reason = (first - dt.datetime.now(dt.UTC)).total_seconds(), self.first_check["reason"]
        while True:
            if wait > 0:
                remaining = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
                if remaining <= 0:
                    yield TriggerEvent({"state": TIMEOUT, "status": status.to_dict()})
                    return
                wait = min(wait, remaining)
                waits.waiting(f"the merge of {ref.url}", reason, wait)
                await asyncio.sleep(wait)
            try:
                status = await asyncio.to_thread(provider.check, ref, auto_merge=gitops.auto_merge)
            except RetryLater as later:
                wait, reason = later.seconds, later.reason
                continue
            except GitOpsError as error:
                yield TriggerEvent({"state": ERROR, "message": str(error),
                                    "retry": not isinstance(error, MergeRefused)})
                return
            if status.state != "open":
                yield TriggerEvent({"state": status.state, "status": status.to_dict()})
                return
            wait, reason = self.poll_interval, status.detail
