"""The results the tasks of a promotion hand each other over XCom, each a small frozen dataclass.

XCom carries only small identifiers (MLflow stays the system of record), as plain JSON: ``to_xcom``
writes it, ``from_xcom`` reads it back. Plain JSON, not Airflow's serialization of dataclasses, so the
values read the same in the UI, in the REST API and in any Airflow version, and need no entry in
``[core] allowed_deserialization_classes``.

    plan ─▶ Plan            the data window and whether this run may promote
    register ─▶ RegisteredVersion   the model version and the MLflow run it was registered from
    score ─▶ Scoring        the evaluation run that scored it beside the champion, or why none could
    preflight ─▶ Preflight  the runtime that loaded the candidate, from which URI, and its answer
    open_pr ─▶ Proposal     the pull request (a ChangeRef), or none: the base branch already pins it
    wait_for_merge ─▶ Merge who merged and approved, and the merge commit
    verify_rollout ─▶ Rollout       where and how the rollout was verified
    promote_production ─▶ ProductionChange  the version now in production, and the one it replaced

Pure module: no Airflow, no MLflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Self

from model_lifecycle.policy import DataWindow


class XComResult:
    """``to_xcom``/``from_xcom`` for a dataclass of plain fields; the others override what differs."""

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Self) -> Self:
        """The result from what XCom holds; a result given as such (a test, a DAG) is taken as it is."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"{cls.__name__}: expected the upstream task's result, got {value!r}")
        names = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return cls(**{key: item for key, item in value.items() if key in names})


@dataclass(frozen=True)
class Plan(XComResult):
    """The data window a retraining run trains on, and whether it may promote (backfill safety)."""

    window: DataWindow
    lookback_days: int
    run_type: str
    may_promote: bool
    forced: bool
    decision: str

    def to_xcom(self) -> dict[str, Any]:
        start, end = self.window.as_strings()
        return {**asdict(self), "window": {"start": start, "end": end}}

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Plan) -> Plan:
        if isinstance(value, Plan):
            return value
        window = value["window"]
        return cls(**{**value, "window": DataWindow(start=dt.datetime.fromisoformat(window["start"]),
                                                    end=dt.datetime.fromisoformat(window["end"]))})


@dataclass(frozen=True)
class RegisteredVersion(XComResult):
    """A registered model version and the MLflow run it was registered from."""

    version: str
    run_id: str


@dataclass(frozen=True)
class Scoring(XComResult):
    """The evaluation run that scored the version (role ``challenger``) and the versions it is compared
    with, each in its role, on one evaluation dataset. ``run_id`` is None when no comparison could be
    made (a manual promotion goes on without one); ``problem`` says why."""

    run_id: str | None
    versions: dict[str, str]
    problem: str | None = None


@dataclass(frozen=True)
class Preflight(XComResult):
    """The candidate loaded and answered in the declared serving runtime, from the URI the manifest
    will pin."""

    runtime: str
    storage_uri: str
    detail: str


@dataclass(frozen=True)
class ChangeRef(XComResult):
    """Identifies an opened change (a pull request, or a branch of the local provider); ``head_sha`` is
    the commit that carries the manifest edit."""

    provider: str
    branch: str
    base_branch: str
    head_sha: str
    url: str
    number: int | None = None


@dataclass(frozen=True)
class Proposal(XComResult):
    """What proposing a version did: ``change`` is the opened or adopted change, or None when the base
    branch (at ``base_sha``) already carries the edit and there is nothing to review."""

    base_sha: str
    change: ChangeRef | None

    def to_xcom(self) -> dict[str, Any]:
        return {"base_sha": self.base_sha, "change": self.change.to_xcom() if self.change else None}

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Proposal) -> Proposal:
        if isinstance(value, Proposal):
            return value
        change = value.get("change")
        return cls(base_sha=value["base_sha"], change=ChangeRef.from_xcom(change) if change else None)


@dataclass(frozen=True)
class Merge(XComResult):
    """The approval. ``approved_by``: who approved (the approving reviewers of a pull request, or who
    merged a local change); an empty tuple means nobody approved, None that it is not known."""

    merge_sha: str
    merged_by: str
    merged_at: str
    approved_by: tuple[str, ...] | None

    def to_xcom(self) -> dict[str, Any]:
        approved = None if self.approved_by is None else list(self.approved_by)
        return {**asdict(self), "approved_by": approved}

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Merge) -> Merge:
        if isinstance(value, Merge):
            return value
        approved = value.get("approved_by")
        return cls(merge_sha=value["merge_sha"], merged_by=value["merged_by"], merged_at=value["merged_at"],
                   approved_by=None if approved is None else tuple(approved))


@dataclass(frozen=True)
class Rollout(XComResult):
    """How the rollout was verified: on this machine (``local``) or on KServe (``kserve``)."""

    target: Literal["local", "kserve"]
    detail: str


@dataclass(frozen=True)
class ProductionChange(XComResult):
    """The version now in production, the one it replaced, and whether this run changed production
    (False when it was already so: a rerun announces nothing)."""

    version: str
    previous_version: str | None
    changed: bool
