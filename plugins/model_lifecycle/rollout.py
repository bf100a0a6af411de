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
    isvc: Mapping[str, Any], *, storage_uri: str, previous_revision: str | None
) -> RolloutState:
    """Is this InferenceService serving ``storage_uri`` on a new, ready, fully rolled-out revision?

    ``status.observedGeneration`` is not trusted: KServe copies it from the child resource
    (kserve/kserve#6081), so the revision names and the model status are what prove the rollout.
    A failed model load fails at once: ``activeModelState`` stays Loaded with the old model then, so
    the transition status, the target state and ``lastFailureInfo`` are what tell it."""
    spec = isvc.get("spec") or {}
    status = isvc.get("status") or {}
    predictor_spec = spec.get("predictor") or {}
    conditions = _conditions(status)
    summary = ", ".join(f"{kind}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
                        for kind, c in conditions.items())

    def state(kind: str, reason: str) -> RolloutState:
        return RolloutState(kind, reason, summary)

    served_uri = (predictor_spec.get("model") or {}).get("storageUri")
    if served_uri != storage_uri:
        return state("waiting", f"spec.predictor.model.storageUri is {served_uri!r}, not yet {storage_uri!r} "
                                "(the GitOps agent has not applied the merge)")

    model_status = status.get("modelStatus") or {}
    transition = model_status.get("transitionStatus")
    states = model_status.get("states") or {}
    if transition in FAILED_TRANSITIONS or states.get("targetModelState") == "FailedToLoad":
        failure = model_status.get("lastFailureInfo") or {}
        detail = ": ".join(str(failure[key]) for key in ("reason", "message") if failure.get(key))
        return state("failed", f"the new model failed to load (transitionStatus {transition}, "
                               f"targetModelState {states.get('targetModelState')}): "
                               f"{detail or 'no lastFailureInfo'}; activeModelState "
                               f"{states.get('activeModelState')!r} is the previous model")

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

    canary = predictor_spec.get("canaryTrafficPercent")
    traffic = {entry.get("revisionName"): entry.get("percent") or 0
               for entry in predictor.get("traffic") or []}
    if canary is None or canary == 100:
        if traffic.get(ready) != 100:
            return state("waiting",
                         f"revision {ready!r} has {traffic.get(ready, 0)}% of the traffic, not 100%")
        rolled_out = predictor.get("latestRolledoutRevision")
        if rolled_out != ready:
            return state("waiting", f"latestRolledoutRevision is {rolled_out!r}, not {ready!r}")
        rollout = f"revision {ready!r} has all the traffic"
    else:
        if traffic.get(ready) != canary:
            return state("waiting", f"canary in progress: revision {ready!r} has {traffic.get(ready, 0)}% of "
                                    f"the traffic, waiting for the configured {canary}%")
        rollout = f"canary: revision {ready!r} has the configured {canary}% of the traffic"

    if transition != "UpToDate" or states.get("targetModelState") != "Loaded":
        return state("waiting", f"model transitionStatus {transition!r}, targetModelState "
                                f"{states.get('targetModelState')!r}")
    return state("passed", f"{rollout}; model Loaded and UpToDate at {storage_uri}")


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {condition["type"]: condition
            for condition in status.get("conditions") or [] if "type" in condition}


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
