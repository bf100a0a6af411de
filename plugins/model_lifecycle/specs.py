"""Model specs: one YAML file per model in ``include/models/``, validated into a ``ModelSpec``.

A spec is validated when the DAG file is parsed. Every error names the file, the field and what is
wrong, so that a typo in one spec reads as a clear import error while the other models' DAGs load.

``_defaults.yaml`` in the same folder holds project-wide defaults (for example the training backend);
each model spec is merged over it, so a backend is chosen per spec or for the whole project, never by
editing DAG code. Files whose name starts with ``_`` are not models.

Pure module: no Airflow imports, and nothing heavier than PyYAML and pydantic (both already loaded by
Airflow at parse time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

SPECS_DIR_ENV = "MODEL_LIFECYCLE_SPECS_DIR"
CACHE_DIR_ENV = "MODEL_LIFECYCLE_CACHE_DIR"
DEFAULTS_FILE = "_defaults.yaml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

_NAME = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
_K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
_CRON_FIELD = r"^[\w*/,\-?LW#]+$"
_GITHUB_REPOSITORY = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}"
_GITHUB_LOGIN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$"
_GITHUB_TEAM = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
# Each cron field's name and what it accepts, in order.
_CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31"),
                ("month", "1-12 or JAN-DEC"), ("day of week", "0-7 or SUN-SAT"))
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}

NonEmptyStr = Annotated[str, Field(min_length=1)]
# The serving runtimes ``model_lifecycle.runtimes`` describes.
RuntimeName = Literal["kserve-mlserver", "mlserver-mlflow3"]
K8sName = Annotated[str, Field(pattern=_K8S_NAME)]
# libyaml's parser, where PyYAML was built with it: ten times faster, and specs are read at parse time.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Strict(BaseModel):
    """A configuration section: unknown fields are errors (typos), values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, quantities: dict[str, str]) -> dict[str, str]:
        for name, quantity in quantities.items():
            if not re.fullmatch(_QUANTITY, str(quantity)):
                raise ValueError(f"{name}: {quantity!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
        return quantities


class Toleration(Strict):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class TrainingPod(Strict):
    """Where and how the training pod runs (backend ``kubernetes``)."""

    namespace: K8sName = "ml-training"
    service_account: K8sName | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    # Secrets whose keys become the trainer's environment (MLflow and S3 credentials): never inlined.
    secrets: list[K8sName] = Field(default_factory=list)
    # The tracking server as pods reach it, when that differs from Airflow's mlflow_default.
    mlflow_tracking_uri: str | None = None
    startup_timeout_seconds: int = Field(default=300, ge=10)
    schedule_timeout_seconds: int = Field(default=300, ge=10)
    poll_interval_seconds: float = Field(default=10, gt=0)


class Training(Strict):
    backend: Literal["local", "kubernetes"] = "local"
    image: str | None = None
    command: list[NonEmptyStr] = Field(default_factory=lambda: ["python", "-m", "training"], min_length=1)
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    timeout_minutes: int = Field(default=60, ge=1, le=24 * 60)
    kubernetes: TrainingPod = Field(default_factory=TrainingPod)

    @model_validator(mode="after")
    def _image_for_kubernetes(self) -> Training:
        if self.backend == "kubernetes" and not self.image:
            raise ValueError("image is required when backend is 'kubernetes'")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return env


class Data(Strict):
    source: NonEmptyStr
    lookback_days: int = Field(ge=1, le=3650)


class MetricGate(Strict):
    """One metric of the gate, in the terms of MLflow's ``mlflow.models.MetricThreshold``, judged on
    the evaluation dataset where the challenger and the champion are scored side by side:

    - ``threshold``: the value the challenger must reach (at least it, or at most it when lower is
      better);
    - ``min_absolute_change`` and ``min_relative_change``: how much better than the champion it must
      be (MLflow takes only improvements: positive numbers, the relative one a fraction);
    - ``max_regression``: how much worse than the champion it may be, in the metric's units. It is
      this project's, not MLflow's: a retrained model is often as good as the champion, not better.
    """

    greater_is_better: bool
    threshold: float | None = None
    min_absolute_change: float | None = Field(default=None, gt=0)
    min_relative_change: float | None = Field(default=None, ge=0, le=1)
    max_regression: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _former_terms(cls, data: Any) -> Any:
        former = sorted({"goal", "min", "max"} & set(data)) if isinstance(data, Mapping) else []
        if former:
            raise ValueError(f"{', '.join(former)}: the gate speaks MLflow's MetricThreshold terms now; "
                             f"write {json.dumps(migrated_gate(data))}")
        return data

    @model_validator(mode="after")
    def _something_to_check(self) -> MetricGate:
        if (self.threshold, self.min_absolute_change, self.min_relative_change, self.max_regression) == (
                None, None, None, None):
            raise ValueError("give at least one of threshold, min_absolute_change, min_relative_change, "
                             "max_regression")
        if self.max_regression is not None and (self.min_absolute_change or self.min_relative_change):
            raise ValueError("max_regression allows the challenger to be worse than the champion, "
                             "min_absolute_change and min_relative_change require it to be better: give "
                             "one or the other")
        return self


def migrated_gate(former: Mapping[str, Any]) -> dict[str, Any]:
    """The MetricThreshold terms of a gate written as ``goal``, ``min``, ``max``, ``max_regression``."""
    greater_is_better = former.get("goal", "maximize") != "minimize"
    migrated: dict[str, Any] = {"greater_is_better": greater_is_better}
    bound = former.get("min" if greater_is_better else "max")
    if bound is not None:
        migrated["threshold"] = bound
    migrated.update({key: value for key, value in former.items() if key not in ("goal", "min", "max")})
    return migrated


class EvaluationDataset(Strict):
    """How the evaluation dataset is drawn from the run's data window: the most recent
    ``holdout_fraction`` of it, which the trainer does not train on; or, with ``source``, that
    source's data of the window."""

    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    source: NonEmptyStr | None = None


class Evaluation(Strict):
    metrics: dict[NonEmptyStr, MetricGate] = Field(min_length=1)
    dataset: EvaluationDataset = Field(default_factory=EvaluationDataset)
    model_type: Literal["classifier", "regressor"] = "classifier"
    # Aliases of further versions scored beside the champion, for the record (the gate reads the
    # champion's figures only).
    compare_with: list[Annotated[str, Field(pattern=_NAME)]] = Field(default_factory=list)
    # A champion that cannot be loaded: judge the challenger on the thresholds alone, or block.
    if_champion_unavailable: Literal["thresholds_only", "block"] = "thresholds_only"
    # The evaluator, in the training image, run by the training backend.
    command: list[NonEmptyStr] = Field(default_factory=lambda: ["python", "-m", "training.evaluate"],
                                       min_length=1)
    timeout_minutes: int = Field(default=30, ge=1, le=24 * 60)


class InferenceServiceRef(Strict):
    name: K8sName
    namespace: K8sName


class GitOps(Strict):
    """Where the promotion is proposed. ``local``: ``repository`` is a git repository on this machine.
    ``github``: ``repository`` is ``owner/name``, reached through the Airflow connection
    ``connection_id``; labels, reviewers and auto-merge apply to its pull requests."""

    provider: Literal["local", "github"] = "local"
    repository: NonEmptyStr
    base_branch: NonEmptyStr = "main"
    manifest_path: NonEmptyStr
    inference_service: InferenceServiceRef
    poll_interval_seconds: int = Field(default=30, ge=1, le=3600)
    merge_timeout_hours: float = Field(default=72, gt=0, le=24 * 30)
    close_on_timeout: bool = False
    connection_id: NonEmptyStr = "github_default"
    labels: list[NonEmptyStr] = Field(default_factory=list)
    reviewers: list[Annotated[str, Field(pattern=_GITHUB_LOGIN)]] = Field(default_factory=list)
    team_reviewers: list[Annotated[str, Field(pattern=_GITHUB_TEAM)]] = Field(default_factory=list)
    auto_merge: bool = False

    @field_validator("repository")
    @classmethod
    def _github_repository(cls, repository: str, info: ValidationInfo) -> str:
        if info.data.get("provider") == "github" and not re.fullmatch(_GITHUB_REPOSITORY, repository):
            raise ValueError(f"{repository!r} is not a GitHub repository; write it as owner/name")
        return repository

    @field_validator("connection_id", "labels", "reviewers", "team_reviewers", "auto_merge")
    @classmethod
    def _github_only(cls, value: Any, info: ValidationInfo) -> Any:
        provider = info.data.get("provider")
        default = cls.model_fields[info.field_name].get_default(call_default_factory=True)
        if value != default and provider not in (None, "github"):
            raise ValueError(f"only the github provider has {info.field_name} (provider is {provider!r})")
        return value

    @field_validator("manifest_path")
    @classmethod
    def _relative_path(cls, path: str) -> str:
        parts = Path(path).parts
        if Path(path).is_absolute() or ".." in parts:
            raise ValueError(f"{path!r} must be a path inside the repository (relative, no '..')")
        return path

    def repository_path(self) -> Path:
        """The local provider's repository; relative paths are taken from the project root."""
        path = Path(os.path.expandvars(os.path.expanduser(self.repository)))
        return path if path.is_absolute() else PROJECT_ROOT / path


class SmokeRequest(Strict):
    """Rows sent to the served model; its answer must have one prediction per row (and, when
    ``expected_predictions`` is given, exactly those)."""

    instances: list[list[float | int | str | bool]] = Field(min_length=1)
    expected_predictions: list[float | int | str | bool] | None = None

    @model_validator(mode="after")
    def _expected_matches(self) -> SmokeRequest:
        expected = self.expected_predictions
        if expected is not None and len(expected) != len(self.instances):
            raise ValueError(
                f"expected_predictions has {len(expected)} values for {len(self.instances)} instances"
            )
        return self


class Canary(Strict):
    """A canary stage: the promotion sends ``traffic_percent`` of the requests to the new version
    (``canaryTrafficPercent``); once that is verified, a second change takes it to 100 %."""

    traffic_percent: int = Field(ge=1, le=99)
    # true: the change to 100 % is merged by the wait itself once its checks pass (gitops.auto_merge's
    # way), since the version was reviewed at the canary step; false: it is reviewed like the first.
    auto_merge: bool = False


class KServe(Strict):
    """How the rollout on KServe is checked (target ``kserve``)."""

    protocol: Literal["v1", "v2"] = "v2"
    # Where Airflow sends the smoke request; by default the InferenceService's status.url.
    url: str | None = None
    # The Argo CD Application that syncs the manifest; checked when connection argocd_default exists.
    argocd_application: str | None = None
    poll_interval_seconds: float = Field(default=15, gt=0)
    canary: Canary | None = None


class Rollout(Strict):
    target: Literal["local", "kserve"] = "local"
    # What serves the model (``model_lifecycle.runtimes``): KServe's built-in MLflow runtime, or the
    # MLServer-on-MLflow-3 ServingRuntime this project ships. The trainer logs in a form it reads.
    runtime: RuntimeName = "kserve-mlserver"
    timeout_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # revert: a rollout that fails after the merge proposes going back to the production version.
    on_failed_rollout: Literal["revert", "fail"] = "revert"
    smoke_request: SmokeRequest | None = None
    kserve: KServe = Field(default_factory=KServe)

    @model_validator(mode="after")
    def _canary_on_kserve(self) -> Rollout:
        if self.kserve.canary is not None and self.target != "kserve":
            raise ValueError("kserve.canary needs target 'kserve': the local target has no traffic to split")
        return self


NotificationEvent = Literal["pr_opened", "promoted", "rejected", "pr_closed", "rollout_failed"]


class Webhook(Strict):
    """An incoming webhook (Slack's, or any that takes ``{"text": ...}``), its URL in a connection."""

    connection_id: NonEmptyStr


class Email(Strict):
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    connection_id: NonEmptyStr = "smtp_default"


class Notifications(Strict):
    """Who hears about the lifecycle of this model's versions, and of which events."""

    events: list[NotificationEvent] = Field(
        default_factory=lambda: ["pr_opened", "promoted", "rejected", "pr_closed", "rollout_failed"])
    webhook: Webhook | None = None
    email: Email | None = None


class Aliases(Strict):
    staging: Annotated[str, Field(pattern=_NAME)] = "staging"
    production: Annotated[str, Field(pattern=_NAME)] = "production"
    previous_production: Annotated[str, Field(pattern=_NAME)] = "previous-production"
    # The version serving a canary share (rollout.kserve.canary), until it is Production or failed.
    canary: Annotated[str, Field(pattern=_NAME)] = "canary"

    @model_validator(mode="after")
    def _distinct(self) -> Aliases:
        names = [self.staging, self.production, self.previous_production, self.canary]
        if len(set(names)) != len(names):
            raise ValueError(f"aliases must be distinct, got {names}")
        return self


class ModelSpec(Strict):
    name: Annotated[str, Field(pattern=_NAME)]
    description: str = ""
    owner: NonEmptyStr = "ml-platform"
    registered_model: NonEmptyStr
    experiment: NonEmptyStr
    schedule: NonEmptyStr
    start_date: dt.date = dt.date(2026, 1, 1)
    catchup: bool = False
    tags: list[NonEmptyStr] = Field(default_factory=list)
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay_seconds: int = Field(default=60, ge=1, le=24 * 3600)
    training: Training = Field(default_factory=Training)
    data: Data
    evaluation: Evaluation
    gitops: GitOps
    rollout: Rollout = Field(default_factory=Rollout)
    aliases: Aliases = Field(default_factory=Aliases)
    notifications: Notifications = Field(default_factory=Notifications)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        return cron_expression(schedule)

    @model_validator(mode="after")
    def _canary_merges_where_it_can(self) -> ModelSpec:
        canary = self.rollout.kserve.canary
        if canary is not None and canary.auto_merge and self.gitops.provider != "github":
            raise ValueError(f"rollout.kserve.canary.auto_merge needs gitops.provider 'github' (provider is "
                             f"{self.gitops.provider!r}): only it merges changes itself")
        return self

    @property
    def dag_id(self) -> str:
        return f"retrain__{self.name}"


def cron_expression(schedule: str) -> str:
    """``schedule`` if it is a cron expression (five fields) or preset that Airflow's cron timetables
    accept, else a ``ValueError`` that names the fields at fault. The check is croniter's, the library
    those timetables schedule with, so what passes here also passes there."""
    if schedule in _CRON_PRESETS:
        return schedule
    fields = schedule.split()
    if len(fields) != 5 or not all(re.fullmatch(_CRON_FIELD, f) for f in fields):
        raise ValueError(
            f"{schedule!r} is not a cron expression (five fields, or one of {sorted(_CRON_PRESETS)})"
        )
    if not _cron_accepts(fields):
        # croniter names no field: try each field alone, the others left at "*".
        at_fault = [f"{name} {field!r} (allowed: {allowed})"
                    for index, ((name, allowed), field) in enumerate(zip(_CRON_FIELDS, fields, strict=True))
                    if not _cron_accepts([*["*"] * index, field, *["*"] * (4 - index)])]
        raise ValueError(f"{schedule!r} is not a valid cron expression: "
                         + ("; ".join(at_fault) or "croniter does not accept it"))
    return schedule


def _cron_accepts(fields: list[str]) -> bool:
    from croniter import CroniterError, croniter

    try:
        croniter(" ".join(fields))
    except CroniterError:
        return False
    return True


class SpecError(ValueError):
    """A model spec (or another YAML configuration file) that cannot be used; the message names the
    file, the field and what is wrong."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{_display(path)}: " + "; ".join(problems))


@dataclass(frozen=True)
class SpecCatalog:
    """Every spec in a folder: the valid ones by name, and the errors of the others."""

    specs: dict[str, ModelSpec]
    errors: list[SpecError]


def specs_dir() -> Path:
    """Where the model specs live: ``$MODEL_LIFECYCLE_SPECS_DIR``, else ``include/models``."""
    configured = os.environ.get(SPECS_DIR_ENV)
    return Path(configured) if configured else PROJECT_ROOT / "include" / "models"


def load_catalog(directory: Path | None = None) -> SpecCatalog:
    """Every spec in the folder. Read once per process while no file changes, and kept between
    processes in the cache folder (``stored_catalog``): the DAG processor parses ``retrain.py``,
    ``promote.py`` and ``model_spec_errors.py`` in a process each, every one of them reading the folder."""
    directory = directory or specs_dir()
    if not directory.is_dir():
        error = SpecError(directory, [f"the model specs folder does not exist (set {SPECS_DIR_ENV})"])
        return SpecCatalog(specs={}, errors=[error])
    files = sorted(path for path in directory.glob("*.y*ml") if path.suffix in (".yaml", ".yml"))
    # What the catalog is made of: the files, and the code that validates them.
    key = json.dumps([str(directory.resolve()), *[_stat(path) for path in [*files, Path(__file__)]]])
    if key not in _catalogs:
        _catalogs.clear()
        stored = stored_catalog(directory, key)
        catalog = _read_stored(stored) if stored else None
        if catalog is None:
            catalog = _read_catalog(directory, files)
            if stored:
                _store(stored, catalog)
        _catalogs[key] = catalog
    return _catalogs[key]


_catalogs: dict[str, SpecCatalog] = {}


def _stat(path: Path) -> tuple[str, int, int]:
    status = path.stat()
    return path.name, status.st_mtime_ns, status.st_size


def stored_catalog(directory: Path, key: str) -> Path | None:
    """Where the validated catalog of ``directory`` in the state ``key`` is kept: in
    ``$MODEL_LIFECYCLE_CACHE_DIR``, else the user's cache folder (``$XDG_CACHE_HOME``, ``~/.cache``),
    never a folder others can write. Validation is what is saved (YAML is read slowly); the specs are
    validated again when read back. None when there is no home to keep it in."""
    configured = os.environ.get(CACHE_DIR_ENV) or os.environ.get("XDG_CACHE_HOME")
    try:
        base = Path(configured) if configured else Path.home() / ".cache"
    except RuntimeError:  # no home directory
        return None
    folder = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    state = hashlib.sha256(key.encode()).hexdigest()[:32]
    return base / "model-lifecycle" / "catalogs" / folder / f"{state}.json"


def _read_stored(path: Path) -> SpecCatalog | None:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return SpecCatalog(
            specs={name: ModelSpec.model_validate(spec) for name, spec in stored["specs"].items()},
            errors=[SpecError(Path(error["path"]), error["problems"]) for error in stored["errors"]],
        )
    except (OSError, ValueError, KeyError, TypeError):  # absent, or not what this code wrote
        return None


def _store(path: Path, catalog: SpecCatalog) -> None:
    """Written whole or not at all (another process may read it meanwhile); older states of the same
    folder are removed. A cache that cannot be written only costs the next process the reading."""
    document = {"specs": {name: spec.model_dump(mode="json") for name, spec in catalog.specs.items()},
                "errors": [{"path": str(error.path), "problems": error.problems} for error in catalog.errors]}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for older in path.parent.glob("*.json"):
            older.unlink(missing_ok=True)
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(document), encoding="utf-8")
        os.replace(scratch, path)
    except OSError:
        pass


def _read_catalog(directory: Path, files: list[Path]) -> SpecCatalog:
    defaults: dict[str, Any] = {}
    errors: list[SpecError] = []
    defaults_path = directory / DEFAULTS_FILE
    if defaults_path.exists():
        try:
            defaults = read_mapping(defaults_path)
        except SpecError as error:
            errors.append(error)
    specs: dict[str, ModelSpec] = {}
    for path in files:
        if path.name.startswith("_"):
            continue
        try:
            spec = parse_spec(path, defaults)
        except SpecError as error:
            errors.append(error)
            continue
        if spec.name in specs:
            errors.append(SpecError(path, [f"name: {spec.name!r} is already used by another spec"]))
            continue
        specs[spec.name] = spec
    return SpecCatalog(specs=specs, errors=errors)


class SpecNotFound(LookupError):
    pass


def load_spec(name: str, directory: Path | None = None) -> ModelSpec:
    catalog = load_catalog(directory)
    if name not in catalog.specs:
        known = ", ".join(sorted(catalog.specs)) or "none"
        invalid = "".join(f"; invalid: {error}" for error in catalog.errors)
        raise SpecNotFound(f"no valid model spec named {name!r} in {directory or specs_dir()} "
                           f"(valid: {known}){invalid}")
    return catalog.specs[name]


def parse_spec(path: Path, defaults: Mapping[str, Any] | None = None) -> ModelSpec:
    document = merge_over(dict(defaults or {}), read_mapping(path))
    try:
        return ModelSpec.model_validate(document)
    except ValidationError as error:
        raise SpecError(path, [describe_problem(problem) for problem in error.errors()]) from None


def read_mapping(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(path, [f"cannot be read: {error}"]) from None
    except yaml.YAMLError as error:
        raise SpecError(path, [f"is not valid YAML: {error}"]) from None
    if not isinstance(document, dict):
        raise SpecError(path, [f"must be a YAML mapping, got {type(document).__name__}"])
    return document


def merge_over(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base`` (mappings merge key by key; anything else replaces)."""
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = merge_over(dict(base[key]), value)
        else:
            base[key] = value
    return base


def describe_problem(problem: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in problem["loc"] if not str(part).startswith("function-"))
    message = str(problem["msg"]).removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif problem["type"] != "missing" and "input" in problem and not isinstance(problem["input"], dict):
        message = f"{message} (got {problem['input']!r})"
    return f"{field or '(top level)'}: {message}"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
