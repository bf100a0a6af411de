"""What both training backends share: the reuse of an earlier run, and the environment contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_lifecycle.training import AirflowIdentity, trainer_environment

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.operators.base import ModelLifecycleOperator
    from model_lifecycle.policy import DataWindow


def reusable_run(operator: ModelLifecycleOperator, window: DataWindow) -> str | None:
    """The finished MLflow run that already trained this model on this window, if any. Otherwise the
    runs an interrupted attempt left RUNNING are marked KILLED, so the run list tells the truth."""
    earlier = operator.registry.finished_run(window)
    if earlier is not None:
        operator.log.info("MLflow run %s already trained %s on this window; reusing it, nothing is "
                          "trained again.", earlier.info.run_id, operator.spec.registered_model)
        return earlier.info.run_id
    killed = operator.registry.fail_unfinished_runs(window)
    if killed:
        operator.log.info("Marked MLflow run(s) %s of an interrupted attempt as KILLED.", killed)
    return None


def contract_environment(operator: ModelLifecycleOperator, context: Context, window: DataWindow, *,
                         tracking_uri: str) -> dict[str, str]:
    """The environment contract for this task instance."""
    ti = context["ti"]
    identity = AirflowIdentity(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                               try_number=ti.try_number)
    return trainer_environment(operator.spec, window, identity, tracking_uri=tracking_uri)
