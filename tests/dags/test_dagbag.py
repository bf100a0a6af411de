"""The DAG files, parsed as Airflow's DAG processor parses them."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_lifecycle.specs import PROJECT_ROOT

SHIPPED_SPECS = PROJECT_ROOT / "include" / "models"


def parse(specs: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MODEL_LIFECYCLE_SPECS_DIR", str(specs))
    return DagBag(str(PROJECT_ROOT / "dags"))


def test_shipped_dags_load_with_what_operators_need(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = parse(SHIPPED_SPECS, monkeypatch)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"retrain__demo", "mlflow_gc", "promote_model_version"}
    for dag in bag.dags.values():
        assert dag.tags and "model-lifecycle" in dag.tags
        assert dag.doc_md and dag.doc_md.startswith("# ")
        assert dag.start_date == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        assert not dag.catchup
        assert all(task.retries == 2 for task in dag.tasks)
    assert bag.dags["retrain__demo"].max_active_runs == bag.dags["mlflow_gc"].max_active_runs == 1


def test_promote_dag_offers_the_models_and_requires_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    dag = parse(SHIPPED_SPECS, monkeypatch).dags["promote_model_version"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual only
    assert [task.task_id for task in dag.topological_sort()] == [
        "resolve", "preflight", "score", "open_pr", "wait_for_merge", "verify_rollout", "promote_production"]
    # the version is scored against the current production for the reviewer; that cannot block it
    assert dag.task_dict["score"].required is False
    # resolving takes the InferenceService on, so it runs in the promotion pool as open_pr does
    assert {dag.task_dict[task].pool for task in ("resolve", "open_pr")} == {"model_lifecycle_promotion"}
    assert [link.name for link in dag.task_dict["promote_production"].operator_extra_links] == [
        "Model version", "MLflow run", "Pull request"]
    assert dag.params.get_param("model").schema["enum"] == ["demo"]
    good = {"model": "demo", "version": "previous-production", "reason": "roll back: v7 misroutes EU traffic"}
    for bad in ({"model": "fraud"}, {"version": "v7!"}, {"reason": "oops"}):
        form = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError):
            form.update({**good, **bad})
            form.validate()
    form = copy.deepcopy(dag.params)
    form.update({**good, "version": "12"})
    assert form.validate()["version"] == "12"


def test_retrain_dag_shape_schedule_and_form(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = parse(SHIPPED_SPECS, monkeypatch).dags["retrain__demo"]
    order = ["plan", "train", "register", "score", "evaluate", "preflight", "promote_staging", "open_pr",
             "wait_for_merge", "verify_rollout", "promote_production"]
    assert [task.task_id for task in dag.topological_sort()] == order
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.task_dict[upstream].downstream_task_ids
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.expression == "0 3 * * *"
    # Through an alias: an event of the model's production asset is added only when production changes.
    assert [outlet.name for outlet in dag.task_dict["promote_production"].outlets] == [
        "model-lifecycle/production"]
    assert dag.task_dict["wait_for_merge"].__class__.__name__ == "WaitForMergeSensor"
    assert [task.task_id for task in dag.tasks if task.pool == "model_lifecycle_promotion"] == ["open_pr"]
    linked = [task.task_id for task in dag.tasks if task.operator_extra_links]
    assert linked == order[4:]  # every task that works on a registered version, past its scoring


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"lookback_days": 7, "force_promotion": None}, None),
        ({"lookback_days": 0}, "lookback_days"),
        ({"lookback_days": "7"}, "lookback_days"),
        ({"force_promotion": "because"}, "force_promotion"),
        ({"force_promotion": "label fix of 2026-11, re-promote"}, None),
    ],
)
def test_trigger_form_validates_params(monkeypatch: pytest.MonkeyPatch, params: dict,
                                       error: str | None) -> None:
    submit_form("retrain__demo", params, error, monkeypatch)


def submit_form(dag_id: str, params: dict, error: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submits the DAG's trigger form; ``error`` names the parameter it must reject, if any."""
    from airflow.sdk.exceptions import ParamValidationError

    form = copy.deepcopy(parse(SHIPPED_SPECS, monkeypatch).dags[dag_id].params)

    def submit() -> None:
        form.update(params)
        form.validate()

    if error is None:
        submit()
    else:
        with pytest.raises(ParamValidationError, match=error):
            submit()


def test_mlflow_gc_dag_shape_and_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = parse(SHIPPED_SPECS, monkeypatch).dags["mlflow_gc"]
    assert [task.task_id for task in dag.topological_sort()] == ["report", "collect"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.timetable.expression == "0 2 * * 0"  # Sundays 02:00 UTC, from include/mlflow_gc.yaml
    assert {type(task).__name__ for task in dag.tasks} == {"LocalMlflowGcOperator"}
    assert dag.params.dump() == {"older_than": "30d", "dry_run": False, "experiment_ids": [],
                                 "all_workspaces": False}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"older_than": "1d2h3m4s", "dry_run": True, "experiment_ids": ["1", "12"]}, None),
        ({"older_than": "1.5d", "all_workspaces": True}, None),
        ({"older_than": "30 days"}, "older_than"),
        ({"older_than": "30"}, "older_than"),
        ({"older_than": ""}, "older_than"),
        ({"older_than": "2h1d"}, "older_than"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"experiment_ids": ["abc"]}, "experiment_ids"),
        ({"experiment_ids": "1,2"}, "experiment_ids"),
    ],
)
def test_mlflow_gc_form_validates_params(monkeypatch: pytest.MonkeyPatch, params: dict,
                                         error: str | None) -> None:
    submit_form("mlflow_gc", params, error, monkeypatch)


def test_bad_gc_config_is_the_import_error_of_its_dag(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "mlflow_gc.yaml"
    config.write_text("older_than: 30 days\n")
    monkeypatch.setenv("MODEL_LIFECYCLE_GC_CONFIG", str(config))
    bag = parse(SHIPPED_SPECS, monkeypatch)
    assert set(bag.dags) == {"retrain__demo", "promote_model_version"}
    assert list(bag.import_errors) == [str(PROJECT_ROOT / "dags" / "mlflow_gc.py")]
    assert f"{config}: older_than: '30 days' is not a duration" in next(iter(bag.import_errors.values()))


@pytest.mark.parametrize(("edit", "problem"), [
    (("lookback_days: 14", "lookback_days: soon"), "data.lookback_days: Input should be a valid integer"),
    # Well-formed but out of range: the spec's error, not the timetable's on dags/retrain.py.
    (('schedule: "0 3 * * *"', 'schedule: "61 25 * * *"'),
     "schedule: '61 25 * * *' is not a valid cron expression: minute '61' (allowed: 0-59); "
     "hour '25' (allowed: 0-23)"),
])
def test_bad_spec_is_an_import_error_and_other_models_still_load(
        edit: tuple[str, str], problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(SHIPPED_SPECS / "demo.yaml", tmp_path / "demo.yaml")
    broken = (SHIPPED_SPECS / "demo.yaml").read_text().replace("name: demo", "name: broken")
    assert edit[0] in broken
    (tmp_path / "broken.yaml").write_text(broken.replace(*edit))
    bag = parse(tmp_path, monkeypatch)
    assert set(bag.dags) == {"retrain__demo", "mlflow_gc", "promote_model_version"}
    assert list(bag.import_errors) == [str(PROJECT_ROOT / "dags" / "model_spec_errors.py")]
    message = next(iter(bag.import_errors.values()))
    assert "1 model spec(s) are invalid" in message
    assert f"{tmp_path / 'broken.yaml'}: {problem}" in message


def test_parsing_imports_nothing_heavy() -> None:
    probe = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag({str(PROJECT_ROOT / 'dags')!r})\n"
        "heavy = sorted(m for m in ('mlflow', 'boto3', 'sklearn', 'ruamel', 'kubernetes_asyncio', 'pandas')\n"
        "               if m in sys.modules)\n"
        "print(json.dumps({'dags': sorted(bag.dags), 'heavy': heavy}))\n"
    )
    import os

    env = {**os.environ, "MODEL_LIFECYCLE_SPECS_DIR": str(SHIPPED_SPECS)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                            check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"dags": ["mlflow_gc", "promote_model_version", "retrain__demo"], "heavy": []}


def test_kubernetes_backends_are_wired_from_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    document = yaml.safe_load((SHIPPED_SPECS / "demo.yaml").read_text())
    document["training"].update(backend="kubernetes", kubernetes={
        "namespace": "ml-training", "service_account": "trainer", "node_selector": {"pool": "cpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "secrets": ["mlflow-credentials", "s3-credentials"]})
    document["rollout"]["target"] = "kserve"
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(document))
    dag = parse(tmp_path, monkeypatch).dags["retrain__demo"]
    train = dag.task_dict["train"]
    assert type(train).__name__ == "KubernetesTrainingOperator"
    assert (train.namespace, train.image, train.cmds) == (
        "ml-training", "ghcr.io/example/model-lifecycle-trainer:1.0", ["python", "-m", "training"])
    assert train.deferrable and not train.do_xcom_push
    assert train.on_finish_action.value == "delete_succeeded_pod"
    assert train.labels["model-lifecycle/model"] == "demo"
    assert train.service_account_name == "trainer" and train.node_selector == {"pool": "cpu"}
    assert [t.key for t in train.tolerations] == ["dedicated"]
    assert [source.secret_ref.name for source in train.env_from] == ["mlflow-credentials", "s3-credentials"]
    assert train.container_resources.limits == {"memory": "2Gi"}
    assert train.pod_template_file.endswith("include/kubernetes/training-pod-template.yaml")
    assert train.kubernetes_conn_id == "kubernetes_default"
    assert type(dag.task_dict["verify_rollout"]).__name__ == "VerifyRolloutSensor"


def test_a_canary_stage_adds_its_steps_before_the_full_rollout(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    document = yaml.safe_load((SHIPPED_SPECS / "demo.yaml").read_text())
    document["rollout"].update(target="kserve", kserve={"canary": {"traffic_percent": 10}})
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(document))
    dag = parse(tmp_path, monkeypatch).dags["retrain__demo"]
    assert [task.task_id for task in dag.topological_sort()][7:] == [
        "open_pr", "wait_for_merge", "verify_canary", "open_full_rollout", "wait_for_full_rollout",
        "verify_rollout", "promote_production"]
    assert dag.task_dict["open_pr"].canary and dag.task_dict["verify_canary"].canary
    assert not dag.task_dict["verify_rollout"].canary and dag.task_dict["wait_for_full_rollout"].full_rollout
    assert "**Canary**: the pull request sends 10% of the requests" in dag.doc_md
