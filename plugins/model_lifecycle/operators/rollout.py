"""Verifying the rollout. Target ``local``: the model at the URI the merged manifest names loads through
MLflow and answers the spec's smoke request. Target ``kserve``: see ``sensors/rollout.py``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.operators.base import ModelLifecycleOperator
from model_lifecycle.specs import ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context


class VerifyLocalRolloutOperator(ModelLifecycleOperator):
    inputs = ('registered', 'merged')
    template_fields: Sequence[str] = inputs
    ui_color = "#e5dbff"

    def execute(self, context: Context) -> str:
        import mlflow.pyfunc
        import numpy as np

        from model_lifecycle.gitops import provider_for
        from model_lifecycle.manifests import read_pinned_model
        from model_lifecycle.registry import Tag, now_iso
        from model_lifecycle.rollout import check_pinned_model, check_smoke_answer

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        version = self.registered["version"]
        text, commit = provider_for(gitops).read_file(self.merged["merge_sha"], gitops.manifest_path)
        pinned = read_pinned_model(text, path=gitops.manifest_path, name=isvc.name, namespace=isvc.namespace)
        verdicts = [check_pinned_model(pinned, storage_uri=self.storage_uri(version),
                                       registered_model=self.spec.registered_model, version=version)]
        self._require(verdicts[-1], commit)

        mlflow.set_tracking_uri(self.mlflow.tracking_uri)
        model = mlflow.pyfunc.load_model(pinned.storage_uri)
        smoke = self.spec.rollout.smoke_request
        if smoke is not None:
            predictions = model.predict(np.asarray(smoke.instances))
            verdicts.append(check_smoke_answer(smoke, list(predictions)))
            self._require(verdicts[-1], commit)
        detail = "; ".join(verdict.reason for verdict in verdicts)
        self.log.info("Rollout verified at %s: %s", commit[:12], detail)
        self.registry.set_tags(version, {Tag.ROLLOUT_TARGET: "local", Tag.ROLLOUT_DETAIL: detail})
        self.registry.set_tags(version, {Tag.ROLLOUT_VERIFIED_AT: now_iso()}, keep_existing=True)
        return detail

    def _require(self, verdict: Any, commit: str) -> None:
        if not verdict.ok:
            raise AirflowFailException(
                f"rollout of {self.spec.registered_model} v{self.registered['version']} at "
                f"{self.spec.gitops.manifest_path}@{commit[:12]} failed: {verdict.reason}"
            )


def rollout_task(spec: ModelSpec, **kwargs: Any) -> BaseOperator:
    """The verify task for the spec's rollout target."""
    if spec.rollout.target == "kserve":
        from model_lifecycle.sensors.rollout import KServeRolloutSensor

        return KServeRolloutSensor(spec=spec, **kwargs)
    return VerifyLocalRolloutOperator(
        spec=spec, execution_timeout=dt.timedelta(minutes=spec.rollout.timeout_minutes), **kwargs)
