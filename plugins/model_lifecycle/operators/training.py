"""Training: backend ``local`` runs the trainer as a child process with the environment contract.

Whatever the backend, a finished MLflow run for this model and data window is reused instead of
training again, so clearing the task (or rerunning the DAG run) costs nothing and creates nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from model_lifecycle.operators.base import ModelLifecycleOperator, window_of
from model_lifecycle.operators.process import ChildProcess
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec
from model_lifecycle.training import AirflowIdentity, trainer_environment

if TYPE_CHECKING:
    from airflow.sdk import Context

TRAINER_DIR = PROJECT_ROOT / "include" / "training"


class LocalTrainingOperator(ModelLifecycleOperator):
    """Runs the spec's training command in ``include/training`` as a child process of the task."""

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#fce8b2"

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self._trainer = ChildProcess("trainer")

    def execute(self, context: Context) -> str:
        window = window_of(self.plan)
        earlier = self.registry.finished_run(window)
        if earlier is not None:
            self.log.info("MLflow run %s already trained %s on this window; reusing it.",
                          earlier.info.run_id, self.spec.registered_model)
            return earlier.info.run_id
        killed = self.registry.fail_unfinished_runs(window)
        if killed:
            self.log.info("Marked MLflow run(s) %s of an interrupted attempt as KILLED.", killed)
        ti = context["ti"]
        identity = AirflowIdentity(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                                   try_number=ti.try_number)
        environment = {
            **os.environ,
            **trainer_environment(self.spec, window, identity, tracking_uri=self.mlflow.tracking_uri),
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
        self._trainer.kill()


def command(spec: ModelSpec) -> list[str]:
    """The spec's command, with ``python`` meaning the interpreter Airflow runs on."""
    argv = list(spec.training.command)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv
