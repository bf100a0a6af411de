"""The KServe rollout verdict, over InferenceService objects that match the KServe CRD schema."""

from __future__ import annotations

from typing import Any

import pytest

from model_lifecycle.rollout import (
    check_traffic_split,
    inference_service_state,
    kserve_storage_problem,
    serving_url,
    smoke_predictions,
    smoke_request_body,
)
from model_lifecycle.specs import SmokeRequest
from tests.support.kube_api import schema_violations
from tests.support.serving import inference_service_status

NEW_URI = "s3://mlflow/artifacts/1/models/m-new/artifacts"
OLD, NEW = "fraud-predictor-00001", "fraud-predictor-00002"


def isvc(status: dict[str, Any] | None, *, uri: str = NEW_URI, canary: int | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2",
                                           "storageUri": uri}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    obj = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": "fraud", "namespace": "models"}, "spec": {"predictor": predictor}}
    if status is not None:
        obj["status"] = status
    assert schema_violations(obj) == []
    return obj


def status(**overrides: Any) -> dict[str, Any]:
    fields = dict(ready=NEW, created=NEW, rolled_out=NEW, traffic={NEW: 100}, transition="UpToDate",
                  active="Loaded", target="Loaded")
    return inference_service_status(**{**fields, **overrides})


def verdict(obj: dict[str, Any], canary_percent: int | None = None) -> tuple[str, str]:
    state = inference_service_state(obj, storage_uri=NEW_URI, previous_revision=OLD,
                                    canary_percent=canary_percent)
    return state.state, state.reason


def test_new_revision_ready_with_all_traffic_passes() -> None:
    state, reason = verdict(isvc(status()))
    assert state == "passed"
    assert reason == f"revision '{NEW}' has all the traffic; model Loaded and UpToDate at {NEW_URI}"


def test_manifest_not_applied_yet_waits() -> None:
    state, reason = verdict(isvc(status(ready=OLD, created=OLD, rolled_out=OLD, traffic={OLD: 100}),
                                 uri="s3://old"))
    assert state == "waiting" and "not yet" in reason and "GitOps agent" in reason


def test_old_revision_still_ready_waits() -> None:
    state, reason = verdict(isvc(status(ready=OLD, created=OLD, rolled_out=OLD, traffic={OLD: 100})))
    assert state == "waiting"
    assert reason == f"the latest ready revision is still '{OLD}', the one from before the merge"


def test_new_revision_created_but_not_ready_waits() -> None:
    state, reason = verdict(isvc(status(ready=OLD, created=NEW, rolled_out=OLD, traffic={OLD: 100},
                                        transition="InProgress", target="Loading",
                                        deployment=("Unknown", "RevisionMissing"))))
    assert state == "waiting" and reason == f"revision '{NEW}' is created, '{OLD}' is the latest ready"


def test_failed_load_fails_at_once_although_the_old_model_is_still_loaded() -> None:
    obj = isvc(status(ready=OLD, created=NEW, rolled_out=OLD, traffic={OLD: 100},
                      transition="BlockedByFailedLoad", active="Loaded", target="FailedToLoad",
                      deployment=("False", "RevisionFailed"),
                      failure={"reason": "ModelLoadFailed", "message": "no MLmodel file found",
                               "modelRevisionName": NEW}))
    state, reason = verdict(obj)
    assert state == "failed"
    assert "ModelLoadFailed: no MLmodel file found" in reason
    assert "activeModelState 'Loaded' is the previous model" in reason


def test_invalid_spec_fails() -> None:
    state, reason = verdict(isvc(status(transition="InvalidSpec", target="Pending",
                                        failure={"reason": "InvalidPredictorSpec", "message": "bad"})))
    assert state == "failed" and "InvalidPredictorSpec: bad" in reason


def test_any_false_condition_waits() -> None:
    state, reason = verdict(isvc(status(deployment=("False", "RevisionFailed"))))
    assert state == "waiting" and reason == "condition(s) ['LatestDeploymentReady'] are False"


def test_traffic_not_yet_moved_waits() -> None:
    state, reason = verdict(isvc(status(rolled_out=OLD, traffic={NEW: 90, OLD: 10})))
    assert (state, reason) == ("waiting", f"revision '{NEW}' has 90% of the traffic, not 100%")
    state, reason = verdict(isvc(status(rolled_out=OLD)))
    assert (state, reason) == ("waiting", f"latestRolledoutRevision is '{OLD}', not '{NEW}'")


def test_canary_stage_waits_for_the_canary_share_then_passes() -> None:
    state, reason = verdict(isvc(status(rolled_out=OLD, traffic={NEW: 0, OLD: 100}), canary=20), 20)
    assert state == "waiting"
    assert reason == (f"canary in progress: revision '{NEW}' has 0% of the traffic, waiting for the "
                      "canary's 20%")
    state, reason = verdict(isvc(status(rolled_out=OLD, traffic={NEW: 20, OLD: 80}), canary=20), 20)
    assert state == "passed" and reason.startswith(f"canary: revision '{NEW}' has the canary's 20% of the "
                                                   "traffic")


def test_a_canary_share_is_not_a_full_rollout() -> None:
    """Without a canary stage the version becomes Production: 20% of the traffic is not enough."""
    state, reason = verdict(isvc(status(rolled_out=OLD, traffic={NEW: 20, OLD: 80}), canary=20))
    assert state == "waiting"
    assert reason == (f"revision '{NEW}' has 20% of the traffic, not 100% "
                      "(spec.predictor.canaryTrafficPercent is 20)")


def test_the_smoke_request_of_a_canary_goes_to_its_tag() -> None:
    obj = isvc(status(rolled_out=OLD, traffic={NEW: 20, OLD: 80}), canary=20)
    assert serving_url(obj, canary=False) == "http://127.0.0.1"
    assert serving_url(obj, canary=True) is None  # no tag routing: no URL reaches the canary alone
    obj["status"] = status(rolled_out=OLD, traffic={NEW: 20, OLD: 80}, tag_urls={
        "latest": "http://latest.example", "prev": "http://prev.example"})
    assert schema_violations(obj) == []
    assert serving_url(obj, canary=True) == "http://latest.example"


def test_full_rollout_after_the_canary_passes() -> None:
    state, reason = verdict(isvc(status(), canary=100))
    assert state == "passed" and reason.startswith(f"revision '{NEW}' has all the traffic")


TAG_ROUTING = {"serving.kserve.io/enable-tag-routing": "true"}


@pytest.mark.parametrize(("declared", "canary_percent", "problem"), [
    (None, None, None), (100, None, None), (10, 10, None),
    (10, 10, "rollout.kserve.canary needs the annotation serving.kserve.io/enable-tag-routing: \"true\", "
             "so that the canary's smoke request reaches the canary revision itself (its 'latest' tag URL) "
             "and not whichever revision the split picks"),
    (10, None, "spec.predictor.canaryTrafficPercent is 10, and the model spec declares no "
               "rollout.kserve.canary: the version would be marked Production while 10% of the requests "
               "reach it. Declare rollout.kserve.canary.traffic_percent: 10, or remove canaryTrafficPercent"),
])
def test_the_traffic_split_must_be_the_one_the_spec_declares(declared: int | None, canary_percent: int | None,
                                                             problem: str | None) -> None:
    obj = isvc(None, canary=declared)
    if not (problem or "").startswith("rollout.kserve.canary needs the annotation"):
        obj["metadata"]["annotations"] = TAG_ROUTING
    found = check_traffic_split(obj, canary_percent=canary_percent, manifest="isvc.yaml")
    assert found == ([] if problem is None else [f"isvc.yaml: {problem}"])


def test_a_canary_needs_knative_mode() -> None:
    obj = isvc(None)
    obj["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert check_traffic_split(obj, canary_percent=10, manifest="isvc.yaml") == [
        "isvc.yaml: the InferenceService is in KServe's Standard mode, and rollout.kserve.canary needs "
        "Knative mode (serving.kserve.io/deploymentMode: Knative): only its revisions split the traffic"]


def test_model_still_loading_waits() -> None:
    state, reason = verdict(isvc(status(transition="InProgress", target="Loading")))
    assert (state, reason) == ("waiting", "model transitionStatus 'InProgress', targetModelState 'Loading'")


def test_without_status_or_conditions_waits() -> None:
    state, reason = verdict(isvc(None))
    assert state == "waiting" and "not True yet" in reason


def test_the_observed_generation_is_not_trusted() -> None:
    # status.observedGeneration may match the spec while the old revision still serves (kserve#6081)
    obj = isvc(status(ready=OLD, created=OLD, rolled_out=OLD, traffic={OLD: 100}))
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"]
    assert verdict(obj)[0] == "waiting"


SMOKE = SmokeRequest(instances=[[1.0, 2.0], [3.0, 4.0]])


def test_smoke_request_in_both_protocols() -> None:
    assert smoke_request_body("v1", SMOKE) == {"instances": [[1.0, 2.0], [3.0, 4.0]]}
    assert smoke_request_body("v2", SMOKE) == {"inputs": [
        {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]}
    assert smoke_predictions("v1", {"predictions": [0, 1]}) == [0, 1]
    assert smoke_predictions("v2", {"outputs": [{"name": "o", "data": [0, 1]}]}) == [0, 1]


@pytest.mark.parametrize(("protocol", "answer", "missing"), [
    ("v1", {"outputs": []}, "predictions"), ("v2", {"predictions": [1]}, "outputs\\[0\\].data")])
def test_malformed_answer_is_named(protocol: str, answer: dict[str, Any], missing: str) -> None:
    with pytest.raises(ValueError, match=f"the {protocol} answer has no {missing}"):
        smoke_predictions(protocol, answer)


@pytest.mark.parametrize(("uri", "readable"), [
    ("s3://mlflow/artifacts/1/models/m-1/artifacts", True), ("gs://bucket/model", True),
    ("file:///srv/models/m-1", True), ("pvc://models/m-1", True), ("/mnt/models/m-1", True),
    ("https://example.com/model.tar.gz", True),
    ("mlflow-artifacts:/1/models/m-1/artifacts", False), ("models:/fraud/3", False),
    ("/tmp/artifacts/m-1", False), ("ftp://example.com/model", False),
])
def test_what_kserve_storage_reads(uri: str, readable: bool) -> None:
    problem = kserve_storage_problem(uri)
    assert (problem is None) == readable
    if problem:
        assert problem.startswith(f"KServe's storage initializer cannot read {uri!r}: it reads gs://, s3://")
