"""Backend ``local``: the training image's commands run as child processes of the task, with the
environment contract, in ``include/training``; a finished MLflow run of the same job is reused instead
of running it again."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from model_lifecycle.operators.base import MLFLOW_CONN_ID, ModelLifecycleOperator
from model_lifecycle.operators.process import ChildProcess
from model_lifecycle.operators.training.common import ScoringJob, contract_environment, reusable_run
from model_lifecycle.results import Plan, RegisteredVersion
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

TRAINER_DIR = PROJECT_ROOT / "include" / "training"
INHERITED_MLFLOW_CHOICES = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


class LocalJobOperator(ModelLifecycleOperator):
    """Runs one command of the training image in ``include/training`` as a child process."""

    ui_color = "#fce8b2"
    _job: ChildProcess | None = None

    def _environment(self, contract: dict[str, str]) -> dict[str, str]:
        return {
            # The worker's environment, less an MLflow experiment or run chosen there (mlflow sets
            # MLFLOW_EXPERIMENT_ID on set_experiment): the contract's MLFLOW_EXPERIMENT_NAME decides.
            **{key: value for key, value in os.environ.items() if key not in INHERITED_MLFLOW_CHOICES},
            **contract,
            **self.mlflow.credentials_env(),
        }

    def _run(self, name: str, argv: list[str], environment: dict[str, str], *, timeout_minutes: int,
             timeout_field: str) -> None:
        self.log.info("Running the %s %s in %s (timeout %d min).", name, argv, TRAINER_DIR, timeout_minutes)
        self._job = ChildProcess(name)
        finished = self._job.run(argv, cwd=TRAINER_DIR, env=environment, timeout_seconds=timeout_minutes * 60,
                                 log=self.log)
        if finished.timed_out:
            raise AirflowException(f"the {name} did not finish within {timeout_field} ({timeout_minutes}) "
                                   "and was killed")
        if finished.code != 0:
            raise AirflowException(f"the {name} exited with code {finished.code}: {finished.last_lines()}")

    def on_kill(self) -> None:
        if self._job is not None:
            self._job.kill()


class LocalTrainingOperator(LocalJobOperator):
    """Runs the spec's training command, unless MLflow holds a finished run for this window."""

    template_fields = ("model", "plan")

    def __init__(self, *, spec: ModelSpec | str, plan: Plan | XComArg, mlflow_conn_id: str = MLFLOW_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.plan = plan

    def execute(self, context: Context) -> str:
        window = Plan.from_xcom(self.plan).window
        earlier = reusable_run(self, window)
        if earlier is not None:
            return earlier
        contract = contract_environment(self, context, window, tracking_uri=self.mlflow.tracking_uri)
        training = self.spec.training
        self._run("trainer", command(training.command), self._environment(contract),
                  timeout_minutes=training.timeout_minutes, timeout_field="training.timeout_minutes")
        run = self.registry.finished_run(window)
        if run is None:
            raise AirflowException(
                "the trainer exited successfully but logged no finished MLflow run for this window "
                f"in experiment {self.spec.experiment!r}; it must honour the environment contract"
            )
        return run.info.run_id


class LocalScoringOperator(LocalJobOperator):
    """Runs the spec's evaluation command: the version and the ones it is compared with, scored on the
    evaluation dataset (``ScoringJob``), unless MLflow holds that comparison already. ``required=False``
    (a manual promotion): a comparison that cannot be made is reported, not a failure."""

    template_fields = ("model", "plan", "registered")

    def __init__(self, *, spec: ModelSpec | str, registered: RegisteredVersion | XComArg,
                 plan: Plan | XComArg | None = None, required: bool = True,
                 mlflow_conn_id: str = MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.registered = registered
        self.plan = plan
        self.required = required

    def execute(self, context: Context) -> dict[str, Any]:
        job = ScoringJob.of(self, context, backend="local", registered=self.registered, plan=self.plan)
        earlier = job.reusable()
        if earlier is not None:
            return earlier.to_xcom()
        self.log.info("Scoring %s.", job.describe())
        contract = job.environment(context, tracking_uri=self.mlflow.tracking_uri)
        evaluation = self.spec.evaluation
        try:
            self._run("evaluator", command(evaluation.command), self._environment(contract),
                      timeout_minutes=evaluation.timeout_minutes, timeout_field="evaluation.timeout_minutes")
        except AirflowException as error:
            if self.required:
                raise
            return job.unavailable(str(error)).to_xcom()
        return job.finished().to_xcom()


def command(argv: list[str]) -> list[str]:
    """A spec's command, with ``python`` meaning the interpreter Airflow runs on."""
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return list(argv)
