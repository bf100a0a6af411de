"""Verifying the rollout on KServe: deferrable until the InferenceService serves the new version on a
new, ready, fully rolled-out revision; then the smoke request is sent to it and its answer checked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.operators.base import ModelLifecycleOperator
from model_lifecycle.triggers.rollout import TIMEOUT, InferenceServiceRolloutTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class KServeRolloutSensor(ModelLifecycleOperator, BaseSensorOperator):
    inputs = ('registered', 'merged')
    template_fields: Sequence[str] = inputs
    kubernetes_conn_id = "kubernetes_default"
    ui_color = "#e5dbff"

    def execute(self, context: Context) -> None:
        from model_lifecycle.hooks.kserve import argocd_configured
        from model_lifecycle.registry import Tag

        isvc = self.spec.gitops.inference_service
        version = self.registered["version"]
        application = None
        if argocd_configured():
            application = self.spec.rollout.kserve.argocd_application or isvc.name
            self.log.info("Argo CD is configured: Application %r must sync %s first.", application,
                          self.merged["merge_sha"])
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=self.spec.rollout.timeout_minutes)
        previous = self.registry.version(version).tags.get(Tag.PREVIOUS_REVISION)
        self.log.info("Waiting until %s/%s serves v%s on a revision newer than %r, until %s.", isvc.namespace,
                      isvc.name, version, previous, deadline.isoformat(timespec="seconds"))
        self.defer(
            trigger=InferenceServiceRolloutTrigger(
                kubernetes_conn_id=self.kubernetes_conn_id,
                namespace=isvc.namespace,
                name=isvc.name,
                storage_uri=self.storage_uri(version),
                previous_revision=previous,
                merge_sha=self.merged["merge_sha"],
                argocd_application=application,
                deadline=deadline.isoformat(),
                poll_interval=self.spec.rollout.kserve.poll_interval_seconds,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        from model_lifecycle.registry import Tag, now_iso

        isvc = self.spec.gitops.inference_service
        subject = f"rollout of {self.spec.registered_model} v{self.registered['version']} to " \
                  f"{isvc.namespace}/{isvc.name}"
        if event["state"] == TIMEOUT:
            raise AirflowFailException(
                f"{subject} did not complete within rollout.timeout_minutes "
                f"({self.spec.rollout.timeout_minutes}): {event['reason']}; last observed conditions: "
                f"{event['conditions'] or 'none'}"
            )
        if event["state"] == "failed":
            raise AirflowFailException(f"{subject} failed: {event['reason']}")
        details = [event["reason"]]
        if self.spec.rollout.smoke_request is not None:
            details.append(self._smoke_test(event["url"], subject))
        detail = "; ".join(details)
        self.log.info("Rollout verified: %s", detail)
        version = self.registered["version"]
        self.registry.set_tags(version, {Tag.ROLLOUT_TARGET: "kserve", Tag.ROLLOUT_DETAIL: detail})
        self.registry.set_tags(version, {Tag.ROLLOUT_VERIFIED_AT: now_iso()}, keep_existing=True)
        return detail

    def _smoke_test(self, status_url: str | None, subject: str) -> str:
        import requests

        from model_lifecycle.rollout import check_smoke_answer, smoke_predictions, smoke_request_body

        kserve = self.spec.rollout.kserve
        base = kserve.url or status_url
        if not base:
            raise AirflowFailException(f"{subject}: the InferenceService has no status.url; set "
                                       "rollout.kserve.url to where Airflow reaches it")
        name = self.spec.gitops.inference_service.name
        path = f"/v1/models/{name}:predict" if kserve.protocol == "v1" else f"/v2/models/{name}/infer"
        smoke = self.spec.rollout.smoke_request
        assert smoke is not None
        response = requests.post(f"{base.rstrip('/')}{path}", json=smoke_request_body(kserve.protocol, smoke),
                                 timeout=60)
        if response.status_code != 200:
            raise AirflowFailException(f"{subject}: the smoke request to {response.url} got HTTP "
                                       f"{response.status_code}: {response.text[:500]}")
        try:
            predictions = smoke_predictions(kserve.protocol, response.json())
        except ValueError as error:
            raise AirflowFailException(f"{subject}: {error}") from None
        verdict = check_smoke_answer(smoke, predictions)
        if not verdict.ok:
            raise AirflowFailException(f"{subject}: {verdict.reason}")
        return f"{verdict.reason} from {response.url}"
