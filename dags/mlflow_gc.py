"""Weekly MLflow garbage collection: ``report`` lists what is eligible, ``collect`` removes it.

The configuration is ``include/mlflow_gc.yaml``; the logic lives in ``plugins/model_lifecycle/gc/``
(``decisions.py`` decides, ``collector.py`` acts on MLflow, ``operators/`` run it).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, CronTriggerTimetable, Param

from model_lifecycle.gc.config import GcConfig, load_gc_config
from model_lifecycle.gc.decisions import OLDER_THAN_PATTERN
from model_lifecycle.gc.operators import gc_operator_class


def doc_md(config: GcConfig) -> str:
    pod = config.kubernetes
    where = (f"a pod in namespace `{pod.namespace}` running `{pod.image}`"
             if pod and config.runner == "kubernetes" else "a child process of the task")
    return f"""\
# MLflow garbage collection

Permanently removes what has been in MLflow's `deleted` lifecycle stage for longer than `older_than`
(default `{config.older_than}`): runs, logged models and experiments, metadata and artifacts. Runs on
{where}, with the backend store's credentials; `MLFLOW_TRACKING_URI` is set so proxied artifacts resolve.

1. **report** lists what is eligible, with artifact counts and bytes, and what is kept and why.
   With `dry_run` the DAG stops there.
2. **collect** removes exactly what the report listed (same cutoff), {config.batch_size} runs per batch.
   Protection is read again before every batch. A failed batch fails the task once all batches ran;
   the return value summarises every batch.

**Never collected**: a deleted run or logged model that backs a registered model version holding an
alias, or in stage Staging or Production; a deleted experiment that still holds anything that is not
collected (deleting it would take its runs and logged models along).

`experiment_ids` limits the collection to those experiments; `all_workspaces` visits every MLflow
workspace (without `--enable-workspaces`, MLflow has one, and both choices collect the same).
"""


config = load_gc_config()
GcStepOperator = gc_operator_class(config)  # runner local or kubernetes

with DAG(
    dag_id="mlflow_gc",
    description="Weekly MLflow garbage collection that never loses live data",
    schedule=CronTriggerTimetable(config.schedule, timezone="UTC"),
    start_date=dt.datetime.combine(config.start_date, dt.time(), tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=doc_md(config),
    tags=["model-lifecycle", "mlflow", "gc"],
    default_args={
        "owner": "ml-platform",
        "retries": config.retries,
        "retry_delay": dt.timedelta(minutes=config.retry_delay_minutes),
        "execution_timeout": dt.timedelta(minutes=config.timeout_minutes + 5),
    },
    params={
        "older_than": Param(
            config.older_than, type="string", pattern=OLDER_THAN_PATTERN, minLength=2,
            title="Older than",
            description="Collect what was deleted longer ago than this: days, hours, minutes, seconds "
                        "in this order, e.g. 30d, 12h, 1d2h3m4s (as mlflow gc --older-than).",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Only report what would be collected."),
        "experiment_ids": Param(
            [], type="array", items={"type": "string", "pattern": "^[0-9]+$"}, uniqueItems=True,
            title="Experiment ids",
            description="Only these experiments (active or deleted); empty: all experiments.",
        ),
        "all_workspaces": Param(False, type="boolean", title="All workspaces",
                                description="Every MLflow workspace, not only the active one."),
    },
) as dag:
    report = GcStepOperator(task_id="report", step="report", config=config)
    collect = GcStepOperator(task_id="collect", step="collect", config=config, report=report.output)
    report >> collect
