"""Pure rollout verdicts: does what is served match what was promoted, and does it answer correctly?

No Airflow, no MLflow: the callers fetch the merged manifest and the model's answer, this module decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model_lifecycle.manifests import PinnedModel
from model_lifecycle.specs import SmokeRequest


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def check_pinned_model(
    pinned: PinnedModel, *, storage_uri: str, registered_model: str, version: str
) -> Verdict:
    """The merged manifest must name exactly the promoted version: a reviewer may edit the PR, and a
    merge of something else must not be recorded as this version's rollout."""
    expected = {"storageUri": storage_uri, "registered model": registered_model, "version": version}
    actual = {
        "storageUri": pinned.storage_uri,
        "registered model": pinned.registered_model,
        "version": pinned.version,
    }
    differences = [
        f"{field} is {actual[field]!r}, expected {value!r}"
        for field, value in expected.items()
        if actual[field] != value
    ]
    if differences:
        return Verdict(False, "the merged manifest does not pin this version: " + "; ".join(differences))
    return Verdict(True, f"the merged manifest pins {registered_model} v{version} at {storage_uri}")


def check_smoke_answer(smoke: SmokeRequest, predictions: Sequence[Any]) -> Verdict:
    """One prediction per instance, each a plain finite value, equal to the expected ones if given."""
    predictions = [_plain(value) for value in predictions]
    if len(predictions) != len(smoke.instances):
        return Verdict(
            False,
            f"the smoke request sent {len(smoke.instances)} instances and got {len(predictions)} "
            f"predictions: {predictions!r}",
        )
    bad = [value for value in predictions if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        return Verdict(False, f"the model answered non-finite predictions {bad!r}")
    if smoke.expected_predictions is not None:
        wrong = [
            f"instance {index}: got {got!r}, expected {want!r}"
            for index, (got, want) in enumerate(zip(predictions, smoke.expected_predictions, strict=True))
            if not _equal(got, want)
        ]
        if wrong:
            return Verdict(False, "the smoke request got unexpected predictions: " + "; ".join(wrong))
    return Verdict(True, f"the smoke request got {len(predictions)} predictions: {predictions!r}")


def _plain(value: Any) -> Any:
    """numpy scalars and one-element rows become plain Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _equal(got: Any, want: Any) -> bool:
    if isinstance(got, (int, float)) and isinstance(want, (int, float)) and not isinstance(got, bool):
        return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9)
    return got == want


# KServe ------------------------------------------------------------------------------------------

READY_CONDITIONS = ("Ready", "PredictorReady", "IngressReady")
# pkg/constants/constants.go, EnableRoutingTagAnnotationKey: a URL per tagged revision (a canary's own)
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")


@dataclass(frozen=True)
class RolloutState:
    """One look at an InferenceService: ``passed``, ``waiting`` (look again) or ``failed`` (stop)."""

    state: str
    reason: str
    conditions: str = ""

    @property
    def final(self) -> bool:
        return self.state != "waiting"


def inference_service_state(
    isvc: Mapping[str, Any], *, storage_uri: str, previous_revision: str | None,
    canary_percent: int | None = None,
) -> RolloutState:
    """Is this InferenceService serving ``storage_uri`` on a new, ready, fully rolled-out revision (or,
    with ``canary_percent``, on a new ready revision that has exactly that share of the traffic)?

    ``status.observedGeneration`` is not trusted: KServe copies it from the child resource
    (kserve/kserve#6081), so the revision names and the model status are what prove the rollout.
    A failed model load fails at once: ``activeModelState`` stays Loaded with the old model then, so
    the transition status, the target state and ``lastFailureInfo`` are what tell it."""
    spec = isvc.get("spec") or {}
    status = isvc.get("status") or {}
    predictor_spec = spec.get("predictor") or {}
    conditions = _conditions(status)
    summary = _condition_summary(conditions)

    def state(kind: str, reason: str) -> RolloutState:
        return RolloutState(kind, reason, summary)

    not_applied = _not_applied(predictor_spec, storage_uri)
    if not_applied:
        return state("waiting", not_applied)

    model_status = status.get("modelStatus") or {}
    transition = model_status.get("transitionStatus")
    states = model_status.get("states") or {}
    failed_load = _failed_load_reason(model_status)
    if failed_load:
        return state("failed", failed_load)

    not_true = [kind for kind in READY_CONDITIONS if conditions.get(kind, {}).get("status") != "True"]
    if not_true:
        return state("waiting", f"condition(s) {not_true} not True yet")
    false = [kind for kind, condition in conditions.items() if condition.get("status") == "False"]
    if false:
        return state("waiting", f"condition(s) {false} are False")

    predictor = (status.get("components") or {}).get("predictor") or {}
    ready, created = predictor.get("latestReadyRevision"), predictor.get("latestCreatedRevision")
    if not ready or ready != created:
        return state("waiting", f"revision {created!r} is created, {ready!r} is the latest ready")
    if previous_revision and ready == previous_revision:
        return state("waiting",
                     f"the latest ready revision is still {ready!r}, the one from before the merge")

    traffic = {entry.get("revisionName"): entry.get("percent") or 0
               for entry in predictor.get("traffic") or []}
    share = traffic.get(ready, 0)
    if canary_percent is None:
        if share != 100:
            declared = predictor_spec.get("canaryTrafficPercent")
            hint = "" if declared in (None, 100) else f" (spec.predictor.canaryTrafficPercent is {declared})"
            return state("waiting", f"revision {ready!r} has {share}% of the traffic, not 100%{hint}")
        rolled_out = predictor.get("latestRolledoutRevision")
        if rolled_out != ready:
            return state("waiting", f"latestRolledoutRevision is {rolled_out!r}, not {ready!r}")
        rollout = f"revision {ready!r} has all the traffic"
    else:
        if share != canary_percent:
            return state("waiting", f"canary in progress: revision {ready!r} has {share}% of the traffic, "
                                    f"waiting for the canary's {canary_percent}%")
        rollout = f"canary: revision {ready!r} has the canary's {canary_percent}% of the traffic"

    if transition != "UpToDate" or states.get("targetModelState") != "Loaded":
        return state("waiting", f"model transitionStatus {transition!r}, targetModelState "
                                f"{states.get('targetModelState')!r}")
    return state("passed", f"{rollout}; model Loaded and UpToDate at {storage_uri}")


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {condition["type"]: condition
            for condition in status.get("conditions") or [] if "type" in condition}


def check_traffic_split(isvc: Mapping[str, Any], *, canary_percent: int | None, manifest: str) -> list[str]:
    """The manifest's traffic split must be the one the model spec declares: without a canary stage a
    version is Production once rolled out, so no share may hold part of the traffic back; a canary
    needs Knative mode, whose revisions and traffic the rollout check reads."""
    declared = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    if canary_percent is None:
        if declared not in (None, 100):
            return [f"{manifest}: spec.predictor.canaryTrafficPercent is {declared}, and the model spec "
                    "declares no rollout.kserve.canary: the version would be marked Production while "
                    f"{declared}% of the requests reach it. Declare rollout.kserve.canary.traffic_percent: "
                    f"{declared}, or remove canaryTrafficPercent"]
        return []
    try:
        mode = deployment_mode(isvc)
    except ValueError as error:
        return [f"{manifest}: {error}"]
    if mode != "Knative":
        return [f"{manifest}: the InferenceService is in KServe's {mode} mode, and rollout.kserve.canary "
                "needs Knative mode (serving.kserve.io/deploymentMode: Knative): only its revisions "
                "split the traffic"]
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    if annotations.get(TAG_ROUTING_ANNOTATION) != "true":
        return [f"{manifest}: rollout.kserve.canary needs the annotation {TAG_ROUTING_ANNOTATION}: "
                "\"true\", so that the canary's smoke request reaches the canary revision itself (its "
                "'latest' tag URL) and not whichever revision the split picks"]
    return []


def serving_url(isvc: Mapping[str, Any], *, canary: bool) -> str | None:
    """Where the smoke request goes: the InferenceService's URL, or for a canary the URL of its latest
    revision's tag (``enable-tag-routing``; reconcilers/knative/ksvc_reconciler.go tags it
    ``latest``)."""
    status = isvc.get("status") or {}
    if canary:
        traffic = ((status.get("components") or {}).get("predictor") or {}).get("traffic") or []
        return next((entry.get("url") for entry in traffic
                     if entry.get("latestRevision") and entry.get("tag") == "latest"), None)
    return status.get("url") or (status.get("address") or {}).get("url")


# pkg/controller/v1beta1/inferenceservice/utils/utils.go (v0.20.0), SupportedStorageURIPrefixList: what
# KServe's webhook admits and its storage initializer downloads; the rest of a URI with a scheme fails.
KSERVE_STORAGE_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://",
                           "webhdfs://", "oci://", "oci+native://", "hf://")
# A path without a scheme is only read where the pod has it mounted (kserve_storage: MODEL_MOUNT_DIRS
# and the PVC mount).
KSERVE_MOUNTED_PATHS = ("/mnt/models", "/mnt/pvc")


def kserve_storage_problem(storage_uri: str) -> str | None:
    """Why KServe's storage initializer cannot read ``storage_uri``, or None when it can. A proxied
    ``mlflow-artifacts:`` URI passes KServe's webhook (it has no ``://``) and then fails in the storage
    initializer after the merge, with "Cannot recognize storage type"."""
    if storage_uri.startswith(KSERVE_STORAGE_PREFIXES):
        return None
    if "://" not in storage_uri and storage_uri.startswith(KSERVE_MOUNTED_PATHS):
        return None
    return (f"KServe's storage initializer cannot read {storage_uri!r}: it reads "
            f"{', '.join(KSERVE_STORAGE_PREFIXES)} and paths under {', '.join(KSERVE_MOUNTED_PATHS)}")


def smoke_request_body(protocol: str, smoke: SmokeRequest) -> dict[str, Any]:
    """The smoke request in KServe's v1 (TensorFlow-style) or v2 (Open Inference) protocol."""
    if protocol == "v1":
        return {"instances": smoke.instances}
    rows = smoke.instances
    datatype = "FP64" if all(isinstance(v, (int, float)) for row in rows for v in row) else "BYTES"
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": datatype,
                        "data": [value for row in rows for value in row]}]}


def inference_path(protocol: str, model: str) -> str:
    """Where a model server takes one inference request: V1 ``:predict`` or V2 (Open Inference) ``infer``."""
    return f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"


def smoke_predictions(protocol: str, answer: Mapping[str, Any]) -> list[Any]:
    """The predictions in a v1 or v2 answer; a malformed answer raises ``ValueError`` naming it."""
    try:
        if protocol == "v1":
            return list(answer["predictions"])
        return list(answer["outputs"][0]["data"])
    except (KeyError, IndexError, TypeError):
        expected = "predictions" if protocol == "v1" else "outputs[0].data"
        raise ValueError(f"the {protocol} answer has no {expected}: {answer!r}") from None


# KServe Standard mode ----------------------------------------------------------------------------
# Standard (RawDeployment before KServe 0.16) serves the predictor from a plain Deployment and writes
# no revisions or traffic, so the Deployment is what proves the rollout.

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# pkg/constants/constants.go, StorageInitializerSourceUriInternalAnnotationKey
SOURCE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
# pkg/constants/constants.go, ParseDeploymentMode: the pre-0.16 names
_LEGACY_DEPLOYMENT_MODES = {"RawDeployment": "Standard", "Serverless": "Knative"}
_JUDGED_DEPLOYMENT_MODES = ("Standard", "Knative")


def deployment_mode(isvc: Mapping[str, Any]) -> str:
    """How KServe deploys this InferenceService: "Standard" or "Knative".

    As pkg/controller/v1beta1/inferenceservice/utils/utils.go (GetDeploymentMode) decides it:
    ``status.deploymentMode`` first (KServe records the mode it chose and keeps it), then the
    ``serving.kserve.io/deploymentMode`` annotation, legacy names (RawDeployment, Serverless)
    normalised. With neither, KServe takes the cluster's ``defaultDeploymentMode``; the shipped
    configmap (config/configmap/inferenceservice.yaml) sets Serverless, so this returns "Knative".
    ModelMesh and unknown values raise ``ValueError`` naming the value: no verdict here judges them,
    and KServe would silently fall back to the default for an unknown annotation."""
    status_mode = (isvc.get("status") or {}).get("deploymentMode")
    annotation = ((isvc.get("metadata") or {}).get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION)
    if status_mode:
        source, value = "status.deploymentMode", status_mode
    elif annotation:
        source, value = f"annotation {DEPLOYMENT_MODE_ANNOTATION}", annotation
    else:
        return "Knative"
    mode = _LEGACY_DEPLOYMENT_MODES.get(value, value)
    if mode not in _JUDGED_DEPLOYMENT_MODES:
        raise ValueError(f"{source} is {value!r}: only Standard (RawDeployment) and Knative (Serverless) "
                         "InferenceServices can be judged")
    return mode


def predictor_deployment_name(isvc_name: str, *, predictor_name: str | None = None) -> str:
    """The predictor's Deployment in Standard mode (pkg/constants/constants.go, PredictorServiceName):
    ``<isvc>-predictor``, or ``<isvc>-<spec.predictor.name>-predictor`` when the predictor is named."""
    if predictor_name:
        return f"{isvc_name}-{predictor_name}-predictor"
    return f"{isvc_name}-predictor"


def deployment_rollout_state(
    isvc: Mapping[str, Any], deployment: Mapping[str, Any] | None, *, storage_uri: str
) -> RolloutState:
    """Is this Standard-mode InferenceService serving ``storage_uri`` from a fully rolled-out Deployment?

    The InferenceService's status cannot prove it: PropagateRawStatus
    (pkg/apis/serving/v1beta1/inference_service_status.go) keeps PredictorReady True while the old
    ReplicaSet is still Available, PropagateModelStatus marks the model Loaded as soon as the
    InferenceService is Ready, and ``status.observedGeneration`` is the Deployment's. So the
    Deployment must carry the new URI on its pod template, have observed that generation and have
    every replica updated and available. Its conditions are what ``conditions`` summarises."""
    spec = isvc.get("spec") or {}
    status = isvc.get("status") or {}
    predictor_spec = spec.get("predictor") or {}
    name = predictor_deployment_name((isvc.get("metadata") or {}).get("name", ""),
                                     predictor_name=predictor_spec.get("name"))
    deployment_status = (deployment or {}).get("status") or {}
    deployment_conditions = _conditions(deployment_status)
    summary = _condition_summary(deployment_conditions)

    def state(kind: str, reason: str) -> RolloutState:
        return RolloutState(kind, reason, summary)

    not_applied = _not_applied(predictor_spec, storage_uri)
    if not_applied:
        return state("waiting", not_applied)
    if deployment is None:
        return state("waiting", f"the predictor Deployment {name!r} does not exist yet")

    # components/predictor.go (addStorageInitializerAnnotations) puts the URI on the pod template
    template = (deployment.get("spec") or {}).get("template") or {}
    template_uri = ((template.get("metadata") or {}).get("annotations") or {}).get(SOURCE_URI_ANNOTATION)
    if template_uri != storage_uri:
        return state("waiting", f"the pod template of Deployment {name!r} still has storage URI "
                                f"{template_uri!r}, not yet {storage_uri!r} (KServe has not reconciled "
                                "the change)")

    # Before the Deployment controller observes the new generation, its conditions and counts still
    # describe the previous rollout, and a failure there must not fail this one.
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = deployment_status.get("observedGeneration", 0)
    if generation is not None and observed < generation:
        return state("waiting", f"Deployment {name!r} generation {generation} not observed yet, "
                                f"observedGeneration {observed}")

    # Also the backstop for a crashing model server: PropagateModelStatus looks for kserve-container
    # crashes only when the InferenceService is not Ready, and the old ReplicaSet keeps it Ready.
    progressing = deployment_conditions.get("Progressing") or {}
    if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return state("failed", f"Deployment {name!r} exceeded its progress deadline "
                               f"(ProgressDeadlineExceeded): {progressing.get('message') or 'no message'}")
    replica_failure = deployment_conditions.get("ReplicaFailure") or {}
    if replica_failure.get("status") == "True":
        return state("failed", f"Deployment {name!r} cannot create its pods (ReplicaFailure "
                               f"{replica_failure.get('reason')}): "
                               f"{replica_failure.get('message') or 'no message'}")

    # A failed load leaves the new ReplicaSet unavailable for good, so it is told before the counts.
    model_status = status.get("modelStatus") or {}
    failed_load = _failed_load_reason(model_status)
    if failed_load:
        return state("failed", failed_load)

    # apps/v1 defaults spec.replicas to 1; the API omits status counts that are 0.
    desired = (deployment.get("spec") or {}).get("replicas", 1)
    replicas = deployment_status.get("replicas", 0)
    updated = deployment_status.get("updatedReplicas", 0)
    available = deployment_status.get("availableReplicas", 0)
    if replicas > updated:
        return state("waiting", f"an old ReplicaSet still serves: Deployment {name!r} has {replicas} "
                                f"replica(s), {updated} updated")
    if updated != desired or replicas != desired:
        return state("waiting", f"Deployment {name!r} has {updated} updated replica(s) of {desired} desired")
    if available != desired:
        return state("waiting", f"Deployment {name!r} has {available} available replica(s) of {desired} "
                                "desired")

    transition = model_status.get("transitionStatus")
    target = (model_status.get("states") or {}).get("targetModelState")
    if transition != "UpToDate" or target != "Loaded":
        return state("waiting", f"model transitionStatus {transition!r}, targetModelState {target!r}")
    predictor_ready = _conditions(status).get("PredictorReady") or {}
    if predictor_ready.get("status") != "True":
        return state("waiting", f"condition PredictorReady is {predictor_ready.get('status')!r}"
                                + (f" ({predictor_ready['reason']})" if predictor_ready.get("reason") else "")
                                + ", not True")
    return state("passed", f"Deployment {name!r} has all {desired} replica(s) updated and available on "
                           f"{storage_uri}; model Loaded and UpToDate")


def _not_applied(predictor_spec: Mapping[str, Any], storage_uri: str) -> str | None:
    """Why the InferenceService does not name ``storage_uri`` yet, or None when it does."""
    served_uri = (predictor_spec.get("model") or {}).get("storageUri")
    if served_uri == storage_uri:
        return None
    return (f"spec.predictor.model.storageUri is {served_uri!r}, not yet {storage_uri!r} (the GitOps agent "
            "has not applied the merge)")


def _condition_summary(conditions: Mapping[str, Mapping[str, Any]]) -> str:
    return ", ".join(f"{kind}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
                     for kind, c in conditions.items())


def _failed_load_reason(model_status: Mapping[str, Any]) -> str | None:
    """Why the new model failed to load, or None: ``activeModelState`` keeps the old model's state
    then, so the transition status, the target state and ``lastFailureInfo`` are what tell it."""
    transition = model_status.get("transitionStatus")
    states = model_status.get("states") or {}
    if transition not in FAILED_TRANSITIONS and states.get("targetModelState") != "FailedToLoad":
        return None
    failure = model_status.get("lastFailureInfo") or {}
    detail = ": ".join(str(failure[key]) for key in ("reason", "message") if failure.get(key))
    return (f"the new model failed to load (transitionStatus {transition}, "
            f"targetModelState {states.get('targetModelState')}): "
            f"{detail or 'no lastFailureInfo'}; activeModelState "
            f"{states.get('activeModelState')!r} is the previous model")
