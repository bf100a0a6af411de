"""The typed task results: what goes into XCom comes back equal, as plain JSON."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from model_lifecycle.policy import DataWindow
from model_lifecycle.results import (
    ChangeRef,
    Merge,
    Plan,
    ProductionChange,
    Proposal,
    RegisteredVersion,
    Rollout,
    XComResult,
)

END = dt.datetime(2026, 11, 2, 3, tzinfo=dt.UTC)
CHANGE = ChangeRef(provider="github", branch="model-lifecycle/models/isvc/m-v2", base_branch="main",
                   head_sha="a" * 40, url="https://github.example/acme/gitops/pull/7", number=7)


@pytest.mark.parametrize("result", [
    Plan(window=DataWindow(start=END - dt.timedelta(days=14), end=END), lookback_days=14,
         run_type="scheduled", may_promote=True, forced=False, decision="latest data; promotion allowed"),
    RegisteredVersion(version="2", run_id="f" * 32),
    CHANGE,
    Proposal(base_sha="b" * 40, change=CHANGE),
    Proposal(base_sha="b" * 40, change=None),
    Merge(merge_sha="c" * 40, merged_by="alice", merged_at="2026-11-02T04:00:00Z", approved_by=("alice",)),
    Merge(merge_sha="c" * 40, merged_by="alice", merged_at="2026-11-02T04:00:00Z", approved_by=()),
    Merge(merge_sha="c" * 40, merged_by="unknown", merged_at="2026-11-02T04:00:00Z", approved_by=None),
    Rollout(target="kserve", detail="revision 'isvc-predictor-00002' has all the traffic"),
    ProductionChange(version="2", previous_version="1", changed=True),
])
def test_a_result_comes_back_from_xcom_as_it_went_in(result: XComResult) -> None:
    stored = json.loads(json.dumps(result.to_xcom()))  # XCom keeps JSON
    assert type(result).from_xcom(stored) == result
    assert type(result).from_xcom(result) is result  # given as such (a DAG, a test), taken as it is


def test_nobody_and_unknown_approvers_stay_apart_in_xcom() -> None:
    nobody = Merge(merge_sha="c" * 40, merged_by="alice", merged_at="t", approved_by=()).to_xcom()
    unknown = Merge(merge_sha="c" * 40, merged_by="alice", merged_at="t", approved_by=None).to_xcom()
    assert (nobody["approved_by"], unknown["approved_by"]) == ([], None)


def test_something_else_than_a_result_is_refused_naming_the_result() -> None:
    with pytest.raises(TypeError, match="RegisteredVersion: expected the upstream task's result, got '2'"):
        RegisteredVersion.from_xcom("2")  # type: ignore[arg-type]
