"""The mlflow_gc DAG end to end: real Airflow (``dag.test()``), a real MLflow server on SQLite or
PostgreSQL with artifacts on local files or on S3 (moto's server), and the real collection in a child
process. Every test compares what MLflow and the artifact store hold before and after, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from embedded.mlflow_server import MlflowServer
from tests.conftest import SESSION_DIR
from tests.support.airflow_runs import load_dag, manual_run
from tests.support.stores import S3Server, file_digests, fresh_postgres_database, postgres_user

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY_MS = 24 * 3600 * 1000
STACKS = [
    pytest.param(("sqlite", "local"), id="sqlite-local"),
    pytest.param(("sqlite", "s3"), id="sqlite-s3"),
    pytest.param(("postgresql", "local"), id="postgresql-local", marks=pytest.mark.postgres),
    pytest.param(("postgresql", "s3"), id="postgresql-s3", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@dataclass
class Stack:
    """One MLflow server and where its artifacts are, as the DAG's tasks see it (the environment)."""

    name: str
    server: MlflowServer
    artifact_digests: Callable[[], dict[str, str]]
    s3: S3Server | None = None
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    backend, artifacts = request.param
    name = f"{backend}-{artifacts}"
    with ExitStack() as cleanup:
        backend_store_uri = None
        if backend == "postgresql":
            user, why_not = postgres_user()
            if user is None:
                pytest.skip(why_not)
            backend_store_uri = cleanup.enter_context(fresh_postgres_database(user))
        root = SESSION_DIR / f"gc-{name}"
        s3: S3Server | None = None
        env: dict[str, str] = {}
        if artifacts == "s3":
            s3 = request.getfixturevalue("s3_server")
            bucket = s3.create_bucket()
            env = s3.env
            server = MlflowServer(root, backend_store_uri=backend_store_uri,
                                  artifacts_destination=f"s3://{bucket}/artifacts", env=env)
            digests = lambda: s3.digests(bucket, "artifacts/")  # noqa: E731
        else:
            server = MlflowServer(root, backend_store_uri=backend_store_uri)
            digests = lambda: file_digests(root / "artifacts")  # noqa: E731
        server.start()
        cleanup.callback(server.stop)
        with pytest.MonkeyPatch.context() as patch:
            # What the Airflow worker's environment holds; the gc child process inherits it.
            for key, value in {**env, "AIRFLOW_CONN_MLFLOW_DEFAULT": server.url,
                               "MLFLOW_BACKEND_STORE_URI": server.backend_store_uri}.items():
                patch.setenv(key, value)
            yield Stack(name, server, digests, s3, env)


@dataclass
class Seeded:
    """What a test put into MLflow, by what the collection must do with it."""

    collected_runs: dict[str, str]  # run id -> experiment id
    collected_models: dict[str, str]  # logged model id -> experiment id
    collected_experiments: list[str]
    kept_runs: list[str]
    kept_models: list[str]
    kept_experiments: list[str]
    model_name: str
    collected_run_bytes: int

    def collected_prefixes(self) -> list[str]:
        return ([f"{experiment}/{run}/" for run, experiment in self.collected_runs.items()]
                + [f"{experiment}/models/{model}/" for model, experiment in self.collected_models.items()])


def age(stack: Stack, *, days: float, runs: list[str] = (), experiments: list[str] = (),
        models: list[str] = ()) -> None:
    """Makes deletions ``days`` old, as if the clock had moved on (MLflow records them only in the
    backend store)."""
    import sqlalchemy

    then = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).timestamp() * 1000)
    engine = sqlalchemy.create_engine(stack.server.backend_store_uri)
    statements = [
        ("UPDATE runs SET deleted_time = :then WHERE run_uuid = :id", runs),
        ("UPDATE experiments SET last_update_time = :then WHERE experiment_id = :id",
         [int(e) for e in experiments]),
        ("UPDATE logged_models SET last_updated_timestamp_ms = :then WHERE model_id = :id", models),
    ]
    with engine.begin() as connection:
        for statement, ids in statements:
            for id_ in ids:
                connection.execute(sqlalchemy.text(statement), {"then": then, "id": id_})
    engine.dispose()


def seed(stack: Stack, tag: str) -> Seeded:
    """Active runs, deleted runs older and younger than 30 days, a deleted experiment, a deleted
    logged model, and deleted runs (and a logged model) behind protected registered model versions."""
    client = stack.client()
    scratch = Path(tempfile.mkdtemp(dir=SESSION_DIR))

    def files(name: str, count: int) -> Path:
        folder = scratch / name
        (folder / "nested").mkdir(parents=True)
        for index in range(count):
            path = folder / ("nested" if index % 2 else "") / f"file-{index}.txt"
            path.write_text(f"{name}:{index}\n" * 50)
        return folder

    written: dict[str, int] = {}

    def run(experiment_id: str, artifacts: int = 3) -> str:
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "alpha", "0.1")
        client.log_metric(run_id, "accuracy", 0.9)
        if artifacts:
            folder = files(run_id, artifacts)
            written[run_id] = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
            client.log_artifacts(run_id, str(folder))
        client.set_terminated(run_id)
        return run_id

    def logged_model(experiment_id: str, source_run: str | None = None) -> str:
        model = client.create_logged_model(experiment_id, name="model", source_run_id=source_run)
        client.log_model_artifacts(model.model_id, str(files(model.model_id, 2)))
        return model.model_id

    live = client.create_experiment(f"{tag}-live")
    dead = client.create_experiment(f"{tag}-dead")
    held = client.create_experiment(f"{tag}-held")
    active = [run(live), run(live)]
    old = [run(live), run(live), run(live, artifacts=0)]
    young = [run(live)]
    staged = run(live)
    dead_runs = [run(dead), run(dead)]
    aliased = run(held)
    old_model = logged_model(live)
    held_model = logged_model(held, source_run=aliased)

    name = f"{tag}-model"
    client.create_registered_model(name)
    production = client.create_model_version(name, f"models:/{held_model}", run_id=aliased,
                                             model_id=held_model)
    client.set_registered_model_alias(name, "production", production.version)
    staging = client.create_model_version(name, f"runs:/{staged}/model", run_id=staged)
    client.transition_model_version_stage(name, staging.version, "Staging")

    for run_id in [*old, *young, staged]:
        client.delete_run(run_id)
    client.delete_logged_model(old_model)
    client.delete_logged_model(held_model)
    client.delete_experiment(dead)
    client.delete_experiment(held)
    age(stack, days=40, runs=[*old, staged, *dead_runs, aliased], experiments=[dead, held],
        models=[old_model, held_model])
    age(stack, days=29, runs=young)
    collected_runs = {run_id: live for run_id in old} | {run_id: dead for run_id in dead_runs}
    return Seeded(
        collected_runs=collected_runs,
        collected_models={old_model: live},
        collected_experiments=[dead],
        kept_runs=[*active, *young, staged, aliased],
        kept_models=[held_model],
        kept_experiments=[live, held],
        model_name=name,
        collected_run_bytes=sum(written.get(run_id, 0) for run_id in collected_runs),
    )


def snapshot(stack: Stack, seeded: Seeded) -> dict[str, Any]:
    """Everything the seed put in MLflow, as MLflow answers for it (``None``: gone), and every
    artifact object's digest."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import _get_store

    client = stack.client()

    def read(get: Callable[[str], Any], id_: str) -> Any:
        try:
            return get(id_)
        except MlflowException as error:
            assert error.error_code == "RESOURCE_DOES_NOT_EXIST", error
            return None

    def run(id_: str) -> Any:
        found = client.get_run(id_)
        return {"info": dict(found.info), "data": found.data.to_dictionary()}

    def experiment(id_: str) -> Any:
        found = client.get_experiment(id_)
        return (found.name, found.lifecycle_stage, found.artifact_location, found.last_update_time)

    # The tracking server does not show deleted logged models; the backend store does.
    store = _get_store(stack.server.backend_store_uri)

    def model(id_: str) -> Any:
        return store.get_logged_model(id_, allow_deleted=True).to_dictionary()

    versions = client.search_model_versions(f"name = '{seeded.model_name}'")
    return {
        "runs": {id_: read(run, id_) for id_ in [*seeded.collected_runs, *seeded.kept_runs]},
        "experiments": {id_: read(experiment, id_)
                        for id_ in [*seeded.collected_experiments, *seeded.kept_experiments]},
        "models": {id_: read(model, id_) for id_ in [*seeded.collected_models, *seeded.kept_models]},
        "versions": sorted((v.version, v.current_stage, v.run_id, v.model_id, tuple(v.aliases))
                           for v in versions),
        "artifacts": stack.artifact_digests(),
    }


def task_results(run: Any) -> dict[str, Any]:
    """Each task's state and return value (XCom), including a failed task's pushed summary."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    results = {}
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=ti.task_id,
                                       key="return_value")
            value = session.scalars(query).first()
            results[ti.task_id] = (str(ti.state), XComModel.deserialize_value(value) if value else None)
    return results


def test_collects_exactly_the_eligible_and_a_dry_run_changes_nothing(stack: Stack) -> None:
    seeded = seed(stack, f"gc-{stack.name}")
    before = snapshot(stack, seeded)
    assert all(before["runs"].values()) and all(before["models"].values())
    prefixes = seeded.collected_prefixes()
    assert any(key.startswith(tuple(prefixes)) for key in before["artifacts"]), "the seed wrote artifacts"

    dry = task_results(manual_run(load_dag("mlflow_gc"), conf={"dry_run": True}))
    assert snapshot(stack, seeded) == before
    assert dry["collect"] == ("skipped", None)
    state, report = dry["report"]
    assert state == "success"
    assert report["eligible"]["runs"]["count"] == len(seeded.collected_runs)
    assert report["eligible"]["logged_models"]["count"] == 1
    assert report["eligible"]["experiments"]["count"] == 1
    assert report["eligible"]["runs"]["artifact_bytes"] == seeded.collected_run_bytes > 0
    kept = {item["id"]: item["reason"] for item in report["kept"]}
    aliased, staged = seeded.kept_runs[-1], seeded.kept_runs[-2]
    assert "alias 'production'" in kept[aliased] and seeded.model_name in kept[aliased]
    assert "stage Staging" in kept[staged]
    assert "alias 'production'" in kept[seeded.kept_models[0]]
    held = seeded.kept_experiments[1]
    assert kept[held].startswith("holds 1 run(s) that are not collected") and aliased in kept[held]

    real = task_results(manual_run(load_dag("mlflow_gc")))
    assert real["report"][0] == real["collect"][0] == "success", real
    summary = real["collect"][1]
    assert summary["runs"]["collected"] == len(seeded.collected_runs)
    assert summary["logged_models"]["collected"] == 1 and summary["experiments"]["collected"] == 1
    assert summary["failed_batches"] == []
    assert summary["runs"]["artifact_bytes"] == seeded.collected_run_bytes

    after = snapshot(stack, seeded)
    assert after["runs"] == {**before["runs"], **{run: None for run in seeded.collected_runs}}
    assert after["models"] == {**before["models"], **{model: None for model in seeded.collected_models}}
    assert after["experiments"] == {**before["experiments"],
                                    **{experiment: None for experiment in seeded.collected_experiments}}
    assert after["versions"] == before["versions"]
    assert after["artifacts"] == {key: digest for key, digest in before["artifacts"].items()
                                  if not key.startswith(tuple(prefixes))}


def test_a_failed_batch_fails_the_task_after_the_other_batches(stack: Stack, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if stack.s3 is None:
        pytest.skip("the artifact location that cannot be deleted is an S3 bucket that does not exist")
    client = stack.client()
    first = client.create_experiment(f"gc-{stack.name}-first")
    # Its artifact location is a bucket that was removed: the artifacts of its runs cannot be deleted,
    # so their metadata must stay (and the next collection tries again).
    broken = client.create_experiment(f"gc-{stack.name}-broken",
                                      artifact_location="s3://removed-bucket/artifacts")
    last = client.create_experiment(f"gc-{stack.name}-last")
    runs = {}
    for experiment, text in ((first, "first"), (broken, None), (last, None), (last, "last")):
        run_id = client.create_run(experiment).info.run_id
        if text:
            client.log_text(run_id, text * 100, "notes.txt")
        client.delete_run(run_id)
        runs[run_id] = experiment
    age(stack, days=40, runs=list(runs))
    config = tmp_path / "mlflow_gc.yaml"
    config.write_text("batch_size: 1\nretries: 0\n")
    monkeypatch.setenv("MODEL_LIFECYCLE_GC_CONFIG", str(config))

    # all_workspaces: this server has one workspace, so the same is collected as without it.
    conf = {"experiment_ids": [first, broken, last], "all_workspaces": True}
    results = task_results(manual_run(load_dag("mlflow_gc"), conf=conf))

    state, summary = results["collect"]
    assert state == "failed"
    assert summary["runs"] == {**summary["runs"], "collected": 3, "failed": 1, "batches": 4}
    [failed] = summary["failed_batches"]
    broken_run = next(run for run, experiment in runs.items() if experiment == broken)
    assert (failed["kind"], failed["batch"], list(failed["errors"])) == ("runs", 2, [broken_run])
    assert "s3://removed-bucket/" in failed["errors"][broken_run]
    assert "bucket does not exist" in failed["errors"][broken_run]
    assert client.get_run(broken_run).info.lifecycle_stage == "deleted"
    for run_id in set(runs) - {broken_run}:
        with pytest.raises(Exception, match="RESOURCE_DOES_NOT_EXIST"):
            client.get_run(run_id)
    assert not [key for key in stack.artifact_digests() if key.startswith((f"{first}/", f"{last}/"))]


def test_protection_is_read_again_before_each_batch(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version that gains an alias while the collection runs keeps its run: the next batch sees it."""
    from model_lifecycle.gc.collector import BackendStore, collect, now_ms

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.server.url)
    client = stack.client()
    experiment = client.create_experiment(f"gc-{stack.name}-racing")
    first, second = (client.create_run(experiment).info.run_id for _ in range(2))
    for run_id in (first, second):
        client.log_text(run_id, run_id, "notes.txt")
        client.delete_run(run_id)
    age(stack, days=41, runs=[first])  # batches follow the order of deletion
    age(stack, days=40, runs=[second])
    name = f"gc-{stack.name}-racing-model"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{second}/model", run_id=second)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("runs batch 1:"):  # someone promotes the second run's version meanwhile
            client.set_registered_model_alias(name, "champion", version.version)

    summary = collect(BackendStore(stack.server.backend_store_uri), now_ms() - 30 * DAY_MS, [experiment],
                      [None], batch_size=1, say=say)

    assert summary["runs"]["collected"] == 1 and summary["failed_batches"] == []
    assert summary["kept"] == [{"kind": "runs", "id": second,
                                "reason": f"backs registered model {name!r} version 1 (alias 'champion')"}]
    assert client.get_run(second).info.lifecycle_stage == "deleted"
    assert client.download_artifacts(second, "notes.txt")
    with pytest.raises(Exception, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_run(first)
