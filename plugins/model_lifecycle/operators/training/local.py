"""Training backend ``local``: the trainer runs as a child process of the task, with the environment
contract; a finished MLflow run for this model and data window is reused instead of training again."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from model_lifecycle.operators.base import MLFLOW_CONN_ID, ModelLifecycleOperator
from model_lifecycle.operators.process import ChildProcess
from model_lifecycle.operators.training.common import contract_environment, reusable_run
from model_lifecycle.results import Plan
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

TRAINER_DIR = PROJECT_ROOT / "include" / "training"
INHERITED_MLFLOW_CHOICES = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


class LocalTrainingOperator(ModelLifecycleOperator):
    """Runs the spec's training command in ``include/training`` as a child process of the task."""

    template_fields = ("model", "plan")
    ui_color = "#fce8b2"

    def __init__(self, *, spec: ModelSpec | str, plan: Plan | XComArg, mlflow_conn_id: str = MLFLOW_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.plan = plan
        self._trainer: ChildProcess | None = None

    def execute(self, context: Context) -> str:
        window = Plan.from_xcom(self.plan).window
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


def command(spec: ModelSpec) -> list[str]:
    """The spec's command, with ``python`` meaning the interpreter Airflow runs on."""
    argv = list(spec.training.command)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv
