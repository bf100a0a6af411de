"""Runner ``local`` of the ``mlflow_gc`` DAG: each step runs ``python -m model_lifecycle.gc.collector``
as a child process of the task.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from model_lifecycle.gc import BACKEND_STORE_URI_ENV, GC_MODULE, TRACKING_URI_ENV
from model_lifecycle.gc.config import GcConfig
from model_lifecycle.gc.operators.common import MlflowGcStep, Step
from model_lifecycle.operators.process import ChildProcess
from model_lifecycle.specs import PROJECT_ROOT

if TYPE_CHECKING:
    from airflow.sdk import Context


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
