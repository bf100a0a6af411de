"""ModelRegistry against a real MLflow server: idempotent registration and promotions that survive
being interrupted at any step."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import yaml

from model_lifecycle.policy import DataWindow
from model_lifecycle.registry import ModelRegistry, RegistryError, Tag
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec

WINDOW = DataWindow(start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                    end=dt.datetime(2026, 11, 15, tzinfo=dt.UTC))


@pytest.fixture
def spec() -> ModelSpec:
    document = yaml.safe_load((PROJECT_ROOT / "include" / "models" / "demo.yaml").read_text())
    name = f"r{uuid.uuid4().hex[:8]}"
    document.update(name=name, registered_model=f"{name}-model", experiment=f"{name}-experiment")
    return ModelSpec.model_validate(document)


@pytest.fixture
def registry(mlflow_client: Any, spec: ModelSpec) -> ModelRegistry:
    return ModelRegistry(mlflow_client, spec)


def log_run(mlflow_client: Any, spec: ModelSpec, window: DataWindow = WINDOW, *, model: bool = True,
            status: str = "FINISHED") -> Any:
    import mlflow
    import mlflow.sklearn
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(mlflow_client.tracking_uri)
    experiment = mlflow.set_experiment(spec.experiment)
    start, end = window.as_strings()
    tags = {Tag.MODEL: spec.registered_model, Tag.WINDOW_START: start, Tag.WINDOW_END: end}
    run = mlflow_client.create_run(experiment.experiment_id, tags=tags)
    if model:
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model")
    if status != "RUNNING":
        mlflow_client.set_terminated(run.info.run_id, status=status)
    return mlflow_client.get_run(run.info.run_id)


def test_finished_run_is_found_by_model_and_window(registry: ModelRegistry, mlflow_client: Any,
                                                   spec: ModelSpec) -> None:
    assert registry.finished_run(WINDOW) is None
    log_run(mlflow_client, spec, model=False, status="FAILED")
    other = DataWindow(start=WINDOW.start, end=WINDOW.end + dt.timedelta(hours=1))
    log_run(mlflow_client, spec, other, model=False)
    finished = log_run(mlflow_client, spec, model=False)
    assert registry.finished_run(WINDOW).info.run_id == finished.info.run_id


def test_interrupted_runs_are_marked_killed(registry: ModelRegistry, mlflow_client: Any,
                                            spec: ModelSpec) -> None:
    stuck = log_run(mlflow_client, spec, model=False, status="RUNNING")
    assert registry.fail_unfinished_runs(WINDOW) == [stuck.info.run_id]
    assert mlflow_client.get_run(stuck.info.run_id).info.status == "KILLED"
    assert registry.fail_unfinished_runs(WINDOW) == []


def test_a_run_is_registered_once(registry: ModelRegistry, mlflow_client: Any, spec: ModelSpec) -> None:
    run = log_run(mlflow_client, spec)
    first = registry.register(run, {Tag.DAG_ID: "retrain__x"})
    again = registry.register(run, {Tag.DAG_ID: "retrain__x"})
    assert (first.version, again.version) == ("1", "1")
    assert first.tags == {Tag.DAG_ID: "retrain__x", Tag.STATUS: "registered"}
    assert len(mlflow_client.search_model_versions(f"name = '{spec.registered_model}'")) == 1


def test_a_run_without_a_model_is_named(registry: ModelRegistry, mlflow_client: Any, spec: ModelSpec) -> None:
    run = log_run(mlflow_client, spec, model=False)
    with pytest.raises(RegistryError, match=f"MLflow run {run.info.run_id} logged no model"):
        registry.register(run, {})


def test_promotions_move_stage_and_alias_together(registry: ModelRegistry, mlflow_client: Any,
                                                  spec: ModelSpec) -> None:
    name = spec.registered_model
    assert registry.production() is None
    v1 = registry.register(log_run(mlflow_client, spec), {}).version
    assert registry.promote_to_staging(v1)
    assert (registry.version(v1).current_stage, registry.by_alias("staging").version) == ("Staging", v1)
    assert registry.promote_to_production(v1) is None
    assert registry.by_alias("staging") is None  # the alias left with the stage
    assert registry.promote_to_staging(v1) is False  # past Staging: left alone
    v2 = registry.register(log_run(mlflow_client, spec), {}).version
    registry.promote_to_staging(v2)
    assert registry.promote_to_production(v2) == v1
    aliases = dict(mlflow_client.get_registered_model(name).aliases)
    assert aliases == {"production": v2, "previous-production": v1}
    assert [registry.version(v).current_stage for v in (v1, v2)] == ["Archived", "Production"]
    assert registry.version(v1).tags[Tag.SUCCEEDED_BY] == v2


def test_production_promotion_interrupted_after_archiving_completes_on_rerun(
        registry: ModelRegistry, mlflow_client: Any, spec: ModelSpec) -> None:
    v1 = registry.register(log_run(mlflow_client, spec), {}).version
    registry.promote_to_production(v1)
    v2 = registry.register(log_run(mlflow_client, spec), {}).version
    # The first attempt wrote which version it replaces, then died right after production moved.
    registry.set_tags(v2, {Tag.PREVIOUS_PRODUCTION: v1})
    mlflow_client.set_registered_model_alias(spec.registered_model, "production", v2)
    assert registry.promote_to_production(v2) == v1
    assert registry.version(v1).current_stage == "Archived"
    assert registry.by_alias("previous-production").version == v1
    assert registry.version(v2).current_stage == "Production"


def test_record_keeps_the_first_observation(registry: ModelRegistry, mlflow_client: Any,
                                            spec: ModelSpec) -> None:
    version = registry.register(log_run(mlflow_client, spec), {}).version
    registry.set_tags(version, {Tag.MERGED_BY: "alice"}, keep_existing=True)
    registry.set_tags(version, {Tag.MERGED_BY: "bob", Tag.MERGE_SHA: "abc"}, keep_existing=True)
    tags = registry.version(version).tags
    assert (tags[Tag.MERGED_BY], tags[Tag.MERGE_SHA]) == ("alice", "abc")
