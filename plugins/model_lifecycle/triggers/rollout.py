"""Waits in the triggerer until the InferenceService serves the new version (or fails, or time runs out).

Stateless: it reads the InferenceService (and, when configured, the Argo CD Application) on every poll
and judges it in the InferenceService's deployment mode: ``rollout.inference_service_state`` (Knative:
revisions and traffic) or ``rollout.deployment_rollout_state`` (Standard: the predictor Deployment,
read too). It may be restarted at any time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from model_lifecycle.rollout import RolloutState

TIMEOUT = "timeout"


class InferenceServiceRolloutTrigger(BaseTrigger):
    def __init__(self, *, kubernetes_conn_id: str, namespace: str, name: str, storage_uri: str,
                 previous_revision: str | None, merge_sha: str, argocd_application: str | None,
                 deadline: str, poll_interval: float, canary_percent: int | None = None) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self.namespace = namespace
        self.name = name
        self.storage_uri = storage_uri
        self.previous_revision = previous_revision
        self.merge_sha = merge_sha
        self.argocd_application = argocd_application
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.canary_percent = canary_percent

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"kubernetes_conn_id": self.kubernetes_conn_id, "namespace": self.namespace,
             "name": self.name, "storage_uri": self.storage_uri,
             "previous_revision": self.previous_revision, "merge_sha": self.merge_sha,
             "argocd_application": self.argocd_application, "deadline": self.deadline,
             "poll_interval": self.poll_interval, "canary_percent": self.canary_percent},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from model_lifecycle.triggers.waiting import WaitLog

        deadline = dt.datetime.fromisoformat(self.deadline)
        waits = WaitLog(self.log)
        while True:
            state, url = await self._look()
            if state.final:
                yield TriggerEvent({"state": state.state, "reason": state.reason,
                                    "conditions": state.conditions, "url": url})
                return
            remaining = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"state": TIMEOUT, "reason": state.reason, "conditions": state.conditions,
                                    "url": url})
                return
            wait = min(self.poll_interval, remaining)
            waits.waiting(f"{self.namespace}/{self.name}", state.reason, wait)
            await asyncio.sleep(wait)

    async def _look(self) -> tuple[RolloutState, str | None]:
        """Argo CD first (when configured): until it has synced the merge, the InferenceService
        cannot show it."""
        from model_lifecycle.hooks.argocd import ArgoCdHook
        from model_lifecycle.hooks.kserve import KServeHook
        from model_lifecycle.rollout import (
            RolloutState,
            deployment_mode,
            deployment_rollout_state,
            inference_service_state,
            predictor_deployment_name,
            serving_url,
        )

        if self.argocd_application:
            revision, sync_status = await ArgoCdHook().asynced_revision(self.argocd_application)
            if revision != self.merge_sha or sync_status != "Synced":
                return RolloutState("waiting", f"Argo CD Application {self.argocd_application!r} is "
                                               f"{sync_status} at {revision}, not yet at the merge "
                                               f"{self.merge_sha}"), None
        isvc = await KServeHook(self.kubernetes_conn_id).aget_inference_service(self.namespace, self.name)
        if isvc is None:
            return RolloutState("waiting", f"InferenceService {self.namespace}/{self.name} does not "
                                           "exist yet"), None
        url = serving_url(isvc, canary=self.canary_percent is not None)
        try:
            mode = deployment_mode(isvc)
        except ValueError as error:
            return RolloutState("failed", f"InferenceService {self.namespace}/{self.name}: {error}"), url
        if mode == "Standard":
            predictor = (isvc.get("spec") or {}).get("predictor") or {}
            deployment = await KServeHook(self.kubernetes_conn_id).aget_deployment(
                self.namespace, predictor_deployment_name(self.name, predictor_name=predictor.get("name")))
            return deployment_rollout_state(isvc, deployment, storage_uri=self.storage_uri), url
        return inference_service_state(isvc, storage_uri=self.storage_uri,
                                       previous_revision=self.previous_revision,
                                       canary_percent=self.canary_percent), url
