"""Running the project's DAGs the way Airflow does, in the test process.

``dag.test()`` runs a manual run, and runs triggers in line, so deferrable tasks really wait. Airflow
has no public in-process runner for other run types or for one cleared task, so ``drive`` repeats
the few lines of ``dag.test()``'s loop for a run that already exists (a real backfill run, created
the way ``airflow backfill create`` creates it, or a finished run with one task cleared).
"""

from __future__ import annotations

import datetime as dt
import time

from airflow.models.dagrun import DagRun
from airflow.sdk import DAG
from airflow.utils.state import DagRunState, TaskInstanceState

from model_lifecycle.specs import PROJECT_ROOT

FINISHED = {TaskInstanceState.SUCCESS, TaskInstanceState.FAILED, TaskInstanceState.SKIPPED,
            TaskInstanceState.UPSTREAM_FAILED, TaskInstanceState.REMOVED}


def load_dags() -> dict[str, DAG]:
    """Parse ``dags/`` as the DAG processor would (with the current environment's specs)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(PROJECT_ROOT / "dags"))
    return bag.dags


def load_dag(dag_id: str) -> DAG:
    return load_dags()[dag_id]


def manual_run(dag: DAG, *, logical_date: dt.datetime | None = None, conf: dict | None = None) -> DagRun:
    """A manual run through ``dag.test()``; ``logical_date=None`` is a run without data interval."""
    return dag.test(logical_date=logical_date, run_conf=conf)


def backfill(dag: DAG, *, start: dt.datetime, end: dt.datetime, conf: dict | None = None) -> list[DagRun]:
    """Create a real backfill over ``[start, end]`` and run each of its runs to the end."""
    from airflow.models.backfill import _create_backfill
    from airflow.utils.session import create_session
    from sqlalchemy import select

    _sync()
    created = _create_backfill(dag_id=dag.dag_id, from_date=start, to_date=end, max_active_runs=1,
                               reverse=False, dag_run_conf=conf, triggering_user_name="test")
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.backfill_id == created.id)
                               .order_by(DagRun.logical_date)).all()
        run_ids = [run.run_id for run in runs]
    return [drive(dag, run_id) for run_id in run_ids]


def rerun_task(dag: DAG, run_id: str, task_id: str) -> TaskInstanceState:
    """Clear one task of a finished run, as the UI's Clear does (downstream untouched), and run it."""
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.scalar(_run_query(dag.dag_id, run_id))
        ti = run.get_task_instance(task_id, session=session)
        clear_task_instances([ti], session)
    finished = drive(dag, run_id)
    return next(ti.state for ti in finished.get_task_instances() if ti.task_id == task_id)


def drive(dag: DAG, run_id: str) -> DagRun:
    """Schedule and run the run's tasks until it finishes (``dag.test()``'s loop)."""
    from airflow.models.dagbag import DBDagBag
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.scalar(_run_query(dag.dag_id, run_id))
        run.dag = DBDagBag().get_dag_for_run(run, session=session)
        run.state = DagRunState.RUNNING
        session.commit()
        while run.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                    ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
                ti.scheduled_dttm = timezone.utcnow()
            session.commit()
            scheduled = [ti for ti in run.get_task_instances(session=session)
                         if ti.state == TaskInstanceState.SCHEDULED]
            if not scheduled and run.state == DagRunState.RUNNING:
                time.sleep(1)  # a retry waits for its delay
            for ti in scheduled:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        return run


def _sync() -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path,
                                    bundle_name=bundle.name), bundle.name, bundle.version)


def _run_query(dag_id: str, run_id: str):  # noqa: ANN202
    from sqlalchemy import select

    return select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)


if __name__ == "__main__":
    # A manual run in a process of its own (a second Airflow worker, as far as the run is concerned):
    #   python -m tests.support.airflow_runs DAG_ID [LOGICAL_DATE]; the exit status is the run's outcome.
    import sys

    finished = manual_run(load_dag(sys.argv[1]), logical_date=dt.datetime.fromisoformat(sys.argv[2])
                          if len(sys.argv) > 2 else None)
    print(f"{finished.dag_id} {finished.run_id}: {finished.state}")
    sys.exit(0 if finished.state == DagRunState.SUCCESS else 1)
