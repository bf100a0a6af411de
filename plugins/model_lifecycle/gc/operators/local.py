"""The tasks of the ``mlflow_gc`` DAG: ``report`` then ``collect``, each running
``python -m model_lifecycle.gc.collector`` where the backend store's credentials are: a child process
of the task (runner ``local``) or a pod (runner ``kubernetes``, ``kubernetes.py``).

``collect`` collects what ``report`` listed: it gets the report's cutoff (a point in time, not the
relative threshold), so what became old enough in between is left for the next run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from model_lifecycle.gc import BACKEND_STORE_URI_ENV, GC_MODULE, TRACKING_URI_ENV
from model_lifecycle.gc.config import GcConfig
from model_lifecycle.operators.process import ChildProcess
from model_lifecycle.specs import PROJECT_ROOT

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.hooks.mlflow import MlflowHook

Step = Literal["report", "collect"]


class MlflowGcStep:
    """What both runners share: the command line from the trigger form, and the verdict on its result."""

    template_fields: Sequence[str] = ("report",)
    ui_color = "#fde2e1"

    step: Step
    config: GcConfig
    report: dict[str, Any] | None
    mlflow_conn_id: str

    def gc_arguments(self, context: Context) -> list[str]:
        params = context["params"]
        scope = []
        if params.get("experiment_ids"):
            scope += ["--experiment-ids", ",".join(str(id_) for id_ in params["experiment_ids"])]
        if params.get("all_workspaces"):
            scope.append("--all-workspaces")
        if self.step == "report":
            return ["report", "--older-than", params["older_than"], *scope]
        if params.get("dry_run"):
            raise AirflowSkipException("dry run: the report task lists what would be collected")
        if not self.report or "cutoff_ms" not in self.report:
            raise AirflowFailException(f"collect needs the report task's result, got {self.report!r}")
        return ["collect", "--cutoff-ms", str(self.report["cutoff_ms"]),
                "--batch-size", str(self.config.batch_size), *scope]

    def gc_result(self, context: Context, result: dict[str, Any] | None) -> dict[str, Any]:
        """The step's return value; a collection with failed batches fails the task, after all batches
        ran, with its summary still in XCom."""
        if not result:
            raise AirflowException(f"the {self.step} step wrote no result; see its log above")
        failed = result.get("failed_batches") or []
        if failed:
            context["ti"].xcom_push(key="return_value", value=result)
            details = "; ".join(
                f"{batch['kind']} batch {batch['batch']}: " + ", ".join(
                    f"{item}: {error}" for item, error in batch["errors"].items())
                for batch in failed
            )
            raise AirflowException(f"{len(failed)} batch(es) failed, the others ran: {details}")
        return result

    def tracking_uri(self) -> str:
        return self.mlflow_hook().tracking_uri

    def mlflow_hook(self) -> MlflowHook:
        from model_lifecycle.hooks.mlflow import MlflowHook

        return MlflowHook(self.mlflow_conn_id)


class LocalMlflowGcOperator(MlflowGcStep, BaseOperator):
    """Runs the gc step as a child process; ``MLFLOW_BACKEND_STORE_URI`` comes from the environment of
    the Airflow worker (the embedded stack sets it to its MLflow server's database)."""

    def __init__(self, *, step: Step, config: GcConfig, report: Any = None,
                 mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.config = config
        self.report = report
        self.mlflow_conn_id = mlflow_conn_id
        self._gc = ChildProcess("mlflow_gc")

    def execute(self, context: Context) -> dict[str, Any]:
        arguments = self.gc_arguments(context)
        if not os.environ.get(BACKEND_STORE_URI_ENV):
            raise AirflowFailException(
                f"{BACKEND_STORE_URI_ENV} is not set: the local mlflow_gc runner reads the MLflow backend "
                "store URI (e.g. sqlite:////srv/mlflow/mlflow.db) from the Airflow worker's environment"
            )
        hook = self.mlflow_hook()
        plugins = str(PROJECT_ROOT / "plugins")
        environment = {
            **os.environ,
            TRACKING_URI_ENV: hook.tracking_uri,
            **hook.credentials_env(),
            "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")])),
        }
        with tempfile.TemporaryDirectory(prefix="mlflow-gc-") as scratch:
            output = Path(scratch) / "result.json"
            argv = [sys.executable, "-m", GC_MODULE, *arguments, "--output", str(output)]
            self.log.info("Running %s", " ".join(argv[1:]))
            finished = self._gc.run(argv, cwd=PROJECT_ROOT, env=environment,
                                    timeout_seconds=self.config.timeout_minutes * 60, log=self.log)
            if finished.timed_out:
                raise AirflowException(f"mlflow_gc {self.step} did not finish within timeout_minutes "
                                       f"({self.config.timeout_minutes}) and was killed")
            if finished.code != 0:
                raise AirflowException(f"mlflow_gc {self.step} exited with code {finished.code}: "
                                       f"{finished.last_lines()}")
            result = json.loads(output.read_text()) if output.exists() else None
        return self.gc_result(context, result)

    def on_kill(self) -> None:
        self._gc.kill()


def gc_operator_class(config: GcConfig) -> type[BaseOperator]:
    """The operator for the configured runner."""
    if config.runner == "kubernetes":
        # The provider imports the Kubernetes clients (seconds): only DAGs that run pods pay for it.
        from model_lifecycle.gc.operators.kubernetes import KubernetesMlflowGcOperator

        return KubernetesMlflowGcOperator
    return LocalMlflowGcOperator
