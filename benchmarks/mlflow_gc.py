"""Benchmark: the mlflow_gc DAG's collection against one plain ``mlflow gc``, on identical data.

For each size, seeds an MLflow SQLite store with that many runs deleted 40 days ago, each with two
small artifact files on local storage, plus one deleted run behind a version with the ``production``
alias; then, on a fresh copy of that data each time, runs

- what the DAG's tasks run: ``python -m model_lifecycle.gc.collector report``, then ``collect`` with its
  cutoff (batches of 500, protection re-read per batch, artifacts measured before deletion), shown
  alone (``dag collect``) and with the report (``dag report + collect``);
- ``mlflow gc``: ``mlflow gc --older-than 30d``, one process;

and prints wall time and peak resident memory (of the child processes, ``RUSAGE_CHILDREN``) of each,
their ratio to ``mlflow gc``, and whether the protected run survived. ``make bench`` runs it.

    .venv/bin/python -m benchmarks.mlflow_gc --runs 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import embedded  # noqa: F401 (puts plugins/ on sys.path, as Airflow does)
from model_lifecycle.specs import PROJECT_ROOT

DAY_MS = 24 * 3600 * 1000
# Runs a list of commands one after the other and reports their peak memory (the largest of them).
MEASURE = """
import json, resource, subprocess, sys
for command in json.loads(sys.argv[1]):
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def seed(live: Path, runs: int) -> str:
    """``runs`` deleted runs with two files each, and one protected; returns the protected run's id."""
    import sqlalchemy
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{live / 'mlflow.db'}"
    store = SqlAlchemyStore(uri, (live / "artifacts").as_uri())
    experiment_id = store.create_experiment("bench")
    run_ids = []
    for index in range(runs + 1):
        run = store.create_run(experiment_id, user_id="bench", start_time=0, tags=[], run_name=f"r{index}")
        folder = Path(run.info.artifact_uri.removeprefix("file://"))
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"run": index, "accuracy": 0.9}))
        (folder / "notes.txt").write_text(f"run {index}\n" * 20)
        run_ids.append(run.info.run_id)
    protected = run_ids[-1]
    registry = RegistryStore(uri)
    registry.create_registered_model("bench-model")
    version = registry.create_model_version("bench-model", f"runs:/{protected}/model", run_id=protected)
    registry.set_registered_model_alias("bench-model", "production", version.version)
    # Deleted 40 days ago, as ``delete_run`` would have marked them then (one statement, not 10,000).
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = :then"),
            {"then": int(time.time() * 1000) - 40 * DAY_MS})
    engine.dispose()
    return protected


def measure(commands: list[list[str]], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak MiB of the commands, run one after the other in a fresh parent."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(commands)], env=env, check=True,
                            capture_output=True, text=True, cwd=PROJECT_ROOT)
    return time.monotonic() - started, int(result.stdout.split()[-1]) / 1024


def remaining(live: Path, protected: str) -> tuple[int, int, bool]:
    """Runs left in the store, artifact files left on disk, and whether the protected run is there."""
    import sqlite3

    with sqlite3.connect(live / "mlflow.db") as db:
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        kept = db.execute("SELECT count(*) FROM runs WHERE run_uuid = ?", (protected,)).fetchone()[0]
    files = sum(1 for path in (live / "artifacts").rglob("*") if path.is_file())
    return runs, files, bool(kept)


def bench(work: Path, runs: int) -> list[dict]:
    # A path per size: MLflow caches database engines by URI.
    live, pristine = work / f"live-{runs}", work / f"seed-{runs}"
    shutil.rmtree(live, ignore_errors=True)
    live.mkdir(parents=True)
    started = time.monotonic()
    protected = seed(live, runs)
    print(f"seeded {runs} deleted runs (+1 protected) in {time.monotonic() - started:.0f} s", flush=True)
    shutil.copytree(live, pristine)
    uri = f"sqlite:///{live / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    gc_module = [sys.executable, "-m", "model_lifecycle.gc.collector"]
    report_file = work / "report.json"
    rows = []

    def record(name: str, wall: float, peak: float) -> None:
        left_runs, left_files, kept = remaining(live, protected)
        rows.append({"runs": runs, "contender": name, "wall_s": wall, "peak_mib": peak,
                     "runs_left": left_runs, "files_left": left_files, "protected_kept": kept})
        print(f"  {name}: {wall:.1f} s, {peak:.0f} MiB", flush=True)

    shutil.rmtree(live)
    shutil.copytree(pristine, live)
    record("mlflow gc", *measure([[sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri,
                                   "--older-than", "30d"]], env))
    shutil.rmtree(live)
    shutil.copytree(pristine, live)
    report_wall, report_peak = measure(
        [[*gc_module, "report", "--older-than", "30d", "--output", str(report_file)]], env)
    cutoff = json.loads(report_file.read_text())["cutoff_ms"]
    collect = [*gc_module, "collect", "--cutoff-ms", str(cutoff), "--batch-size", "500",
               "--output", str(work / "summary.json")]
    collect_wall, collect_peak = measure([collect], env)
    record("dag collect", collect_wall, collect_peak)
    record("dag report + collect", report_wall + collect_wall, max(report_peak, collect_peak))
    shutil.rmtree(pristine)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"mlflow-gc-bench-{uuid.uuid4().hex[:6]}-"))
    rows = []
    try:
        for runs in args.runs:
            rows += bench(work, runs)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("| deleted runs | contender | wall (s) | peak RSS (MiB) | wall ratio | memory ratio "
          "| runs left | files left | protected run kept |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        base = next(r for r in rows if r["runs"] == row["runs"] and r["contender"] == "mlflow gc")
        print(f"| {row['runs']} | {row['contender']} | {row['wall_s']:.1f} | {row['peak_mib']:.0f} | "
              f"{row['wall_s'] / base['wall_s']:.2f} | {row['peak_mib'] / base['peak_mib']:.2f} | "
              f"{row['runs_left']} | {row['files_left']} | {'yes' if row['protected_kept'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
