"""Airflow DAGs that retrain models: one ``retrain__<model>`` DAG per spec in ``include/models/``.

plan → train → register → score → evaluate → preflight → promote_staging → open_pr → wait_for_merge →
verify_rollout → promote_production; with a canary stage (``rollout.kserve.canary``), open_pr proposes
the canary share and verify_canary → open_full_rollout → wait_for_full_rollout come before
verify_rollout. The tasks live in ``plugins/model_lifecycle``; this file only reads the specs and wires
them. Specs that fail validation are reported by ``model_spec_errors.py``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable, Param, chain

from model_lifecycle.operators.gitops import OpenFullRolloutOperator, OpenPullRequestOperator
from model_lifecycle.operators.lifecycle import (
    PRODUCTION_ALIAS,
    EvaluateOperator,
    PlanOperator,
    PromoteToProductionOperator,
    PromoteToStagingOperator,
    RegisterOperator,
)
from model_lifecycle.operators.preflight import PreflightOperator
from model_lifecycle.operators.training import scoring_task, training_task
from model_lifecycle.policy import PROMOTION_POOL
from model_lifecycle.sensors.merge import WaitForMergeSensor
from model_lifecycle.sensors.rollout import rollout_task
from model_lifecycle.specs import MetricGate, ModelSpec, load_catalog


def gate_row(metric: str, gate: MetricGate) -> str:
    cells = (gate.threshold, gate.min_absolute_change, gate.min_relative_change, gate.max_regression)
    return (f"| {metric} | {'higher' if gate.greater_is_better else 'lower'} | "
            + " | ".join("-" if cell is None else f"{cell:g}" for cell in cells) + " |")


def doc_md(spec: ModelSpec) -> str:
    gates = "\n".join(gate_row(metric, gate) for metric, gate in spec.evaluation.metrics.items())
    evaluation = spec.evaluation
    drawn = (f"the data of `{evaluation.dataset.source}` in the same window" if evaluation.dataset.source
             else f"the most recent {evaluation.dataset.holdout_fraction:.0%} of the window, held out from "
                  "training")
    isvc = spec.gitops.inference_service
    return f"""\
# Retrain `{spec.registered_model}`

{spec.description}

Trains on the `{spec.data.lookback_days}`-day window of `{spec.data.source}` that ends where the run's
data interval ends (a manual run without a logical date: where it was triggered), registers the
version in MLflow (experiment `{spec.experiment}`), scores it beside the production version on the
evaluation dataset ({drawn}) with `mlflow.models.evaluate`, gates it on those figures, and proposes
it to InferenceService `{isvc.namespace}/{isvc.name}` through `{spec.gitops.manifest_path}` on
`{spec.gitops.base_branch}`. Before the pull request, the preflight loads the candidate from the URI
the manifest will pin in the serving runtime `{spec.rollout.runtime}` and sends it the smoke request;
a version it cannot load is rejected with the runtime's error. Merging the change is the approval; the
version becomes Production once the rollout is verified.{canary_doc(spec)}
Training runs on backend `{spec.training.backend}`; the rollout is verified on target `{spec.rollout.target}`.

The gate, in the terms of MLflow's `MetricThreshold` (`max_regression`: how much worse than the
production version the candidate may be); a production version that cannot be scored:
`{evaluation.if_champion_unavailable}`.

| metric | better | threshold | min absolute change | min relative change | max regression |
| --- | --- | --- | --- | --- | --- |
{gates}

**Backfills and old windows never promote**: a backfill run, or one whose window ends before the
production version's, trains and evaluates only. To promote one anyway, trigger with
`force_promotion` set to the reason; it is recorded on the version.

**One promotion at a time per InferenceService**: `open_pr` runs in the pool
`model_lifecycle_promotion` and waits (deferred) while another run, of this DAG or of
`promote_model_version`, is promoting to `{isvc.namespace}/{isvc.name}`.

**Reruns are safe**: every task reuses its earlier result (the MLflow run for this window, the version
registered from it, the open branch), so clearing any task creates nothing twice.
"""


def canary_doc(spec: ModelSpec) -> str:
    canary = spec.rollout.kserve.canary
    if canary is None:
        return ""
    merge = "merged by the wait once its checks pass" if canary.auto_merge else "reviewed like the first"
    return (f"\n\n**Canary**: the pull request sends {canary.traffic_percent}% of the requests to the "
            f"version; once that is verified the version gets the `{spec.aliases.canary}` alias, and a "
            f"second pull request ({merge}) sends all of them. Only that verified rollout makes it "
            "Production.")


def retrain_dag(spec: ModelSpec) -> DAG:
    with DAG(
        dag_id=spec.dag_id,
        description=f"Retrain {spec.registered_model} and promote it through GitOps",
        schedule=CronDataIntervalTimetable(spec.schedule, timezone="UTC"),
        start_date=dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.UTC),
        catchup=spec.catchup,
        max_active_runs=1,
        doc_md=doc_md(spec),
        tags=["model-lifecycle", "retrain", f"model:{spec.name}", *spec.tags],
        default_args={
            "owner": spec.owner,
            "retries": spec.retries,
            "retry_delay": dt.timedelta(seconds=spec.retry_delay_seconds),
            "retry_exponential_backoff": True,
        },
        params={
            "lookback_days": Param(
                None, type=["null", "integer"], minimum=1, maximum=3650, title="Lookback (days)",
                description=f"Train on this many days of data instead of {spec.data.lookback_days}.",
            ),
            "force_promotion": Param(
                None, type=["null", "string"], minLength=10, maxLength=500,
                title="Force promotion (reason)",
                description="Leave empty. Only to promote a backfill or an older data window: "
                            "say why (at least 10 characters); the reason is recorded on the version.",
            ),
        },
    ) as dag:
        plan = PlanOperator(task_id="plan", spec=spec)
        train = training_task(
            spec, task_id="train", plan=plan.output,
            execution_timeout=dt.timedelta(minutes=spec.training.timeout_minutes),
        )
        register = RegisterOperator(task_id="register", spec=spec, plan=plan.output)
        score = scoring_task(spec, spec.training.backend, task_id="score", plan=plan.output,
                             registered=register.output,
                             execution_timeout=dt.timedelta(minutes=spec.evaluation.timeout_minutes))
        evaluate = EvaluateOperator(task_id="evaluate", spec=spec, plan=plan.output,
                                    registered=register.output, scoring=score.output)
        preflight = PreflightOperator(task_id="preflight", spec=spec, registered=register.output)
        staging = PromoteToStagingOperator(task_id="promote_staging", spec=spec, registered=register.output)
        canary = spec.rollout.kserve.canary is not None
        open_pr = OpenPullRequestOperator(task_id="open_pr", spec=spec, registered=register.output,
                                          canary=canary, pool=PROMOTION_POOL)
        wait_for_merge = WaitForMergeSensor(task_id="wait_for_merge", spec=spec, proposal=open_pr.output,
                                            registered=register.output)
        rollout_steps: list[BaseOperator] = [open_pr, wait_for_merge]
        merged = wait_for_merge
        if canary:
            verify_canary = rollout_task(spec, task_id="verify_canary", registered=register.output,
                                         merge=wait_for_merge.output, canary=True)
            open_full = OpenFullRolloutOperator(task_id="open_full_rollout", spec=spec,
                                                registered=register.output)
            merged = WaitForMergeSensor(task_id="wait_for_full_rollout", spec=spec, proposal=open_full.output,
                                        registered=register.output, full_rollout=True)
            rollout_steps += [verify_canary, open_full, merged]
        verify = rollout_task(spec, task_id="verify_rollout", registered=register.output, merge=merged.output)
        production = PromoteToProductionOperator(task_id="promote_production", spec=spec,
                                                 registered=register.output, outlets=[PRODUCTION_ALIAS])
        chain(plan, train, register, score, evaluate, preflight, staging, *rollout_steps, verify, production)
    return dag


for model_spec in load_catalog().specs.values():
    retrain_dag(model_spec)
