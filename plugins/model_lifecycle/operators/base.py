"""What every model-lifecycle operator shares: its model spec and its way into MLflow.

Operators are thin: ``execute`` gathers inputs from the context and calls the modules that decide and
act. Heavy libraries (mlflow) are imported when a task runs, never when a DAG file is parsed.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.links import airflow_run_url
from model_lifecycle.policy import DataWindow, PromotionDecision, decide_promotion
from model_lifecycle.specs import ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.hooks.mlflow import MlflowHook
    from model_lifecycle.registry import ModelRegistry


class ModelLifecycleOperator(BaseOperator):
    """``inputs`` names the upstream results an operator takes as keyword arguments; they are its
    template fields, so XComArgs given for them resolve when the task runs."""

    ui_color = "#e8f0fe"
    inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, spec: ModelSpec, mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        missing = [name for name in self.inputs if name not in kwargs]
        if missing:
            raise TypeError(f"{type(self).__name__} needs the upstream result(s) {missing}")
        values = {name: kwargs.pop(name) for name in self.inputs}
        super().__init__(**kwargs)
        self.spec = spec
        self.mlflow_conn_id = mlflow_conn_id
        for name, value in values.items():
            setattr(self, name, value)

    @cached_property
    def mlflow(self) -> MlflowHook:
        from model_lifecycle.hooks.mlflow import MlflowHook

        return MlflowHook(self.mlflow_conn_id)

    @cached_property
    def registry(self) -> ModelRegistry:
        from model_lifecycle.registry import ModelRegistry

        return ModelRegistry(self.mlflow.get_client(), self.spec)

    def promotion_decision(self, context: Context, window_end: dt.datetime) -> PromotionDecision:
        """May data up to ``window_end`` replace what is in production now, in this run?"""
        from model_lifecycle.registry import window_end as production_window_end

        production = self.registry.production()
        return decide_promotion(
            run_type=run_type(context),
            window_end=window_end,
            production_window_end=production_window_end(production) if production else None,
            force_reason=context["params"].get("force_promotion"),
        )

    def require_promotion_allowed(self, context: Context, version: str) -> None:
        """Guards the steps that move aliases or propose a rollout, when they run again on their own
        (cleared by hand) after production has moved on: an older version must not quietly replace a
        newer one."""
        from model_lifecycle.registry import window_end

        trained_until = window_end(self.registry.version(version))
        if trained_until is None:
            return
        decision = self.promotion_decision(context, trained_until)
        if not decision.allowed:
            raise AirflowFailException(f"{self.spec.registered_model} v{version}: {decision.reason}")

    def storage_uri(self, version: str) -> str:
        """Where the serving side reads this version: the URI the manifest pins."""
        return self.mlflow.storage_uri(self.registry.artifact_uri(version))


def window_of(plan: dict[str, Any]) -> DataWindow:
    """The data window the plan task chose, from its XCom."""
    return DataWindow(start=dt.datetime.fromisoformat(plan["window_start"]),
                      end=dt.datetime.fromisoformat(plan["window_end"]))


def run_type(context: Context) -> str:
    kind = context["dag_run"].run_type
    return str(getattr(kind, "value", kind))


def run_url(context: Context) -> str:
    base_url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return airflow_run_url(base_url, context["dag"].dag_id, context["run_id"])
