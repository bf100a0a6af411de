"""Pure rollout verdicts: does what is served match what was promoted, and does it answer correctly?

No Airflow, no MLflow: the callers fetch the merged manifest and the model's answer, this module decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
