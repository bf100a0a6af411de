"""What one retraining run costs on the embedded default, beyond training and waiting for the reviewer.

It starts its own MLflow server, GitOps repository and Airflow home in a temporary folder, runs the
demo model's DAG once (``dag.test()``, a reviewer merging ``--review-seconds`` after the pull request
opens), and prints the wall time of every task from Airflow's records: time in training, time waiting
for the merge, and the rest. Airflow logs only errors here, so the table is what it prints;
``AIRFLOW__LOGGING__LOGGING_LEVEL=INFO`` shows the tasks' logs.

    .venv/bin/python -m benchmarks.orchestration [--review-seconds 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from embedded.airflow_env import airflow_environment, migrate_database
from embedded.gitops_repo import Reviewer, create_gitops_repo
from embedded.mlflow_server import MlflowServer
from model_lifecycle.specs import PROJECT_ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--review-seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        server = MlflowServer(root / "mlflow").start()
        try:
            spec = yaml.safe_load((PROJECT_ROOT / "include" / "models" / "demo.yaml").read_text())
            spec["gitops"]["repository"] = str(root / "gitops")
            (root / "models").mkdir()
            (root / "models" / "demo.yaml").write_text(yaml.safe_dump(spec))
            create_gitops_repo(root / "gitops",
                               PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice.yaml",
                               spec["gitops"]["manifest_path"])
            environment = airflow_environment(root / "airflow", mlflow_url=server.url)
            os.environ.update(environment, MODEL_LIFECYCLE_SPECS_DIR=str(root / "models"))
            os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
            migrate_database(environment)
            report(run_once(root / "gitops", args.review_seconds), args.review_seconds)
        finally:
            server.stop()


def run_once(repo: Path, review_seconds: float) -> tuple[float, list[tuple[str, float]]]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(PROJECT_ROOT / "dags")).dags["retrain__demo"]
    reviewer = Reviewer(repo, delay=review_seconds, say=lambda _: None)
    reviewer.start()
    started = time.perf_counter()
    try:
        run = dag.test(logical_date=None)
    finally:
        reviewer.stop()
    total = time.perf_counter() - started
    assert run.state == "success", f"the run ended {run.state}"
    order = [task.task_id for task in dag.topological_sort()]
    spans = {ti.task_id: (ti.end_date - ti.start_date).total_seconds() for ti in run.get_task_instances()}
    return total, [(task, spans[task]) for task in order]


def report(result: tuple[float, list[tuple[str, float]]], review_seconds: float) -> None:
    total, tasks = result
    durations = dict(tasks)
    training, waiting = durations["train"], durations["wait_for_merge"]
    print(f"One retraining run on the embedded default (reviewer merges {review_seconds:g} s after the "
          "pull request opens)")
    print(f"{'task':<20} {'seconds':>8}")
    for task, seconds in tasks:
        print(f"{task:<20} {seconds:>8.2f}")
    print(f"{'total (wall)':<20} {total:>8.2f}")
    print(f"{'in training':<20} {training:>8.2f}")
    print(f"{'waiting for merge':<20} {waiting:>8.2f}")
    print(f"{'the rest':<20} {total - training - waiting:>8.2f}")


if __name__ == "__main__":
    main()
