"""Each operator and sensor on its own: what its ``__init__`` stores, which of its inputs are templated
(so an upstream result resolves when the task runs), and the DAG edges its inputs make."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from airflow.sdk import DAG

from model_lifecycle.operators.gitops import OpenPullRequestOperator
from model_lifecycle.operators.lifecycle import (
    PRODUCTION_ALIAS,
    EvaluateOperator,
    PlanOperator,
    PromoteToProductionOperator,
    PromoteToStagingOperator,
    RegisterOperator,
    ResolveVersionOperator,
)
from model_lifecycle.operators.preflight import PreflightOperator
from model_lifecycle.operators.training import LocalTrainingOperator, scoring_task, training_task
from model_lifecycle.results import Merge, RegisteredVersion
from model_lifecycle.sensors.merge import WaitForMergeSensor, approval
from model_lifecycle.sensors.rollout import VerifyRolloutSensor, rollout_task
from model_lifecycle.specs import load_spec
from tests.conftest import DEMO_SPEC

SPEC = load_spec("demo", DEMO_SPEC.parent)


def wired() -> dict[str, Any]:
    with DAG("operators", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
        plan = PlanOperator(task_id="plan", spec=SPEC)
        tasks = {
            "plan": plan,
            "train": training_task(SPEC, task_id="train", plan=plan.output),
            "register": (register := RegisterOperator(task_id="register", spec=SPEC, plan=plan.output)),
            "score": (score := scoring_task(SPEC, "local", task_id="score", plan=plan.output,
                                            registered=register.output)),
            "evaluate": EvaluateOperator(task_id="evaluate", spec=SPEC, plan=plan.output,
                                         registered=register.output, scoring=score.output),
            "preflight": PreflightOperator(task_id="preflight", spec=SPEC, registered=register.output),
            "promote_staging": PromoteToStagingOperator(task_id="promote_staging", spec=SPEC,
                                                        registered=register.output),
            "open_pr": (open_pr := OpenPullRequestOperator(task_id="open_pr", spec=SPEC,
                                                           registered=register.output)),
            "wait_for_merge": (wait := WaitForMergeSensor(task_id="wait_for_merge", spec=SPEC,
                                                          proposal=open_pr.output,
                                                          registered=register.output)),
            "verify_rollout": rollout_task(SPEC, task_id="verify_rollout", registered=register.output,
                                           merge=wait.output),
            "promote_production": PromoteToProductionOperator(task_id="promote_production", spec=SPEC,
                                                              registered=register.output,
                                                              outlets=[PRODUCTION_ALIAS]),
        }
    return tasks


@pytest.mark.parametrize(("task_id", "inputs", "upstream"), [
    ("plan", (), set()),
    ("train", ("plan",), {"plan"}),
    ("register", ("plan",), {"plan"}),
    ("score", ("plan", "registered"), {"plan", "register"}),
    ("evaluate", ("plan", "registered", "scoring"), {"plan", "register", "score"}),
    ("preflight", ("registered",), {"register"}),
    ("promote_staging", ("registered",), {"register"}),
    ("open_pr", ("registered",), {"register"}),
    ("wait_for_merge", ("proposal", "registered"), {"open_pr", "register"}),
    ("verify_rollout", ("registered", "merge"), {"register", "wait_for_merge"}),
    ("promote_production", ("registered",), {"register"}),
])
def test_inputs_are_typed_arguments_resolved_when_the_task_runs(task_id: str, inputs: tuple[str, ...],
                                                                upstream: set[str]) -> None:
    task = wired()[task_id]
    assert task.model == "demo" and task.spec is SPEC and task.mlflow_conn_id == "mlflow_default"
    assert set(task.template_fields) >= {"model", *inputs}
    assert task.upstream_task_ids == upstream  # an input's producer runs first, without being told


def test_an_operator_without_its_input_is_refused_at_parse_time() -> None:
    with DAG("incomplete", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
        with pytest.raises(TypeError, match="missing keyword argument 'registered'"):
            PromoteToStagingOperator(task_id="promote_staging", spec=SPEC)


def test_the_tasks_of_a_version_link_to_it_and_a_local_rollout_is_bounded_by_its_timeout() -> None:
    tasks = wired()
    linked = {task_id for task_id, task in tasks.items() if task.operator_extra_links}
    assert linked == {"evaluate", "preflight", "promote_staging", "open_pr", "wait_for_merge",
                      "verify_rollout", "promote_production"}
    assert isinstance(tasks["train"], LocalTrainingOperator)
    assert isinstance(tasks["verify_rollout"], VerifyRolloutSensor)
    assert tasks["verify_rollout"].execution_timeout == dt.timedelta(minutes=SPEC.rollout.timeout_minutes)


def test_the_promotion_dag_names_its_model_by_template() -> None:
    with DAG("on_call", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
        resolve = ResolveVersionOperator(task_id="resolve", spec="{{ params.model }}")
        given = RegisteredVersion(version="3", run_id="r")
        open_pr = OpenPullRequestOperator(task_id="open_pr", spec="{{ params.model }}", registered=given)
    assert resolve.model == "{{ params.model }}" and "model" in resolve.template_fields
    assert open_pr.version == given  # a result given as such is used as it is


@pytest.mark.parametrize(("approved_by", "tag"), [
    (("alice", "bob"), "alice, bob"),
    ((), "(nobody: merged without an approving review)"),
    (None, "(unknown: the merge does not say who approved it)"),
])
def test_who_approved_tells_nobody_from_unknown(approved_by: tuple[str, ...] | None, tag: str) -> None:
    merge = Merge(merge_sha="c" * 40, merged_by="alice", merged_at="t", approved_by=approved_by)
    assert approval(merge) == tag
