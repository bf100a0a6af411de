"""MLflow garbage collection: the pure decisions, with no Airflow and no MLflow imports.

What MLflow holds in the ``deleted`` lifecycle stage for longer than a threshold is collected (its
metadata and its artifacts removed for good), except what still matters:

- a deleted run or logged model that backs a registered model version holding an alias, or in stage
  Staging or Production, is kept, and the report says which version and why;
- a deleted experiment is collected only when everything in it is collected first: MLflow's
  ``_hard_delete_experiment`` cascades to every run and logged model of the experiment, whatever their
  stage, without touching their artifacts, so a protected run or a younger one inside would be lost.

Runs and logged models are collected in batches of explicit ids, so one bad artifact fails its batch,
not the collection; the summary counts what each batch did.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

# What ``mlflow gc --older-than`` parses (days, hours, minutes, seconds in this order, e.g. 1d2h3m4s,
# decimals allowed), without what its own regular expression lets through by accident: the empty
# string (a zero threshold) and malformed numbers such as ``1.2.3d``.
_NUMBER = r"[0-9]+(\.[0-9]+)?"
OLDER_THAN_PATTERN = rf"^({_NUMBER}d)?({_NUMBER}h)?({_NUMBER}m)?({_NUMBER}s)?$"
_OLDER_THAN_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

PROTECTED_STAGES = ("Staging", "Production")

Kind = Literal["runs", "logged_models", "experiments"]
T = TypeVar("T")


def parse_older_than(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``1d2h3m4s``, ``1.5d`` as a duration; anything else is a ``ValueError`` that
    names the parameter."""
    if not text or not re.fullmatch(OLDER_THAN_PATTERN, text):
        raise ValueError(
            f"older_than: {text!r} is not a duration such as 30d, 12h or 1d2h3m4s "
            "(days, hours, minutes, seconds, in this order)"
        )
    parts = re.findall(rf"({_NUMBER})([dhms])", text)
    return dt.timedelta(**{_OLDER_THAN_UNITS[unit]: float(number) for number, _, unit in parts})


@dataclass(frozen=True)
class Artifacts:
    """What an artifact location holds; ``error`` when it could not be listed."""

    files: int = 0
    bytes: int = 0
    error: str | None = None

    def __add__(self, other: Artifacts) -> Artifacts:
        return Artifacts(self.files + other.files, self.bytes + other.bytes, self.error or other.error)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class DeletedRun:
    kind: ClassVar[Kind] = "runs"
    run_id: str
    experiment_id: str
    deleted_at_ms: int
    artifact_uri: str

    @property
    def id(self) -> str:
        return self.run_id

    @property
    def artifacts_at(self) -> str | None:
        return self.artifact_uri

    def label(self) -> str:
        return f"run {self.run_id} (experiment {self.experiment_id}, deleted {iso(self.deleted_at_ms)})"


@dataclass(frozen=True)
class DeletedLoggedModel:
    kind: ClassVar[Kind] = "logged_models"
    model_id: str
    experiment_id: str
    deleted_at_ms: int
    artifact_location: str
    source_run_id: str | None = None

    @property
    def id(self) -> str:
        return self.model_id

    @property
    def artifacts_at(self) -> str | None:
        return self.artifact_location

    def label(self) -> str:
        return (f"logged model {self.model_id} (experiment {self.experiment_id}, "
                f"deleted {iso(self.deleted_at_ms)})")


@dataclass(frozen=True)
class DeletedExperiment:
    """A deleted experiment and everything it holds, whatever the stage (the hard delete takes it all).
    MLflow removes no artifacts with an experiment: its location may be shared, and what it held was
    collected first."""

    kind: ClassVar[Kind] = "experiments"
    experiment_id: str
    name: str
    deleted_at_ms: int
    run_ids: frozenset[str] = frozenset()
    logged_model_ids: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.experiment_id

    @property
    def artifacts_at(self) -> str | None:
        return None

    def label(self) -> str:
        return f"experiment {self.experiment_id} {self.name!r} (deleted {iso(self.deleted_at_ms)})"


Deleted = DeletedRun | DeletedLoggedModel | DeletedExperiment


@dataclass(frozen=True)
class ProtectedVersion:
    """A registered model version that must keep its run and its logged model."""

    model: str
    version: str
    run_id: str | None
    model_id: str | None
    aliases: tuple[str, ...] = ()
    stage: str = "None"

    @property
    def why(self) -> str:
        held = [f"alias {alias!r}" for alias in self.aliases]
        if self.stage in PROTECTED_STAGES:
            held.append(f"stage {self.stage}")
        return f"backs registered model {self.model!r} version {self.version} ({', '.join(held)})"


@dataclass(frozen=True)
class Inventory:
    """What the backend store holds in the deleted stage since before the cutoff (one workspace)."""

    runs: tuple[DeletedRun, ...] = ()
    logged_models: tuple[DeletedLoggedModel, ...] = ()
    experiments: tuple[DeletedExperiment, ...] = ()


@dataclass(frozen=True)
class Kept:
    """Something eligible by age that is not collected, and why."""

    kind: Kind
    id: str
    reason: str


@dataclass(frozen=True)
class Plan:
    runs: tuple[DeletedRun, ...]
    logged_models: tuple[DeletedLoggedModel, ...]
    experiments: tuple[DeletedExperiment, ...]
    kept: tuple[Kept, ...]

    def in_collection_order(self) -> tuple[tuple[Kind, Sequence[Deleted]], ...]:
        """Experiments last: one is collected only once what it held is gone."""
        return (("runs", self.runs), ("logged_models", self.logged_models), ("experiments", self.experiments))


def logged_model_id(model_id: str | None, source: str | None) -> str | None:
    """The logged model a version was registered from: its ``model_id``, which the registry does not
    always fill in, else its ``models:/<id>`` source."""
    if model_id:
        return model_id
    found = re.fullmatch(r"models:/(m-[0-9a-f]+)/?", source or "")
    return found.group(1) if found else None


def is_protected(version: ProtectedVersion) -> bool:
    return bool(version.aliases) or version.stage in PROTECTED_STAGES


def protection(versions: Iterable[ProtectedVersion]) -> tuple[dict[str, str], dict[str, str]]:
    """Why each run id and each logged model id must be kept, from the registry's versions."""
    runs: dict[str, list[str]] = {}
    models: dict[str, list[str]] = {}
    for version in versions:
        if not is_protected(version):
            continue
        if version.run_id:
            runs.setdefault(version.run_id, []).append(version.why)
        if version.model_id:
            models.setdefault(version.model_id, []).append(version.why)
    return ({run: "; ".join(why) for run, why in runs.items()},
            {model: "; ".join(why) for model, why in models.items()})


def plan(inventory: Inventory, versions: Iterable[ProtectedVersion]) -> Plan:
    """What to collect: everything in the inventory but what a protected version still needs, and the
    experiments whose every run and logged model is collected too."""
    protected_runs, protected_models = protection(versions)
    kept: list[Kept] = []
    runs = [run for run in inventory.runs if not _protected(kept, "runs", run.run_id, protected_runs)]
    models = [model for model in inventory.logged_models
              if not _protected(kept, "logged_models", model.model_id, protected_models)]
    collected_runs = {run.run_id for run in runs}
    collected_models = {model.model_id for model in models}
    experiments = []
    for experiment in inventory.experiments:
        reason = _why_experiment_stays(experiment, collected_runs, collected_models)
        if reason:
            kept.append(Kept("experiments", experiment.experiment_id, reason))
        else:
            experiments.append(experiment)
    return Plan(tuple(runs), tuple(models), tuple(experiments), tuple(kept))


def _protected(kept: list[Kept], kind: Kind, item_id: str, reasons: Mapping[str, str]) -> bool:
    if item_id in reasons:
        kept.append(Kept(kind, item_id, reasons[item_id]))
        return True
    return False


def _why_experiment_stays(experiment: DeletedExperiment, collected_runs: set[str],
                          collected_models: set[str]) -> str | None:
    staying_runs = sorted(experiment.run_ids - collected_runs)
    staying_models = sorted(experiment.logged_model_ids - collected_models)
    if not staying_runs and not staying_models:
        return None
    held = []
    if staying_runs:
        held.append(f"{len(staying_runs)} run(s) that are not collected ({_some(staying_runs)})")
    if staying_models:
        held.append(f"{len(staying_models)} logged model(s) that are not collected ({_some(staying_models)})")
    return "holds " + " and ".join(held) + "; deleting the experiment would take them along"


def _some(ids: Sequence[str], shown: int = 3) -> str:
    return ", ".join(ids[:shown]) + (f", ... {len(ids) - shown} more" if len(ids) > shown else "")


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ValueError(f"batch_size: must be at least 1 (got {size})")
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


@dataclass
class BatchOutcome:
    """What one batch did: ids collected, kept (protected or restored since the report), failed."""

    kind: Kind
    number: int
    size: int
    collected: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    artifacts: Artifacts = field(default_factory=Artifacts)

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        text = (f"{self.kind} batch {self.number}: {verdict}: {len(self.collected)}/{self.size} collected, "
                f"{self.artifacts.files} artifact file(s), {self.artifacts.bytes} bytes")
        if self.kept:
            text += f"; kept {len(self.kept)}: " + "; ".join(f"{i}: {why}" for i, why in self.kept.items())
        if self.failed:
            text += f"; failed {len(self.failed)}: " + "; ".join(f"{i}: {e}" for i, e in self.failed.items())
        return text


def summarise(outcomes: Sequence[BatchOutcome]) -> dict[str, Any]:
    """The collection's return value: counts and bytes per kind, and every failed batch with its
    errors (collected ids are in the log, one line each, not here: there can be many thousands)."""
    summary: dict[str, Any] = {}
    for kind in ("runs", "logged_models", "experiments"):
        mine = [outcome for outcome in outcomes if outcome.kind == kind]
        total = sum((outcome.artifacts for outcome in mine), Artifacts())
        summary[kind] = {
            "collected": sum(len(outcome.collected) for outcome in mine),
            "kept": sum(len(outcome.kept) for outcome in mine),
            "failed": sum(len(outcome.failed) for outcome in mine),
            "batches": len(mine),
            "artifact_files": total.files,
            "artifact_bytes": total.bytes,
        }
    summary["kept"] = [{"kind": outcome.kind, "id": id_, "reason": why}
                       for outcome in outcomes for id_, why in outcome.kept.items()]
    summary["failed_batches"] = [
        {"kind": outcome.kind, "batch": outcome.number, "errors": dict(outcome.failed)}
        for outcome in outcomes if not outcome.ok
    ]
    return summary


def as_json(value: Any) -> Any:
    """Dataclasses (and frozensets inside them) as plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return as_json(asdict(value))
    if isinstance(value, Mapping):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [as_json(item) for item in value]
        return sorted(items) if isinstance(value, (set, frozenset)) else items
    return value
