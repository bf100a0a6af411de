"""``make demo``: the whole retrain → promote cycle of the demo model on this machine.

Starts a real MLflow server (left running so its UI can be browsed; ``make demo-stop`` stops it),
creates the local GitOps repository, and runs ``retrain__demo`` once with Airflow on SQLite. While
the run waits for the merge, a reviewer reads the pull request and merges it. Running the demo again
trains a new version on the newer window and promotes it, archiving the previous one.

The run's full Airflow log goes to ``.demo/last-run.log``; the console shows what the tasks say.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from embedded.airflow_env import airflow_environment, migrate_database
from embedded.gitops_repo import Reviewer, create_gitops_repo
from embedded.mlflow_server import MlflowServer
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec, load_spec

DEMO_DIR = PROJECT_ROOT / ".demo"
RUN_LOG = DEMO_DIR / "last-run.log"
DAG_ID = "retrain__demo"
RESULT_MARKER = "DEMO-RUN-RESULT "
# A task log line: "<time> [<level>] <message> [<logger>] key=value ..."
_LOG_LINE = re.compile(r"^\S+ \[(?P<level>\w+)\s*\] (?P<message>.*?)\s+\[(?P<logger>[\w.]+)\]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_MLFLOW_PORT", "5000")))
    parser.add_argument("--stop", action="store_true", help="stop the demo's MLflow server and exit")
    parser.add_argument("--run-dag", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_dag:
        return run_dag()

    server = MlflowServer(DEMO_DIR / "mlflow", port=args.port)
    if args.stop:
        server.stop()
        print("Stopped the demo's MLflow server.")
        return 0

    started = time.monotonic()
    spec = prepare(server)
    reviewer = Reviewer(spec.gitops.repository_path(), spec.gitops.base_branch, delay=3, say=say)
    reviewer.start()
    say(f"Running {DAG_ID} (full log: {RUN_LOG.relative_to(PROJECT_ROOT)}); it waits for the reviewer "
        "to merge its pull request.")
    try:
        result = narrate(subprocess.Popen(
            [sys.executable, "-m", "embedded.demo", "--run-dag"], cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    finally:
        reviewer.stop()

    say(f"Run {result['run_id']} ended {result['state']}: "
        + ", ".join(f"{task} {state}" for task, state in result["tasks"].items()))
    report(spec, server.url)
    say(f"The demo took {time.monotonic() - started:.0f} s. MLflow UI: {server.url} (still running; "
        "`make demo-stop` stops it). Run `make demo` again to train and promote the next version.")
    return 0 if result["state"] == "success" else 1


def prepare(server: MlflowServer) -> ModelSpec:
    """The demo's stack: MLflow server running, GitOps repository created, Airflow's environment set
    in this process and its database migrated. Returns the demo model's spec."""
    say(f"Starting the MLflow server at {server.url} (SQLite and artifacts in {server.root}) ...")
    server.start()
    spec = load_spec("demo")
    repo = spec.gitops.repository_path()
    if not repo.exists():
        create_gitops_repo(repo, PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice.yaml",
                           spec.gitops.manifest_path, spec.gitops.base_branch)
        say(f"Created the GitOps repository {repo} with {spec.gitops.manifest_path}.")
    else:
        say(f"Using the GitOps repository {repo}.")
    environment = airflow_environment(DEMO_DIR / "airflow", mlflow_url=server.url,
                                      mlflow_backend_store_uri=server.backend_store_uri)
    os.environ.update(environment)
    say("Preparing Airflow's metadata database (SQLite) ...")
    migrate_database(environment)
    return spec


def run_dag() -> int:
    """In a child process: one manual run without logical date, so its window ends now."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(PROJECT_ROOT / "dags")).dags[DAG_ID]
    dag_run = dag.test(logical_date=None)
    tasks = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    order = [task.task_id for task in dag.topological_sort()]
    result = {"run_id": dag_run.run_id, "state": str(dag_run.state),
              "tasks": {task: tasks[task] for task in order}}
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


def narrate(process: subprocess.Popen[str]) -> dict:
    """Copy the run's output to the log file and echo what the model-lifecycle tasks say."""
    result = None
    assert process.stdout is not None
    with RUN_LOG.open("w") as log:
        for line in process.stdout:
            log.write(line)
            if line.startswith(RESULT_MARKER):
                result = json.loads(line.removeprefix(RESULT_MARKER))
                continue
            match = _LOG_LINE.match(line)
            if match and "model_lifecycle" in match["logger"] and match["level"] != "debug":
                source = match["logger"].rsplit(".", 1)[-1]
                print(f"    {source}: {match['message']}", flush=True)
    if process.wait() != 0 or result is None:
        raise SystemExit(f"the DAG run did not finish; see {RUN_LOG}")
    return result


def report(spec: ModelSpec, mlflow_url: str) -> None:
    from mlflow import MlflowClient

    from model_lifecycle.registry import ModelRegistry

    registry = ModelRegistry(MlflowClient(tracking_uri=mlflow_url), spec)
    production = registry.production()
    if production is None:
        say("No version is in Production.")
        return
    say(f"{production.name} v{production.version} is in Production (stage {production.current_stage}, "
        f"aliases {production.aliases}). Its promotion record:")
    print(json.dumps(dict(sorted(production.tags.items())), indent=2))
    previous = registry.by_alias(spec.aliases.previous_production)
    if previous is not None:
        say(f"v{previous.version} is archived (stage {previous.current_stage}, aliases {previous.aliases}).")


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
