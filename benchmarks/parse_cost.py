"""What parsing the DAG files costs the DAG processor, against a floor.

For 1, 50 and 200 model specs (copies of the demo spec, generated in a temporary folder) it parses
``dags/`` with Airflow's DagBag in a fresh interpreter, and compares with the floor: a DAG file that
builds the same DAGs from EmptyOperator (one nine-task chain per spec, the two-task ``mlflow_gc`` and
the five-task ``promote_model_version``, which ``dags/`` also holds). It prints the milliseconds per
DAG of both, their ratio, and which heavy modules parsing imported. Airflow itself is imported before
the clock starts, in both.

    .venv/bin/python -m benchmarks.parse_cost [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

import embedded  # noqa: F401 (puts plugins/ on sys.path, as Airflow does)
from model_lifecycle.specs import PROJECT_ROOT

HEAVY = ("mlflow", "boto3", "kubernetes", "kubernetes_asyncio", "ruamel", "sklearn", "pandas", "requests")
SIZES = (1, 50, 200)

PROBE = textwrap.dedent("""
    import json, sys, time
    import airflow.sdk  # Airflow's own import is not part of the DAG files' cost
    from airflow.dag_processing.dagbag import DagBag
    before = set(sys.modules)
    started = time.perf_counter()
    bag = DagBag(sys.argv[1])
    elapsed = time.perf_counter() - started
    heavy = sorted(m for m in {heavy} if m in sys.modules and m not in before)
    print(json.dumps({{"seconds": elapsed, "dags": len(bag.dags), "errors": len(bag.import_errors),
                      "heavy": heavy}}))
""")

FLOOR = textwrap.dedent("""
    # The floor: DAGs with the same DAG arguments (timetable, params, doc_md, default_args, tags) and
    # the same tasks as dags/retrain.py, dags/mlflow_gc.py and dags/promote.py, but from EmptyOperator
    # and without model specs or configuration.
    import datetime as dt
    from airflow.sdk import DAG, CronDataIntervalTimetable, CronTriggerTimetable, Param, chain
    from airflow.providers.standard.operators.empty import EmptyOperator

    TASKS = ["plan", "train", "register", "score", "evaluate", "preflight", "promote_staging", "open_pr",
             "wait_for_merge", "verify_rollout", "promote_production"]
    for index in range({count}):
        with DAG(
            f"floor__{{index}}", schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
            start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False, max_active_runs=1,
            tags=["floor", "retrain", f"model:{{index}}"], doc_md="x" * 1500,
            default_args={{"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(seconds=60),
                          "retry_exponential_backoff": True}},
            params={{
                "lookback_days": Param(None, type=["null", "integer"], minimum=1, maximum=3650,
                                       title="Lookback (days)", description="x" * 60),
                "force_promotion": Param(None, type=["null", "string"], minLength=10, maxLength=500,
                                         title="Force promotion (reason)", description="x" * 140),
            }},
        ):
            chain(*[EmptyOperator(task_id=task) for task in TASKS])

    with DAG(
        "floor__gc", schedule=CronTriggerTimetable("0 2 * * 0", timezone="UTC"),
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False, max_active_runs=1,
        tags=["floor", "mlflow", "gc"], doc_md="x" * 1500,
        default_args={{"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=5),
                      "execution_timeout": dt.timedelta(minutes=245)}},
        params={{
            "older_than": Param("30d", type="string", pattern="^[0-9dhms.]+$", minLength=2,
                                title="Older than", description="x" * 150),
            "dry_run": Param(False, type="boolean", title="Dry run", description="x" * 40),
            "experiment_ids": Param([], type="array", items={{"type": "string", "pattern": "^[0-9]+$"}},
                                    uniqueItems=True, title="Experiment ids", description="x" * 70),
            "all_workspaces": Param(False, type="boolean", title="All workspaces", description="x" * 50),
        }},
    ):
        EmptyOperator(task_id="report") >> EmptyOperator(task_id="collect")

    with DAG(
        "floor__promote", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False,
        tags=["floor", "promote", "on-call"], doc_md="x" * 900,
        default_args={{"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=1)}},
        params={{
            "model": Param("model000", type="string", enum=[f"model{{i:03d}}" for i in range({count})],
                           title="Model"),
            "version": Param("previous-production", type="string", pattern="^[a-z0-9-]+$",
                             title="Version or alias", description="x" * 80),
            "reason": Param(type="string", minLength=10, maxLength=500, title="Reason", description="x" * 60),
        }},
    ):
        chain(*[EmptyOperator(task_id=task) for task in
                ["resolve", "preflight", "score", "open_pr", "wait_for_merge", "verify_rollout",
                 "promote_production"]])
""")


def parse_seconds(dag_folder: Path, environment: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), str(dag_folder)],
                            capture_output=True, text=True, env=environment, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="parses per measurement (median taken)")
    args = parser.parse_args()
    demo = yaml.safe_load((PROJECT_ROOT / "include" / "models" / "demo.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        environment = {**os.environ, "AIRFLOW_HOME": str(scratch_dir / "airflow"),
                       "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                       "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
        for count in SIZES:
            specs = scratch_dir / f"specs-{count}"
            specs.mkdir()
            for index in range(count):
                spec = {**demo, "name": f"model{index:03d}", "registered_model": f"model-{index:03d}",
                        "experiment": f"model-{index:03d}"}
                (specs / f"model{index:03d}.yaml").write_text(yaml.safe_dump(spec))
            floor = scratch_dir / f"floor-{count}"
            floor.mkdir()
            (floor / "floor.py").write_text(FLOOR.format(count=count))
            specs_environment = {**environment, "MODEL_LIFECYCLE_SPECS_DIR": str(specs)}
            ours = [parse_seconds(PROJECT_ROOT / "dags", specs_environment) for _ in range(args.repeat)]
            floors = [parse_seconds(floor, environment) for _ in range(args.repeat)]
            dags = count + 2  # and mlflow_gc and promote_model_version
            assert all(run["dags"] == dags and run["errors"] == 0 for run in ours + floors), (ours, floors)
            ours_ms = statistics.median(run["seconds"] for run in ours) * 1000 / dags
            floor_ms = statistics.median(run["seconds"] for run in floors) * 1000 / dags
            rows.append((count, dags, ours_ms, floor_ms, ours_ms / floor_ms,
                         ", ".join(ours[0]["heavy"]) or "none"))
    print(f"DAG parse cost, median of {args.repeat} parses in a fresh interpreter each")
    print(f"{'specs':>6} {'DAGs':>5} {'dags/ ms/DAG':>13} {'floor ms/DAG':>13} {'ratio':>6}  "
          "heavy modules imported")
    for count, dags, ours_ms, floor_ms, ratio, heavy in rows:
        print(f"{count:>6} {dags:>5} {ours_ms:>13.2f} {floor_ms:>13.2f} {ratio:>6.2f}  {heavy}")


if __name__ == "__main__":
    main()
