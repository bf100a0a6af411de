"""The KServe Standard-mode rollout verdict, over InferenceServices that match the KServe CRD schema and
predictor Deployments that the official Kubernetes client reads as apps/v1 Deployments."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes.client import ApiClient

from model_lifecycle.rollout import (
    deployment_mode,
    deployment_rollout_state,
    inference_service_state,
    predictor_deployment_name,
)
from tests.support.kube_api import schema_violations

NAME, NAMESPACE = "demo-breast-cancer", "models"
DEPLOYMENT = "demo-breast-cancer-predictor"
NEW_RS = "demo-breast-cancer-predictor-5d9c8b7f4"
OLD_URI = "s3://mlflow/artifacts/1/models/m-old/artifacts"
NEW_URI = "s3://mlflow/artifacts/1/models/m-new/artifacts"
NOW = "2025-06-01T12:00:00Z"
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"


# InferenceServices ---------------------------------------------------------------------------

def isvc(*, uri: str = NEW_URI, transition: str = "UpToDate", active: str = "Loaded", target: str = "Loaded",
         predictor_ready: tuple[str, str] = ("True", "MinimumReplicasAvailable"), observed: int = 2,
         failure: dict[str, Any] | None = None, with_status: bool = True) -> dict[str, Any]:
    """A Standard-mode InferenceService as KServe writes it: PropagateRawStatus sets PredictorReady from
    the Deployment and copies its observedGeneration; no revisions, no traffic."""
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": 2,
                     "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 3, "model": {
            "modelFormat": {"name": "mlflow"}, "protocolVersion": "v2", "storageUri": uri}}},
    }
    if with_status:
        ready = predictor_ready[0]
        conditions = [{"type": "IngressReady", "status": "True", "lastTransitionTime": NOW},
                      {"type": "PredictorReady", "status": ready, "reason": predictor_ready[1],
                       "lastTransitionTime": NOW},
                      {"type": "Ready", "status": ready, "lastTransitionTime": NOW}]
        model_status: dict[str, Any] = {"transitionStatus": transition,
                                        "states": {"activeModelState": active, "targetModelState": target},
                                        "copies": {"failedCopies": 1 if failure else 0, "totalCopies": 1}}
        if failure:
            model_status["lastFailureInfo"] = {**failure, "time": NOW}
        url = f"http://{NAME}-{NAMESPACE}.example.com"
        obj["status"] = {
            "url": url, "address": {"url": f"http://{DEPLOYMENT}.{NAMESPACE}.svc.cluster.local"},
            "observedGeneration": observed, "deploymentMode": "Standard", "conditions": conditions,
            "components": {"predictor": {"url": url}}, "modelStatus": model_status,
        }
    assert schema_violations(obj) == []
    return obj


# Deployments ---------------------------------------------------------------------------------

AVAILABLE = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."}
COMPLETE = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
            "message": f'ReplicaSet "{NEW_RS}" has successfully progressed.'}
ROLLING = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
           "message": f'ReplicaSet "{NEW_RS}" is progressing.'}
TIMED_OUT = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": f'ReplicaSet "{NEW_RS}" has timed out progressing.'}
QUOTA = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": f'pods "{NEW_RS}-x7k2p" is forbidden: exceeded quota: models-quota, requested: cpu=250m, '
                    "used: cpu=2, limited: cpu=2"}


def deployment(*, uri: str = NEW_URI, generation: int = 2, observed: int = 2, desired: int = 1,
               replicas: int = 1, updated: int = 1, available: int = 1,
               conditions: tuple[dict[str, str], ...] = (AVAILABLE, COMPLETE)) -> dict[str, Any]:
    """The predictor Deployment as the API serves it (createRawDefaultDeployment's shape); status
    counts that are 0 are omitted, as the API omits them."""
    labels = {"app": f"isvc.{DEPLOYMENT}", "component": "predictor",
              "serving.kserve.io/inferenceservice": NAME}
    annotations = {"serving.kserve.io/deploymentMode": "Standard", SOURCE_URI: uri}
    counts = {"replicas": replicas, "updatedReplicas": updated, "readyReplicas": available,
              "availableReplicas": available, "unavailableReplicas": max(replicas - available, 0)}
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "generation": generation,
                     "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": desired,
            "selector": {"matchLabels": {"app": f"isvc.{DEPLOYMENT}"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"serviceAccountName": "kserve-models", "containers": [{
                    "name": "kserve-container", "image": "docker.io/seldonio/mlserver:1.6.1",
                    "env": [{"name": "MLSERVER_MODEL_URI", "value": "/mnt/models"}],
                    "ports": [{"name": "h2c", "containerPort": 8080, "protocol": "TCP"}],
                }]},
            },
        },
        "status": {
            "observedGeneration": observed,
            **{field: count for field, count in counts.items() if count},
            "conditions": [{**condition, "lastUpdateTime": NOW, "lastTransitionTime": NOW}
                           for condition in conditions],
        },
    }
    assert_is_a_deployment(obj)
    return obj


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _as_serialized(value: Any) -> Any:
    """What the client writes back: date-times in ISO form with +00:00 for Z."""
    if isinstance(value, dict):
        return {key: _as_serialized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_serialized(item) for item in value]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return value[:-1] + "+00:00"
    return value


def assert_is_a_deployment(obj: dict[str, Any]) -> None:
    """The client validates required fields and drops unknown ones, so a lossless round trip means
    every field is an apps/v1 Deployment field with a valid value."""
    client = ApiClient()
    # deserialize() takes an HTTP response; this is the dict-taking step behind it
    model = client._ApiClient__deserialize(obj, "V1Deployment")
    assert client.sanitize_for_serialization(model) == _as_serialized(obj)


# The verdict ---------------------------------------------------------------------------------

def verdict(obj: dict[str, Any], dep: dict[str, Any] | None) -> tuple[str, str]:
    state = deployment_rollout_state(obj, dep, storage_uri=NEW_URI)
    return state.state, state.reason


def test_all_replicas_updated_and_available_with_the_model_loaded_passes() -> None:
    state = deployment_rollout_state(isvc(), deployment(), storage_uri=NEW_URI)
    assert (state.state, state.reason) == (
        "passed", f"Deployment '{DEPLOYMENT}' has all 1 replica(s) updated and available on {NEW_URI}; "
                  "model Loaded and UpToDate")
    assert state.final
    assert state.conditions == ("Available=True (MinimumReplicasAvailable), "
                                "Progressing=True (NewReplicaSetAvailable)")


def test_several_replicas_pass_once_all_are_updated_and_available() -> None:
    dep = deployment(desired=3, replicas=3, updated=3, available=3)
    assert verdict(isvc(), dep) == (
        "passed", f"Deployment '{DEPLOYMENT}' has all 3 replica(s) updated and available on {NEW_URI}; "
                  "model Loaded and UpToDate")


def test_old_replica_set_still_serving_waits_although_the_isvc_looks_ready() -> None:
    # KServe keeps PredictorReady True and the model Loaded while the old ReplicaSet is Available
    dep = deployment(desired=1, replicas=2, updated=1, available=1, conditions=(AVAILABLE, ROLLING))
    state = deployment_rollout_state(isvc(), dep, storage_uri=NEW_URI)
    assert (state.state, state.reason) == (
        "waiting", f"an old ReplicaSet still serves: Deployment '{DEPLOYMENT}' has 2 replica(s), 1 updated")
    assert state.conditions == ("Available=True (MinimumReplicasAvailable), "
                                "Progressing=True (ReplicaSetUpdated)")
    assert not state.final


def test_new_replica_not_available_yet_waits() -> None:
    dep = deployment(replicas=1, updated=1, available=0, conditions=(
        {**AVAILABLE, "status": "False", "reason": "MinimumReplicasUnavailable",
         "message": "Deployment does not have minimum availability."}, ROLLING))
    assert verdict(isvc(predictor_ready=("False", "MinimumReplicasUnavailable")), dep) == (
        "waiting", f"Deployment '{DEPLOYMENT}' has 0 available replica(s) of 1 desired")


def test_scaling_up_the_new_replica_set_waits() -> None:
    dep = deployment(desired=3, replicas=2, updated=2, available=2, conditions=(AVAILABLE, ROLLING))
    assert verdict(isvc(), dep) == (
        "waiting", f"Deployment '{DEPLOYMENT}' has 2 updated replica(s) of 3 desired")


def test_generation_not_observed_yet_waits() -> None:
    dep = deployment(generation=3, observed=2)
    assert verdict(isvc(), dep) == (
        "waiting", f"Deployment '{DEPLOYMENT}' generation 3 not observed yet, observedGeneration 2")


def test_a_deadline_exceeded_by_the_previous_generation_does_not_fail_this_rollout() -> None:
    # the conditions still describe the previous rollout until the new generation is observed
    dep = deployment(generation=3, observed=2, replicas=2, updated=1, conditions=(AVAILABLE, TIMED_OUT))
    assert verdict(isvc(), dep)[0] == "waiting"


def test_pod_template_still_on_the_old_uri_waits() -> None:
    dep = deployment(uri=OLD_URI)
    assert verdict(isvc(), dep) == (
        "waiting", f"the pod template of Deployment '{DEPLOYMENT}' still has storage URI '{OLD_URI}', "
                   f"not yet '{NEW_URI}' (KServe has not reconciled the change)")


def test_progress_deadline_exceeded_fails_quoting_the_condition() -> None:
    dep = deployment(replicas=2, updated=1, available=1, conditions=(AVAILABLE, TIMED_OUT))
    state = deployment_rollout_state(isvc(predictor_ready=("False", "ProgressDeadlineExceeded")), dep,
                                     storage_uri=NEW_URI)
    assert (state.state, state.reason) == (
        "failed", f"Deployment '{DEPLOYMENT}' exceeded its progress deadline (ProgressDeadlineExceeded): "
                  f'ReplicaSet "{NEW_RS}" has timed out progressing.')
    assert state.final
    assert state.conditions == ("Available=True (MinimumReplicasAvailable), "
                                "Progressing=False (ProgressDeadlineExceeded)")


def test_replica_failure_fails_quoting_the_condition() -> None:
    dep = deployment(replicas=1, updated=0, available=1, conditions=(AVAILABLE, ROLLING, QUOTA))
    assert verdict(isvc(), dep) == (
        "failed", f"Deployment '{DEPLOYMENT}' cannot create its pods (ReplicaFailure FailedCreate): "
                  f"{QUOTA['message']}")


def test_failed_load_fails_at_once_while_the_old_replica_set_serves() -> None:
    message = "Failed to fetch model. No model found in artifacts/1/models/m-new/artifacts."
    obj = isvc(transition="BlockedByFailedLoad", active="Loaded", target="FailedToLoad",
               failure={"reason": "ModelLoadFailed", "message": message, "exitCode": 1})
    dep = deployment(replicas=2, updated=1, available=1, conditions=(AVAILABLE, ROLLING))
    assert verdict(obj, dep) == (
        "failed", "the new model failed to load (transitionStatus BlockedByFailedLoad, targetModelState "
                  f"FailedToLoad): ModelLoadFailed: {message}; activeModelState 'Loaded' is the previous "
                  "model")


def test_failed_load_is_worded_as_in_knative_mode() -> None:
    failure = {"reason": "ModelLoadFailed", "message": "no MLmodel file found"}
    obj = isvc(transition="BlockedByFailedLoad", target="FailedToLoad", failure=failure)
    knative = inference_service_state(obj, storage_uri=NEW_URI, previous_revision=None)
    assert knative.state == "failed"
    assert verdict(obj, deployment()) == ("failed", knative.reason)


def test_storage_uri_not_applied_waits() -> None:
    assert verdict(isvc(uri=OLD_URI), deployment(uri=OLD_URI)) == (
        "waiting", f"spec.predictor.model.storageUri is '{OLD_URI}', not yet '{NEW_URI}' "
                   "(the GitOps agent has not applied the merge)")


def test_no_deployment_waits() -> None:
    state = deployment_rollout_state(isvc(with_status=False), None, storage_uri=NEW_URI)
    assert (state.state, state.reason, state.conditions) == (
        "waiting", f"the predictor Deployment '{DEPLOYMENT}' does not exist yet", "")


def test_model_still_loading_waits() -> None:
    assert verdict(isvc(transition="InProgress", target="Loading"), deployment()) == (
        "waiting", "model transitionStatus 'InProgress', targetModelState 'Loading'")


def test_predictor_not_ready_waits() -> None:
    assert verdict(isvc(predictor_ready=("Unknown", "ReplicaSetUpdated")), deployment()) == (
        "waiting", "condition PredictorReady is 'Unknown' (ReplicaSetUpdated), not True")


def test_predictor_deployment_name() -> None:
    assert predictor_deployment_name(NAME) == DEPLOYMENT
    assert predictor_deployment_name(NAME, predictor_name="blue") == "demo-breast-cancer-blue-predictor"


# The deployment mode -------------------------------------------------------------------------

def with_mode(*, status: str | None = None, annotation: str | None = None) -> dict[str, Any]:
    obj = isvc(with_status=False)
    obj["metadata"]["annotations"] = {}
    if annotation is not None:
        obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = annotation
    if status is not None:
        obj["status"] = {"deploymentMode": status}
    assert schema_violations(obj) == []
    return obj


@pytest.mark.parametrize(("status", "annotation", "mode"), [
    ("Standard", None, "Standard"), ("Knative", None, "Knative"),
    (None, "Standard", "Standard"), (None, "Knative", "Knative"),
    ("RawDeployment", None, "Standard"), ("Serverless", None, "Knative"),
    (None, "RawDeployment", "Standard"), (None, "Serverless", "Knative"),
    ("Standard", "Knative", "Standard"),  # KServe keeps the mode it recorded
    (None, None, "Knative"),  # the shipped configmap's defaultDeploymentMode
])
def test_deployment_mode(status: str | None, annotation: str | None, mode: str) -> None:
    assert deployment_mode(with_mode(status=status, annotation=annotation)) == mode


@pytest.mark.parametrize(("status", "annotation", "message"), [
    (None, "ModelMesh", "annotation serving.kserve.io/deploymentMode is 'ModelMesh'"),
    ("ModelMesh", None, "status.deploymentMode is 'ModelMesh'"),
    (None, "Raw", "annotation serving.kserve.io/deploymentMode is 'Raw'"),
])
def test_unjudged_deployment_modes_raise(status: str | None, annotation: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        deployment_mode(with_mode(status=status, annotation=annotation))
