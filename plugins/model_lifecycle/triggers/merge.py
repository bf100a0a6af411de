"""Waits in the triggerer until a promotion change is merged or closed, or its deadline passes.

Stateless: everything it needs is in its arguments, so the triggerer may restart it, or run it more
than once, and it reaches the same answer. The provider's blocking calls run in a thread, off the
triggerer's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

TIMEOUT = "timeout"


class MergeTrigger(BaseTrigger):
    def __init__(self, *, gitops: dict[str, Any], change: dict[str, Any], deadline: str,
                 poll_interval: float) -> None:
        super().__init__()
        self.gitops = gitops
        self.change = change
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"gitops": self.gitops, "change": self.change, "deadline": self.deadline,
             "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from model_lifecycle.gitops import ChangeRef, provider_for
        from model_lifecycle.specs import GitOps

        provider = provider_for(GitOps.model_validate(self.gitops))
        ref = ChangeRef.from_dict(self.change)
        deadline = dt.datetime.fromisoformat(self.deadline)
        while True:
            status = await asyncio.to_thread(provider.change_status, ref)
            if status.state != "open":
                yield TriggerEvent({"state": status.state, "status": status.to_dict()})
                return
            remaining = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"state": TIMEOUT, "status": status.to_dict()})
                return
            wait = min(self.poll_interval, remaining)
            self.log.info("Waiting for the merge of %s: %s; next check in %.0f s.", ref.url,
                          status.detail, wait)
            await asyncio.sleep(wait)
