"""The step both runners of the ``mlflow_gc`` DAG's tasks share (``MlflowGcStep``).

``collect`` collects what ``report`` listed: it gets the report's cutoff (a point in time, not the
relative threshold), so what became old enough in between is left for the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from model_lifecycle.gc.config import GcConfig

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
