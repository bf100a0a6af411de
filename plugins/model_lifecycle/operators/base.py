"""What every model-lifecycle operator shares: its model spec, its MLflow hook and the model's registry.

Operators are thin: ``execute`` gathers its typed inputs (``model_lifecycle.results``), calls the modules
that decide and act, and returns a typed result. Heavy libraries (mlflow) are imported when a task
runs, never when a DAG file is parsed.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseOperator

from model_lifecycle.specs import ModelSpec, load_spec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.hooks.mlflow import MlflowHook
    from model_lifecycle.registry import ModelRegistry

MLFLOW_CONN_ID = "mlflow_default"


class ModelLifecycleOperator(BaseOperator):
    """``model`` is the spec's name, or, in a DAG that serves every model, a template that names one
    (``"{{ params.model }}"``), read from the specs folder when the task runs.

    Subclasses take their inputs as typed keyword arguments of their own ``__init__`` and call
    ``use_spec`` there. This class has no ``__init__``: Airflow's operator metaclass runs its
    ``apply_defaults`` once more for every ``__init__`` in the class hierarchy, and each run deep-copies
    the DAG's params, which every DAG file pays for every task at parse time."""

    ui_color = "#e8f0fe"
    template_fields = ("model",)

    model: str
    mlflow_conn_id: str
    _spec: ModelSpec | None

    def use_spec(self, spec: ModelSpec | str, mlflow_conn_id: str) -> None:
        self._spec = spec if isinstance(spec, ModelSpec) else None
        self.model = spec.name if isinstance(spec, ModelSpec) else spec
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def spec(self) -> ModelSpec:
        return self._spec or load_spec(self.model)

    @cached_property
    def mlflow(self) -> MlflowHook:
        from model_lifecycle.hooks.mlflow import MlflowHook

        return MlflowHook(self.mlflow_conn_id)

    @cached_property
    def registry(self) -> ModelRegistry:
        from model_lifecycle.registry import ModelRegistry

        return ModelRegistry(self.mlflow.get_client(), self.spec)


def run_type(context: Context) -> str:
    kind = context["dag_run"].run_type
    return str(getattr(kind, "value", kind))


def force_reason(context: Context) -> str | None:
    """The explicit decision to promote although the rules would not: ``force_promotion`` of the
    retraining form, or the reason of a ``promote_model_version`` request."""
    params = context["params"]
    return params.get("force_promotion") or params.get("reason")
