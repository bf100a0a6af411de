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

from model_lifecycle.links import VERSION_LINKS, airflow_run_url
from model_lifecycle.policy import DataWindow, PromotionDecision, decide_promotion
from model_lifecycle.specs import ModelSpec, load_spec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.hooks.mlflow import MlflowHook
    from model_lifecycle.registry import ModelRegistry


class ModelLifecycleOperator(BaseOperator):
    """``spec`` is the model's spec, or, in a DAG that serves every model, a template that names one
    (``"{{ params.model }}"``), read from the specs folder when the task runs.

    ``inputs`` names the upstream results an operator takes as keyword arguments. They and ``model``
    are its template fields, so XComArgs given for them resolve when the task runs. Operators that
    take a ``registered`` version get the UI's buttons to it (``links.VERSION_LINKS``)."""

    ui_color = "#e8f0fe"
    inputs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "template_fields" not in cls.__dict__:
            cls.template_fields = ("model", *cls.inputs)
        if "registered" in cls.inputs:  # it works on a model version: buttons to it in the UI
            cls.operator_extra_links = VERSION_LINKS

    def __init__(self, *, spec: ModelSpec | str, mlflow_conn_id: str = "mlflow_default",
                 **kwargs: Any) -> None:
        missing = [name for name in self.inputs if name not in kwargs]
        if missing:
            raise TypeError(f"{type(self).__name__} needs the upstream result(s) {missing}")
        values = {name: kwargs.pop(name) for name in self.inputs}
        super().__init__(**kwargs)
        self._spec = spec if isinstance(spec, ModelSpec) else None
        self.model = spec.name if isinstance(spec, ModelSpec) else spec
        self.mlflow_conn_id = mlflow_conn_id
        for name, value in values.items():
            setattr(self, name, value)

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

    def promotion_decision(self, context: Context, window_end: dt.datetime) -> PromotionDecision:
        """May data up to ``window_end`` replace what is in production now, in this run?"""
        from model_lifecycle.registry import window_end as production_window_end

        production = self.registry.production()
        return decide_promotion(
            run_type=run_type(context),
            window_end=window_end,
            production_window_end=production_window_end(production) if production else None,
            # A promote_model_version request, with its reason, is an explicit decision as well.
            force_reason=context["params"].get("force_promotion") or context["params"].get("reason"),
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

    def version_links(self, version: str) -> dict[str, str]:
        """The model version, the MLflow run it was registered from, and its pull request (empty until
        one is opened)."""
        from model_lifecycle.links import (
            MLFLOW_RUN,
            MODEL_VERSION,
            PULL_REQUEST,
            mlflow_run_url,
            mlflow_version_url,
        )
        from model_lifecycle.registry import Tag

        model_version = self.registry.version(version)
        experiment_id = self.registry.client.get_run(model_version.run_id).info.experiment_id
        return {
            MODEL_VERSION: mlflow_version_url(self.mlflow.ui_url, self.spec.registered_model, version),
            MLFLOW_RUN: mlflow_run_url(self.mlflow.ui_url, experiment_id, model_version.run_id),
            PULL_REQUEST: model_version.tags.get(Tag.PR_URL, ""),
        }

    @cached_property
    def extra_link_urls(self) -> dict[str, str]:
        """What the UI's buttons (``links.VERSION_LINKS``) open; read when the task ends."""
        registered = getattr(self, "registered", None)
        return self.version_links(registered["version"]) if isinstance(registered, dict) else {}

    def notify(self, context: Context, event: str, text: str, *, version: str,
               links: dict[str, str] | None = None) -> None:
        """Tell whoever the spec names about ``event``, with the links to the version, its run, its pull
        request and this Airflow run."""
        from model_lifecycle.links import AIRFLOW_RUN
        from model_lifecycle.notifications import Message, send

        isvc = self.spec.gitops.inference_service
        message = Message(
            event=event,
            title=f"[{event}] {self.spec.registered_model} v{version} for {isvc.namespace}/{isvc.name}",
            text=text,
            links={**self.version_links(version), AIRFLOW_RUN: run_url(context), **(links or {})},
        )
        reached = send(self.spec.notifications, message, context)
        if reached:
            self.log.info("Notified %s of %s.", " and ".join(reached), event)

    def wait_for_turn(self, context: Context, version: str) -> None:
        """One promotion per InferenceService at a time, across the retraining and promotion DAGs.

        The InferenceService's lease is an Airflow Variable (``policy.promotion_lease_key``) naming the
        Airflow run that took it on. While that run is another one and still queued or running, this
        task waits (deferred, holding no worker slot) and looks again; else it takes the lease. A lease
        needs no release: it lapses when its run ends. Reading and taking it are one critical section
        because every task that calls this runs in the single-slot pool ``policy.PROMOTION_POOL``."""
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk import Variable

        from model_lifecycle.policy import promotion_lease_key

        ti = context["ti"]
        isvc = self.spec.gitops.inference_service
        key = promotion_lease_key(namespace=isvc.namespace, inference_service=isvc.name)
        holder = Variable.get(key, default=None, deserialize_json=True)
        if holder and (holder["dag_id"], holder["run_id"]) != (ti.dag_id, ti.run_id):
            # A count, not the run's state: a deleted run counts 0, and its lease lapsed with it.
            if ti.get_dr_count(dag_id=holder["dag_id"], run_ids=[holder["run_id"]],
                               states=["queued", "running"]):
                interval = self.spec.gitops.poll_interval_seconds
                self.log.info("%s/%s is taken by %s run %s (%s v%s); looking again in %s s.", isvc.namespace,
                              isvc.name, holder["dag_id"], holder["run_id"], holder["model"],
                              holder["version"], interval)
                self.defer(trigger=TimeDeltaTrigger(dt.timedelta(seconds=interval)),
                           method_name="execute_after_waiting")
        url = run_url(context)
        Variable.set(key, {"dag_id": ti.dag_id, "run_id": ti.run_id, "model": self.spec.registered_model,
                           "version": version, "run_url": url}, serialize_json=True,
                     description="The Airflow run promoting a model version to this InferenceService")
        self.registry.take_on(version, dag_id=ti.dag_id, run_id=ti.run_id, run_url=url)

    def execute_after_waiting(self, context: Context, event: Any = None) -> Any:
        return self.execute(context)

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
