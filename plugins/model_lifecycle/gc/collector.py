"""MLflow garbage collection against the backend store, run where its credentials are.

The ``mlflow_gc`` DAG runs this module as a local child process or in a Kubernetes pod (the image in
``include/mlflow_gc/``), never inside the Airflow worker itself::

    python -m model_lifecycle.gc.collector report  --older-than 30d  [--experiment-ids 1,2] [--all-workspaces]
    python -m model_lifecycle.gc.collector collect --cutoff-ms <from the report> --batch-size 500 [...]

Environment: ``MLFLOW_BACKEND_STORE_URI`` (the database, e.g. ``postgresql+psycopg2://...``; the age
of a deletion is only recorded there, and only there can a run be removed for good) and
``MLFLOW_TRACKING_URI`` (the tracking server, through which proxied ``mlflow-artifacts:`` URIs
resolve), plus whatever the artifact store needs (``MLFLOW_S3_ENDPOINT_URL``, AWS credentials, ...).
The result is written as JSON to ``--output`` (the pod's ``/airflow/xcom/return.json``); progress goes
to standard output, one line per item, so the task log is the audit trail.

Why not ``mlflow gc --run-ids``: in MLflow 3.17, any ``mlflow gc`` call without ``--experiment-ids``
also hard-deletes every deleted experiment older than the threshold, and with it every run and logged
model inside, protected or not, leaving their artifacts behind; and it hard-deletes every old deleted
logged model. This module takes the same steps as ``mlflow gc`` (the backend store's
``_hard_delete_*`` methods, which MLflow keeps for its gc) for exactly the ids it decided on. Unlike
``mlflow gc``, a run whose artifacts cannot be deleted keeps its metadata, so that it is not orphaned
silently and the next collection tries again.

No Airflow here; MLflow is imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_lifecycle.gc import BACKEND_STORE_URI_ENV, GC_MODULE, TRACKING_URI_ENV
from model_lifecycle.gc.decisions import (
    Artifacts,
    BatchOutcome,
    Deleted,
    DeletedExperiment,
    DeletedLoggedModel,
    DeletedRun,
    Inventory,
    Kind,
    ProtectedVersion,
    as_json,
    batches,
    is_protected,
    iso,
    logged_model_id,
    parse_older_than,
    plan,
    protection,
    summarise,
)

if TYPE_CHECKING:
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

class GcError(RuntimeError):
    """The collection cannot start; the message says what is missing."""


def now_ms() -> int:
    return int(time.time() * 1000)


class BackendStore:
    """The tracking and registry stores of one MLflow database, in the active workspace."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import _get_store
        from mlflow.tracking._model_registry.utils import _get_store as _get_registry_store

        self.uri = uri
        self.tracking = _get_store(uri)
        self.registry = _get_registry_store(uri)
        if not hasattr(self.tracking, "_hard_delete_run"):
            raise GcError(f"{BACKEND_STORE_URI_ENV}: {_redacted(uri)} is not a database backend store; "
                          "runs can only be collected from a database (sqlite, postgresql, mysql, mssql)")

    @contextmanager
    def _session(self) -> Iterator[Any]:
        with self.tracking.ManagedSessionMaker() as session:
            yield session

    def inventory(self, cutoff_ms: int, experiment_ids: Sequence[str]) -> Inventory:
        """Deleted runs and logged models whose deletion is at or before the cutoff, and deleted
        experiments last updated before it (``mlflow gc``'s own comparisons), with the ids of
        everything each experiment holds."""
        from mlflow.entities import LifecycleStage
        from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlLoggedModel, SqlRun

        deleted = LifecycleStage.DELETED
        wanted = [int(experiment_id) for experiment_id in experiment_ids]
        with self._session() as session:
            runs = self.tracking._get_query(session, SqlRun).filter(
                SqlRun.lifecycle_stage == deleted, SqlRun.deleted_time <= cutoff_ms)
            models = self.tracking._get_query(session, SqlLoggedModel).filter(
                SqlLoggedModel.lifecycle_stage == deleted,
                SqlLoggedModel.last_updated_timestamp_ms <= cutoff_ms)
            experiments = self.tracking._get_query(session, SqlExperiment).filter(
                SqlExperiment.lifecycle_stage == deleted, SqlExperiment.last_update_time < cutoff_ms)
            if wanted:
                runs = runs.filter(SqlRun.experiment_id.in_(wanted))
                models = models.filter(SqlLoggedModel.experiment_id.in_(wanted))
                experiments = experiments.filter(SqlExperiment.experiment_id.in_(wanted))
            found_runs = tuple(
                DeletedRun(run.run_uuid, str(run.experiment_id), run.deleted_time, run.artifact_uri)
                for run in runs.order_by(SqlRun.experiment_id, SqlRun.deleted_time, SqlRun.run_uuid)
            )
            found_models = tuple(
                DeletedLoggedModel(model.model_id, str(model.experiment_id),
                                   model.last_updated_timestamp_ms, model.artifact_location,
                                   model.source_run_id)
                for model in models.order_by(SqlLoggedModel.experiment_id, SqlLoggedModel.model_id)
            )
            found_experiments = []
            for experiment in experiments.order_by(SqlExperiment.experiment_id):
                run_ids, model_ids = self._contents(session, experiment.experiment_id)
                found_experiments.append(DeletedExperiment(
                    str(experiment.experiment_id), experiment.name, experiment.last_update_time,
                    run_ids, model_ids))
        return Inventory(found_runs, found_models, tuple(found_experiments))

    def _contents(self, session: Any, experiment_id: int) -> tuple[frozenset[str], frozenset[str]]:
        from mlflow.store.tracking.dbmodels.models import SqlLoggedModel, SqlRun

        run_ids = session.query(SqlRun.run_uuid).filter(SqlRun.experiment_id == experiment_id)
        model_ids = session.query(SqlLoggedModel.model_id).filter(
            SqlLoggedModel.experiment_id == experiment_id)
        return frozenset(row[0] for row in run_ids), frozenset(row[0] for row in model_ids)

    def protected_versions(self) -> list[ProtectedVersion]:
        """Every registered model version holding an alias or in stage Staging or Production."""
        # The store's version search leaves ``aliases`` empty; registered models carry them.
        aliases: dict[tuple[str, str], list[str]] = {}
        for model in _all_pages(self.registry.search_registered_models, 1_000):
            for alias, version in model.aliases.items():
                aliases.setdefault((model.name, str(version)), []).append(alias)
        found = []
        for version in _all_pages(self.registry.search_model_versions, 10_000):
            candidate = ProtectedVersion(
                model=version.name, version=str(version.version), run_id=version.run_id or None,
                model_id=logged_model_id(version.model_id, version.source),
                aliases=tuple(sorted(aliases.get((version.name, str(version.version)), []))),
                stage=version.current_stage or "None")
            if is_protected(candidate):
                found.append(candidate)
        return found

    def remove(self, item: Deleted, cutoff_ms: int) -> Artifacts | str:
        """Removes the item for good; returns what it held, or why it is kept after all."""
        if isinstance(item, DeletedRun):
            return self.collect_run(item, cutoff_ms)
        if isinstance(item, DeletedLoggedModel):
            return self.collect_logged_model(item, cutoff_ms)
        return self.collect_experiment(item, cutoff_ms)

    def collect_run(self, run: DeletedRun, cutoff_ms: int) -> Artifacts | str:
        """Removes the run's artifacts, then its metadata; returns what was removed, or why the run
        is kept after all (restored, or deleted again since the cutoff)."""
        from mlflow.entities import LifecycleStage
        from mlflow.store.tracking.dbmodels.models import SqlRun

        with self._session() as session:
            current = session.query(SqlRun.lifecycle_stage, SqlRun.deleted_time).filter(
                SqlRun.run_uuid == run.run_id).one_or_none()
        if current is None:
            return "no longer exists"
        if current.lifecycle_stage != LifecycleStage.DELETED:
            return "restored since the report"
        if current.deleted_time is None or current.deleted_time > cutoff_ms:
            return "deleted again since the report; younger than the threshold now"
        removed = _delete_artifacts(run.artifact_uri)
        self.tracking._hard_delete_run(run.run_id)
        return removed

    def collect_logged_model(self, model: DeletedLoggedModel, cutoff_ms: int) -> Artifacts | str:
        from mlflow.entities import LifecycleStage
        from mlflow.store.tracking.dbmodels.models import SqlLoggedModel

        with self._session() as session:
            current = session.query(SqlLoggedModel.lifecycle_stage,
                                    SqlLoggedModel.last_updated_timestamp_ms).filter(
                SqlLoggedModel.model_id == model.model_id).one_or_none()
        if current is None:
            return "no longer exists"
        if current.lifecycle_stage != LifecycleStage.DELETED:
            return "restored since the report"
        if current.last_updated_timestamp_ms > cutoff_ms:
            return "updated since the report; younger than the threshold now"
        removed = _delete_artifacts(model.artifact_location)
        self.tracking._hard_delete_logged_model(model.model_id)
        return removed

    def collect_experiment(self, experiment: DeletedExperiment, cutoff_ms: int) -> Artifacts | str:
        """Hard-deletes the experiment only if it holds nothing any more: the delete would cascade."""
        from mlflow.entities import LifecycleStage
        from mlflow.store.tracking.dbmodels.models import SqlExperiment

        experiment_id = int(experiment.experiment_id)
        with self._session() as session:
            current = session.query(SqlExperiment.lifecycle_stage, SqlExperiment.last_update_time).filter(
                SqlExperiment.experiment_id == experiment_id).one_or_none()
            if current is None:
                return "no longer exists"
            if current.lifecycle_stage != LifecycleStage.DELETED:
                return "restored since the report"
            if current.last_update_time >= cutoff_ms:
                return "updated since the report; younger than the threshold now"
            run_ids, model_ids = self._contents(session, experiment_id)
        if run_ids or model_ids:
            return (f"still holds {len(run_ids)} run(s) and {len(model_ids)} logged model(s); "
                    "deleting the experiment would take them along")
        self.tracking._hard_delete_experiment(experiment.experiment_id)
        return Artifacts()


def _all_pages(search: Callable[..., Any], page_size: int) -> Iterator[Any]:
    page_token = None
    while True:
        page = search(max_results=page_size, page_token=page_token)
        yield from page
        page_token = page.token
        if not page_token:
            return


def measure(artifact_uri: str) -> Artifacts:
    """Files and bytes under an artifact URI (an error, not an exception, when it cannot be listed)."""
    try:
        return _measure(_repository(artifact_uri))
    except Exception as error:  # noqa: BLE001 - any artifact store failure is reported, not raised
        return Artifacts(error=_describe(error))


def _measure(repository: ArtifactRepository) -> Artifacts:
    files = size = 0
    pending: list[str | None] = [None]
    while pending:
        for info in repository.list_artifacts(pending.pop()):
            if info.is_dir:
                pending.append(info.path)
            else:
                files += 1
                size += info.file_size or 0
    return Artifacts(files, size)


def _delete_artifacts(artifact_uri: str) -> Artifacts:
    repository = _repository(artifact_uri)
    found = _measure(repository)
    if found.files:
        repository.delete_artifacts()
    return found


def _repository(artifact_uri: str) -> ArtifactRepository:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri)


def workspaces(backend_store_uri: str, tracking_uri: str, all_workspaces: bool) -> list[str | None]:
    """``None`` is the active workspace; with ``all_workspaces``, every workspace the store has, as
    ``mlflow gc --all-workspaces`` visits them, if the tracking server runs with workspaces. Without
    ``--enable-workspaces`` it has one, implicit workspace, and entering workspace mode anyway (as
    ``mlflow gc --all-workspaces`` does) would make every proxied artifact request fail."""
    if not all_workspaces:
        return [None]
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.tracking import _get_store
    from mlflow.tracking._workspace.registry import get_workspace_store
    from mlflow.utils.workspace_utils import resolve_workspace_store_uri

    if not _get_store(tracking_uri).supports_workspaces:
        return [None]
    # Workspace-aware stores scope every query to the active workspace; that is how each is visited.
    os.environ[MLFLOW_ENABLE_WORKSPACES.name] = "true"
    store = get_workspace_store(resolve_workspace_store_uri(tracking_uri=backend_store_uri))
    return [workspace.name for workspace in store.list_workspaces()]


def _in_workspace(name: str | None) -> Any:
    if name is None:
        return nullcontext()
    from mlflow.utils.workspace_context import WorkspaceContext

    return WorkspaceContext(name)


def report(store: BackendStore, older_than: str, experiment_ids: Sequence[str],
           workspace_names: Sequence[str | None], say: Callable[[str], None] = print) -> dict[str, Any]:
    """What a collection with this threshold would remove, and what it keeps and why."""
    cutoff_ms = now_ms() - int(parse_older_than(older_than).total_seconds() * 1000)
    say(f"Deleted before {iso(cutoff_ms)} (older than {older_than}), in "
        f"{_scope(experiment_ids, workspace_names)}:")
    totals = {kind: {"count": 0, "artifact_files": 0, "artifact_bytes": 0}
              for kind in ("runs", "logged_models", "experiments")}
    kept: list[dict[str, str]] = []
    unmeasured: list[dict[str, str]] = []
    for workspace in workspace_names:
        with _in_workspace(workspace):
            chosen = plan(store.inventory(cutoff_ms, experiment_ids), store.protected_versions())
        where = f" [workspace {workspace}]" if workspace else ""
        for kind, items in chosen.in_collection_order():
            for item in items:
                found = measure(item.artifacts_at) if item.artifacts_at else Artifacts()
                totals[kind]["count"] += 1
                totals[kind]["artifact_files"] += found.files
                totals[kind]["artifact_bytes"] += found.bytes
                if found.error:
                    unmeasured.append({"kind": kind, "id": item.id, "error": found.error})
                artifacts = f"artifacts not listed: {found.error}" if found.error else (
                    f"{found.files} file(s), {found.bytes} bytes")
                say(f"  eligible {item.label()}{where}: {artifacts}")
        for item in chosen.kept:
            kept.append({"kind": item.kind, "id": item.id, "reason": item.reason,
                         **({"workspace": workspace} if workspace else {})})
            say(f"  KEPT {item.kind} {item.id}{where}: {item.reason}")
    result = {
        "older_than": older_than, "cutoff_ms": cutoff_ms, "cutoff": iso(cutoff_ms),
        "experiment_ids": list(experiment_ids), "all_workspaces": workspace_names != [None],
        "eligible": totals, "kept": kept, "unmeasured": unmeasured,
    }
    say("Eligible: " + ", ".join(f"{totals[kind]['count']} {kind.replace('_', ' ')}" for kind in totals)
        + f" ({sum(t['artifact_bytes'] for t in totals.values())} bytes of artifacts); kept: {len(kept)}.")
    return result


def collect(store: BackendStore, cutoff_ms: int, experiment_ids: Sequence[str],
            workspace_names: Sequence[str | None], batch_size: int,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """Collects what the report listed (the same cutoff), batch by batch: protection is read again
    before each batch, one failure fails its item and its batch, never the batches after it."""
    say(f"Collecting what was deleted before {iso(cutoff_ms)} in "
        f"{_scope(experiment_ids, workspace_names)}, {batch_size} per batch.")
    outcomes: list[BatchOutcome] = []
    for workspace in workspace_names:
        with _in_workspace(workspace):
            chosen = plan(store.inventory(cutoff_ms, experiment_ids), store.protected_versions())
            for item in chosen.kept:
                say(f"KEPT {item.kind} {item.id}: {item.reason}")
            for kind, items in chosen.in_collection_order():
                for batch in batches(items, batch_size):
                    outcome = _collect_batch(store, kind, len(outcomes) + 1, batch, cutoff_ms, say)
                    say(outcome.line())
                    outcomes.append(outcome)
    summary = summarise(outcomes)
    summary["cutoff_ms"] = cutoff_ms
    return summary


def _collect_batch(store: BackendStore, kind: Kind, number: int, items: Sequence[Deleted], cutoff_ms: int,
                   say: Callable[[str], None]) -> BatchOutcome:
    outcome = BatchOutcome(kind=kind, number=number, size=len(items))
    # A version may have gained an alias since the report: read the registry again for every batch.
    protected_runs, protected_models = protection(store.protected_versions())
    protected = {"runs": protected_runs, "logged_models": protected_models}.get(kind, {})
    for item in items:
        if item.id in protected:
            outcome.kept[item.id] = protected[item.id]
            say(f"  {kind} {item.id}: KEPT: {protected[item.id]}")
            continue
        try:
            removed = store.remove(item, cutoff_ms)
        except Exception as error:  # noqa: BLE001 - one bad item must not stop the others
            outcome.failed[item.id] = _describe(error)
            say(f"  {kind} {item.id}: FAILED: {outcome.failed[item.id]}")
            continue
        if isinstance(removed, str):
            outcome.kept[item.id] = removed
            say(f"  {kind} {item.id}: KEPT: {removed}")
        else:
            outcome.collected.append(item.id)
            outcome.artifacts = outcome.artifacts + removed
            say(f"  {kind} {item.id}: collected ({removed.files} file(s), {removed.bytes} bytes)")
    return outcome


def _scope(experiment_ids: Sequence[str], workspace_names: Sequence[str | None]) -> str:
    experiments = f"experiments {', '.join(experiment_ids)}" if experiment_ids else "all experiments"
    spaces = ("workspaces " + ", ".join(str(name) for name in workspace_names)
              if workspace_names != [None] else "the active workspace")
    return f"{experiments} of {spaces}"


def _describe(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message[:500]}"


def _redacted(uri: str) -> str:
    """The URI without its password, for messages."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return uri
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _require_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise GcError(f"{name} is not set: {what}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {GC_MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    report_command = commands.add_parser("report", help="list what is eligible, change nothing")
    report_command.add_argument("--older-than", required=True)
    collect_command = commands.add_parser("collect", help="collect what the report listed")
    collect_command.add_argument("--cutoff-ms", type=int, required=True)
    collect_command.add_argument("--batch-size", type=int, required=True)
    for command in (report_command, collect_command):
        command.add_argument("--experiment-ids", default="", help="comma-separated; default: all")
        command.add_argument("--all-workspaces", action="store_true")
        command.add_argument("--output", type=Path, help="write the JSON result here (default: stdout)")
    args = parser.parse_args(argv)
    experiment_ids = [part for part in args.experiment_ids.split(",") if part]
    try:
        backend_store_uri = _require_env(BACKEND_STORE_URI_ENV, "the MLflow backend store to collect from")
        tracking_uri = _require_env(TRACKING_URI_ENV,
                                    "the tracking server, through which proxied artifact URIs resolve")
        spaces = workspaces(backend_store_uri, tracking_uri, args.all_workspaces)
        if args.all_workspaces and spaces == [None]:
            print("all_workspaces: the tracking server runs without --enable-workspaces, so it has one "
                  "workspace: that one is collected.")
        store = BackendStore(backend_store_uri)
        if args.command == "report":
            result = report(store, args.older_than, experiment_ids, spaces)
        else:
            result = collect(store, args.cutoff_ms, experiment_ids, spaces, args.batch_size)
    except (GcError, ValueError) as error:
        print(f"mlflow_gc: {error}", file=sys.stderr)
        return 2
    text = json.dumps(as_json(result), sort_keys=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
