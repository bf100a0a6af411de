"""One promotion per InferenceService at a time, across the retraining and promotion DAGs.

The InferenceService's lease is an Airflow Variable (``policy.promotion_lease_key``) naming the Airflow
run that took it on. While that run is another one and still queued or running, a task that needs the
lease waits, deferred (holding no worker slot), and looks again; else it takes the lease. A lease needs
no release: it lapses when its run ends. Reading and taking it are one critical section because every
task that takes it runs in the single-slot pool ``policy.PROMOTION_POOL``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from model_lifecycle.links import run_url
from model_lifecycle.policy import promotion_lease_key

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.registry import ModelRegistry
    from model_lifecycle.specs import ModelSpec


@dataclass(frozen=True)
class LeaseHolder:
    """The Variable's value: the run promoting to the InferenceService, and what it promotes."""

    dag_id: str
    run_id: str
    model: str
    version: str
    run_url: str


class PromotionLeaseMixin:
    """For operators that take the lease: ``wait_for_turn`` defers while another run holds it, and the
    task resumes in ``execute_after_waiting``, which runs ``execute`` again from the start (an alias is
    resolved anew, the base branch read anew)."""

    spec: ModelSpec
    registry: ModelRegistry

    def wait_for_turn(self: Any, context: Context, version: str) -> None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk import Variable

        ti = context["ti"]
        isvc = self.spec.gitops.inference_service
        key = promotion_lease_key(namespace=isvc.namespace, inference_service=isvc.name)
        held = Variable.get(key, default=None, deserialize_json=True)
        holder = LeaseHolder(**held) if held else None
        if holder and (holder.dag_id, holder.run_id) != (ti.dag_id, ti.run_id):
            # A count, not the run's state: a deleted run counts 0, and its lease lapsed with it.
            if ti.get_dr_count(dag_id=holder.dag_id, run_ids=[holder.run_id], states=["queued", "running"]):
                interval = self.spec.gitops.poll_interval_seconds
                self.log.info("%s/%s is taken by %s run %s (%s v%s); looking again in %s s.", isvc.namespace,
                              isvc.name, holder.dag_id, holder.run_id, holder.model, holder.version, interval)
                self.defer(trigger=TimeDeltaTrigger(dt.timedelta(seconds=interval)),
                           method_name="execute_after_waiting")
        mine = LeaseHolder(dag_id=ti.dag_id, run_id=ti.run_id, model=self.spec.registered_model,
                           version=version, run_url=run_url(context))
        Variable.set(key, asdict(mine), serialize_json=True,
                     description="The Airflow run promoting a model version to this InferenceService")
        self.registry.take_on(version, dag_id=mine.dag_id, run_id=mine.run_id, run_url=mine.run_url)

    def execute_after_waiting(self: Any, context: Context, event: Any = None) -> Any:
        return self.execute(context)
