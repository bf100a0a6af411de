"""Training: backend ``local`` runs the trainer as a child process with the environment contract.

Whatever the backend, a finished MLflow run for this model and data window is reused instead of
training again, so clearing the task (or rerunning the DAG run) costs nothing and creates nothing.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from model_lifecycle.operators.base import ModelLifecycleOperator, window_of
from model_lifecycle.operators.process import ChildProcess
from model_lifecycle.policy import DataWindow
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec
from model_lifecycle.training import AirflowIdentity, trainer_environment

if TYPE_CHECKING:
    from airflow.sdk import Context

TRAINER_DIR = PROJECT_ROOT / "include" / "training"
INHERITED_MLFLOW_CHOICES = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


class LocalTrainingOperator(ModelLifecycleOperator):
    """Runs the spec's training command in ``include/training`` as a child process of the task."""

    inputs = ("plan",)
    _trainer: ChildProcess | None = None
    ui_color = "#fce8b2"

    def execute(self, context: Context) -> str:
        window = window_of(self.plan)
        earlier = reusable_run(self, window)
        if earlier is not None:
            return earlier
        environment = {
            # The worker's environment, less an MLflow experiment or run chosen there (mlflow sets
            # MLFLOW_EXPERIMENT_ID on set_experiment): the contract's MLFLOW_EXPERIMENT_NAME decides.
            **{key: value for key, value in os.environ.items() if key not in INHERITED_MLFLOW_CHOICES},
            **contract_environment(self, context, window, tracking_uri=self.mlflow.tracking_uri),
            **self.mlflow.credentials_env(),
        }
        self._run_trainer(command(self.spec), environment)
        run = self.registry.finished_run(window)
        if run is None:
            raise AirflowException(
                "the trainer exited successfully but logged no finished MLflow run for this window "
                f"in experiment {self.spec.experiment!r}; it must honour the environment contract"
            )
        return run.info.run_id

    def _run_trainer(self, argv: list[str], environment: dict[str, str]) -> None:
        timeout = self.spec.training.timeout_minutes * 60
        self.log.info("Running %s in %s (timeout %d min).", argv, TRAINER_DIR, timeout // 60)
        self._trainer = ChildProcess("trainer")
        finished = self._trainer.run(argv, cwd=TRAINER_DIR, env=environment, timeout_seconds=timeout,
                                     log=self.log)
        if finished.timed_out:
            raise AirflowException(
                f"the trainer did not finish within training.timeout_minutes "
                f"({self.spec.training.timeout_minutes}) and was killed"
            )
        if finished.code != 0:
            raise AirflowException(f"the trainer exited with code {finished.code}: {finished.last_lines()}")

    def on_kill(self) -> None:
        if self._trainer is not None:
            self._trainer.kill()


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


def command(spec: ModelSpec) -> list[str]:
    """The spec's command, with ``python`` meaning the interpreter Airflow runs on."""
    argv = list(spec.training.command)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def training_task(spec: ModelSpec, **kwargs: Any) -> BaseOperator:
    """The train task for the spec's backend; the Kubernetes operator is imported only when used."""
    if spec.training.backend == "kubernetes":
        from model_lifecycle.operators.kubernetes_training import KubernetesTrainingOperator

        return KubernetesTrainingOperator(spec=spec, **kwargs)
    return LocalTrainingOperator(spec=spec, **kwargs)
