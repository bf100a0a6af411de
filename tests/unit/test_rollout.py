"""The local rollout verdict: the merged manifest names this version, and the model answers."""

from __future__ import annotations

import numpy as np

from model_lifecycle.manifests import PinnedModel
from model_lifecycle.rollout import check_pinned_model, check_smoke_answer
from model_lifecycle.specs import SmokeRequest

EXPECTED = {"storage_uri": "s3://b/m-1", "registered_model": "fraud", "version": "3"}


def test_pinned_model_must_match_exactly() -> None:
    assert check_pinned_model(PinnedModel("s3://b/m-1", "fraud", "3", "r"), **EXPECTED).ok
    verdict = check_pinned_model(PinnedModel("s3://b/m-0", "fraud", "2", "r"), **EXPECTED)
    assert not verdict.ok
    assert verdict.reason == ("the merged manifest does not pin this version: storageUri is 's3://b/m-0', "
                              "expected 's3://b/m-1'; version is '2', expected '3'")


def test_smoke_answer_needs_one_prediction_per_instance() -> None:
    smoke = SmokeRequest(instances=[[1.0, 2.0], [3.0, 4.0]])
    assert check_smoke_answer(smoke, np.array([0, 1])).ok
    short = check_smoke_answer(smoke, [0])
    assert not short.ok and "sent 2 instances and got 1 predictions" in short.reason


def test_smoke_answer_must_equal_the_expected_predictions() -> None:
    smoke = SmokeRequest(instances=[[1.0], [2.0]], expected_predictions=[0, 1.5])
    assert check_smoke_answer(smoke, [np.int64(0), np.float32(1.5)]).ok
    assert check_smoke_answer(smoke, [[0], [1.5]]).ok
    wrong = check_smoke_answer(smoke, [1, 1.5])
    assert not wrong.ok and wrong.reason.endswith("instance 0: got 1, expected 0")


def test_non_finite_predictions_fail() -> None:
    verdict = check_smoke_answer(SmokeRequest(instances=[[1.0]]), [float("inf")])
    assert not verdict.ok and "non-finite" in verdict.reason
