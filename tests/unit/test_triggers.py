"""Every trigger serializes its whole state: what the triggerer rebuilds from the serialized form (on a
restart, or on another triggerer) is the same trigger, and the state is plain JSON holding no secret."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.module_loading import import_string
from airflow.triggers.base import BaseTrigger

from model_lifecycle.results import ChangeRef
from model_lifecycle.specs import GitOps, InferenceServiceRef
from model_lifecycle.triggers.merge import MergeTrigger
from model_lifecycle.triggers.rollout import InferenceServiceRolloutTrigger

GITOPS = GitOps(provider="github", repository="acme/gitops", manifest_path="models/isvc.yaml",
                inference_service=InferenceServiceRef(name="isvc", namespace="models"), auto_merge=True)
CHANGE = ChangeRef(provider="github", branch="model-lifecycle/models/isvc/m-v2", base_branch="main",
                   head_sha="a" * 40, url="https://github.example/acme/gitops/pull/7", number=7)


@pytest.mark.parametrize("trigger", [
    MergeTrigger(gitops=GITOPS.model_dump(mode="json"), change=CHANGE.to_xcom(),
                 deadline="2026-11-05T03:00:00+00:00", poll_interval=30,
                 first_check={"at": "2026-11-02T03:01:00+00:00", "reason": "rate limited"}),
    MergeTrigger(gitops=GITOPS.model_dump(mode="json"), change=CHANGE.to_xcom(),
                 deadline="2026-11-05T03:00:00+00:00", poll_interval=30),
    InferenceServiceRolloutTrigger(
        kubernetes_conn_id="kubernetes_default", namespace="models", name="isvc",
        storage_uri="s3://mlflow/artifacts/1/models/m-1/artifacts", previous_revision="isvc-predictor-00001",
        merge_sha="c" * 40, argocd_application="isvc", deadline="2026-11-02T03:30:00+00:00",
        poll_interval=15),
    InferenceServiceRolloutTrigger(
        kubernetes_conn_id="kubernetes_default", namespace="models", name="isvc",
        storage_uri="s3://mlflow/artifacts/1/models/m-1/artifacts", previous_revision=None,
        merge_sha="c" * 40, argocd_application=None, deadline="2026-11-02T03:30:00+00:00",
        poll_interval=15),
], ids=["merge, told to wait first", "merge", "rollout with Argo CD", "rollout, first revision"])
def test_trigger_round_trips_through_its_serialized_form(trigger: BaseTrigger) -> None:
    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))  # plain JSON: nothing but values
    rebuilt = import_string(classpath)(**stored)
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == (classpath, kwargs)
