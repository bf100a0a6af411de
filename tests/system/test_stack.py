"""The full stack as processes of this machine, driven the way its users drive it.

PostgreSQL (this machine's, 127.0.0.1:5432) holds Airflow's metadata and MLflow's backend store, each in
a fresh database dropped afterwards; MLflow's artifacts go to S3 (moto's server on loopback); Airflow's
api-server, scheduler (LocalExecutor), dag-processor and triggerer run as processes, as in
``docker-compose.yaml``. The demo model proposes its versions in a local GitOps repository and is
verified on KServe: a Kubernetes API on loopback, with a GitOps agent that syncs what was merged when
the test says so (Argo CD with manual sync), a KServe controller, KServe's storage-initializer code and
the real MLServer of the declared runtime (``tests/support/serving.py``). Holding the merge and the
sync lets the tests see the sensors deferred.

As users, the tests send bad form params, unpause the DAG and trigger it with a form param over the
REST API, kill the triggerer while the merge sensor waits, clear finished tasks, and backfill with the
CLI; each asserts the task states, MLflow and git. A run's tasks take seconds each (every task process
imports MLflow), so the module runs one promotion and one backfill, and every test reads those.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedded.gitops_repo import Reviewer, create_gitops_repo, git, promotion_branches
from embedded.mlflow_server import MlflowServer
from embedded.polling import PollingThread
from model_lifecycle.policy import PROMOTION_POOL
from tests.conftest import DEMO_SPEC, EXAMPLE_MANIFEST
from tests.support.airflow_stack import (
    COMPONENTS,
    AirflowApi,
    AirflowProcesses,
    stack_environment,
    wait_for,
    wait_until_started,
)
from tests.support.kube_api import KubernetesApi
from tests.support.serving import ServingStack
from tests.support.stores import S3Server, fresh_postgres_database, postgres_user

pytestmark = pytest.mark.postgres

DAG_ID = "retrain__demo"
PROMOTION_TASKS = ["preflight", "promote_staging", "open_pr", "wait_for_merge", "verify_rollout",
                   "promote_production"]
USERNAME = "oncall"
# Bounds for waits that normally end far sooner; a machine busy with other tests needs the margin.
STEP_TIMEOUT = 180
RUN_TIMEOUT = 300


class ManualSync(ServingStack):
    """The serving side, with a GitOps agent that applies the merged manifest only when ``sync`` is
    called, as Argo CD does with automatic sync off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requested = threading.Event()

    def sync(self) -> None:
        self._requested.set()

    def poll(self) -> None:
        if self._requested.is_set():
            self._requested.clear()
            super().poll()


class RunWatch(PollingThread):
    """Reads a DAG run's task instances every half second, as the UI does, and keeps each task's
    states in the order seen (the transient ones, like ``deferred``, included)."""

    def __init__(self, api: AirflowApi, run_id: str) -> None:
        super().__init__(name=f"watch-{run_id}", interval=0.5)
        self.api = api
        self.run_id = run_id
        self.history: dict[str, list[str | None]] = {}
        self.instances: dict[str, dict[str, Any]] = {}

    def poll(self) -> None:
        response = self.api.request("GET", f"/dags/{DAG_ID}/dagRuns/{self.run_id}/taskInstances")
        if not response.ok:  # the api-server is busy: look again next time
            return
        for ti in response.json()["task_instances"]:
            self.instances[ti["task_id"]] = ti
            seen = self.history.setdefault(ti["task_id"], [])
            if not seen or seen[-1] != ti["state"]:
                seen.append(ti["state"])

    def states(self) -> dict[str, str | None]:
        return {task: ti["state"] for task, ti in self.instances.items()}

    def wait_for_state(self, task_id: str, state: str) -> dict[str, Any]:
        """Until ``task_id`` is in ``state``; returns its task instance as the API gave it."""
        return wait_for(f"{task_id} of {self.run_id} to be {state}",
                        lambda: self.instances.get(task_id) if self.states().get(task_id) == state else None,
                        timeout=STEP_TIMEOUT, on_timeout=lambda: f"states: {self.states()}")


@dataclass
class Stack:
    api: AirflowApi
    airflow: AirflowProcesses
    mlflow: Any  # MlflowClient
    repo: Path
    serving: ManualSync
    registered_model: str
    bucket: str

    def dag_runs(self, **filters: str) -> list[dict[str, Any]]:
        return self.api.json("GET", f"/dags/{DAG_ID}/dagRuns", params=filters)["dag_runs"]

    def run_state(self, run_id: str) -> str:
        return self.api.json("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, run_id: str) -> None:
        """Until the run ends; it must end in success."""
        wait_for(f"run {run_id} to end", lambda: self.run_state(run_id) in ("success", "failed"),
                 timeout=RUN_TIMEOUT, on_timeout=lambda: self.evidence(run_id))
        assert self.run_state(run_id) == "success", self.evidence(run_id)

    def evidence(self, run_id: str) -> str:
        """What a failed wait shows: the run's task states and the end of each component's log."""
        return f"tasks: {self.api.task_states(DAG_ID, run_id)}\n" + "\n".join(
            f"--- {component}\n{self.airflow.log_tail(component)}" for component in COMPONENTS)

    def versions(self) -> dict[str, Any]:
        found = self.mlflow.search_model_versions(f"name = '{self.registered_model}'")
        return {version.version: version for version in found}

    def aliases(self) -> dict[str, str]:
        return dict(self.mlflow.get_registered_model(self.registered_model).aliases)

    def git_state(self) -> dict[str, Any]:
        return {"refs": git(self.repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines(),
                "merges": int(git(self.repo, "rev-list", "--count", "--merges", "main"))}


def demo_spec(repo: Path) -> dict[str, Any]:
    """The demo model's spec, with this test's GitOps repository and the KServe rollout target.

    Its start date is today: no interval has ended since, so unpausing the DAG schedules no run of its
    own that would queue before the one the test triggers (backfills still run earlier intervals).
    No retries, so a failure shows at once; short polls, so waits end within a second of their cause."""
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec.update(start_date=dt.datetime.now(dt.UTC).date(), retries=0)
    spec["gitops"].update(repository=str(repo), poll_interval_seconds=1)
    spec["rollout"].update(target="kserve", kserve={"poll_interval_seconds": 1})
    return spec


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_servers: Any) -> Iterator[Stack]:
    """Everything started, the DAG parsed and the promotion pool created; all of it stopped, and both
    databases dropped, afterwards (also when starting fails half-way)."""
    from mlflow import MlflowClient

    user, why_not = postgres_user()
    if user is None:
        pytest.skip(why_not)
    root = tmp_path_factory.mktemp("system")
    with ExitStack() as cleanup:
        airflow_database = cleanup.enter_context(fresh_postgres_database(user, prefix="system_airflow"))
        mlflow_database = cleanup.enter_context(fresh_postgres_database(user, prefix="system_mlflow"))
        s3 = S3Server().start()
        cleanup.callback(s3.stop)
        bucket = s3.create_bucket()
        # Its background jobs run GenAI evaluations, which nothing here uses; they would only take CPU.
        mlflow = MlflowServer(root / "mlflow", backend_store_uri=mlflow_database,
                              artifacts_destination=f"s3://{bucket}/artifacts",
                              env={**s3.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        cleanup.callback(mlflow.stop)
        # It migrates its database while Airflow migrates and starts its own.
        mlflow_started = cleanup.enter_context(ThreadPoolExecutor(max_workers=1)).submit(mlflow.start)
        kube_api = KubernetesApi()
        cleanup.callback(kube_api.stop)

        repo = root / "gitops"
        spec = demo_spec(repo)
        create_gitops_repo(repo, EXAMPLE_MANIFEST, spec["gitops"]["manifest_path"])
        specs_dir = root / "models"
        specs_dir.mkdir()
        (specs_dir / "demo.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

        password = secrets.token_urlsafe(16)
        # The connections as docker-compose.yaml sets them: the tracking server with the bucket it
        # proxies artifacts to (so manifests pin the s3:// URI the serving side reads), and the
        # cluster through a kubeconfig file.
        mlflow_connection = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": mlflow.port,
                                        "extra": {"artifacts_destination": f"s3://{bucket}/artifacts"}})
        kubernetes_connection = json.dumps({"conn_type": "kubernetes", "extra": {
            "kube_config_path": str(kube_api.kubeconfig(root / "kubeconfig"))}})
        environment = stack_environment(root / "airflow", database_uri=airflow_database,
                                        mlflow_connection=mlflow_connection, username=USERNAME,
                                        password=password, extra={
                                            "AIRFLOW_CONN_KUBERNETES_DEFAULT": kubernetes_connection,
                                            "MODEL_LIFECYCLE_SPECS_DIR": str(specs_dir)})
        airflow = AirflowProcesses(root / "airflow", environment)
        cleanup.callback(airflow.stop_all)

        # KServe's storage initializer reads what the manifest pins straight from the bucket, in this
        # process; Airflow's processes took their environment above, without S3 credentials, like the
        # compose's.
        monkeypatch = cleanup.enter_context(pytest.MonkeyPatch.context())
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        serving = ManualSync(kube_api, repo, spec["gitops"]["manifest_path"], models=model_servers,
                             artifacts_destination=mlflow.artifacts_destination)
        serving.start()
        cleanup.callback(serving.stop)

        airflow.cli("db", "migrate")
        for component in COMPONENTS:
            airflow.start(component)
        base_url = environment["AIRFLOW__API__BASE_URL"]
        wait_until_started(base_url, airflow, timeout=STEP_TIMEOUT)
        api = AirflowApi(base_url, USERNAME, password)
        wait_for(f"the dag-processor to parse {DAG_ID}", lambda: api.request("GET", f"/dags/{DAG_ID}").ok,
                 timeout=STEP_TIMEOUT, on_timeout=lambda: airflow.log_tail("dag-processor"))
        assert api.json("GET", "/importErrors")["import_errors"] == []
        api.json("POST", "/pools", json={"name": PROMOTION_POOL, "slots": 1,
                                         "description": "Model promotions, one at a time"})
        mlflow_started.result()

        yield Stack(api=api, airflow=airflow, mlflow=MlflowClient(tracking_uri=mlflow.url), repo=repo,
                    serving=serving, registered_model=spec["registered_model"], bucket=bucket)
        assert kube_api.violations == [], "InferenceServices off the KServe CRD schema"


@dataclass
class PromotedRun:
    """What was seen of the first run while it was driven through its waits."""

    run_id: str
    watch: RunWatch
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)  # each sensor's pool while deferred
    triggerers: dict[str, int | None] = field(default_factory=dict)  # the trigger's, before and after


@pytest.fixture(scope="module")
def promoted_run(stack: Stack) -> PromotedRun:
    """The DAG unpaused and triggered with a form param, then taken through both waits as the people and
    systems behind them would: while the merge sensor is deferred, the triggerer crashes and a new one
    starts, then the reviewer merges the promotion branch; once the rollout sensor is deferred, the
    GitOps agent syncs."""
    stack.api.json("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = stack.api.json("POST", f"/dags/{DAG_ID}/dagRuns",
                         json={"logical_date": None, "conf": {"lookback_days": 21}})
    promoted = PromotedRun(run_id=run["dag_run_id"], watch=RunWatch(stack.api, run["dag_run_id"]))
    watch = promoted.watch
    watch.start()
    try:
        ti = watch.wait_for_state("wait_for_merge", "deferred")
        promoted.pools["wait_for_merge"] = stack.api.json("GET", f"/pools/{ti['pool']}")

        def triggerer() -> int | None:
            """The triggerer running the merge sensor's trigger, once one has taken it."""
            return (watch.instances["wait_for_merge"].get("trigger") or {}).get("triggerer_id")

        before = wait_for("the triggerer to take the merge trigger", triggerer, timeout=STEP_TIMEOUT)
        stack.airflow.kill("triggerer")
        stack.airflow.start("triggerer")
        # The dead triggerer's heartbeat goes stale within seconds; the new one then takes the trigger.
        promoted.triggerers = {"before": before, "after": wait_for(
            "a new triggerer to take the merge trigger over",
            lambda: (current := triggerer()) not in (None, before) and current,
            timeout=STEP_TIMEOUT, on_timeout=lambda: stack.airflow.log_tail("triggerer"))}

        [branch] = promotion_branches(stack.repo)
        Reviewer(stack.repo, say=lambda _: None, delay=0).review(branch)  # merge commit, branch deleted
        ti = watch.wait_for_state("verify_rollout", "deferred")
        promoted.pools["verify_rollout"] = stack.api.json("GET", f"/pools/{ti['pool']}")
        stack.serving.sync()
        stack.wait_for_run(promoted.run_id)
    finally:
        watch.stop()
    watch.poll()
    return promoted


def test_bad_form_params_are_refused_and_create_no_run(stack: Stack) -> None:
    before = stack.dag_runs()
    for conf, param in (({"lookback_days": 0}, "lookback_days"),
                        ({"force_promotion": "because"}, "force_promotion")):
        response = stack.api.request("POST", f"/dags/{DAG_ID}/dagRuns",
                                     json={"logical_date": None, "conf": conf})
        assert response.status_code == 400, response.text
        assert f"Invalid input for param {param}" in response.json()["detail"]
    assert stack.dag_runs() == before


def test_triggered_run_waits_deferred_holding_no_worker_slot(promoted_run: PromotedRun) -> None:
    history = promoted_run.watch.history
    assert promoted_run.watch.states() == dict.fromkeys(history, "success"), history
    for sensor in ("wait_for_merge", "verify_rollout"):
        states = history[sensor]
        assert "deferred" in states and states.index("deferred") < states.index("success"), states
        pool = promoted_run.pools[sensor]
        assert (pool["deferred_slots"], pool["running_slots"]) == (1, 0), pool


def test_run_survives_a_triggerer_crash_while_the_merge_sensor_waits(promoted_run: PromotedRun) -> None:
    triggerers = promoted_run.triggerers
    assert triggerers["after"] != triggerers["before"]
    merge_wait = promoted_run.watch.instances["wait_for_merge"]
    assert (merge_wait["state"], merge_wait["try_number"]) == ("success", 1)  # resumed, not retried


def test_promoted_version_carries_its_record_in_mlflow_and_git(stack: Stack,
                                                               promoted_run: PromotedRun) -> None:
    [version] = stack.versions().values()
    assert version.current_stage == "Production"
    assert stack.aliases() == {"production": version.version}
    tags = version.tags
    assert tags["airflow.run_id"] == promoted_run.run_id
    assert tags["promotion.decision"] == "latest data; promotion allowed"
    window = [dt.datetime.fromisoformat(tags[f"data.window_{end}"]) for end in ("start", "end")]
    assert window[1] - window[0] == dt.timedelta(days=21)  # the form's lookback_days
    assert tags["pr.merged_by"] == "Demo Reviewer <reviewer@example.com>"
    assert tags["pr.merge_sha"] == git(stack.repo, "rev-parse", "main").strip()
    assert tags["rollout.target"] == "kserve"
    assert "the smoke request got 2 predictions" in tags["rollout.detail"]
    # the merged manifest pins the version's artifacts in the bucket, where the storage initializer read them
    isvc = stack.serving.inference_service("models", "demo-breast-cancer")
    assert isvc["spec"]["predictor"]["model"]["storageUri"].startswith(f"s3://{stack.bucket}/artifacts/")
    assert promotion_branches(stack.repo) == []
    assert stack.git_state()["merges"] == 1


def test_clearing_finished_tasks_reruns_them_and_creates_nothing_twice(stack: Stack,
                                                                       promoted_run: PromotedRun) -> None:
    run_id = promoted_run.run_id
    experiment = stack.mlflow.get_experiment_by_name("demo-breast-cancer")

    def snapshot() -> dict[str, Any]:
        return {"versions": {number: (v.current_stage, v.tags) for number, v in stack.versions().items()},
                "aliases": stack.aliases(), "git": stack.git_state(),
                "runs": len(stack.mlflow.search_runs([experiment.experiment_id]))}

    before = snapshot()
    cleared = ["train", "register", "open_pr"]
    stack.api.json("POST", f"/dags/{DAG_ID}/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": run_id, "task_ids": cleared, "only_failed": False})
    stack.wait_for_run(run_id)
    instances = stack.api.json("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    tries = {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in instances if ti["task_id"] in cleared}
    assert tries == dict.fromkeys(cleared, ("success", 2))
    assert snapshot() == before


def test_backfill_of_three_past_intervals_promotes_nothing(stack: Stack, promoted_run: PromotedRun) -> None:
    today = dt.datetime.now(dt.UTC).date()
    production_before, git_before = stack.aliases(), stack.git_state()
    versions_before = set(stack.versions())

    # on call, from a shell: the intervals starting on each of the three days before yesterday, with the
    # lookback production was trained with. Its holdout then lies in production's training days at any
    # time of day (with the spec's 14 days, the newest interval's holdout starts after the days a
    # 21-day window ending this morning trained on).
    stack.airflow.cli("backfill", "create", "--dag-id", DAG_ID, "--max-active-runs", "3",
                      "--from-date", str(today - dt.timedelta(days=4)),
                      "--to-date", str(today - dt.timedelta(days=1)),
                      "--dag-run-conf", json.dumps({"lookback_days": 21}))
    runs = stack.dag_runs(run_type="backfill")
    assert len(runs) == 3
    for run in runs:
        stack.wait_for_run(run["dag_run_id"])
        states = stack.api.task_states(DAG_ID, run["dag_run_id"])
        tasks = ("plan", "train", "register", "score", "evaluate")
        assert [states[task] for task in tasks] == ["success"] * len(tasks)
        assert {states[task] for task in PROMOTION_TASKS} == {"skipped"}

    trained = {number: v for number, v in stack.versions().items() if number not in versions_before}
    assert len(trained) == 3
    for version in trained.values():
        assert (version.current_stage, version.aliases) == ("None", [])
        # production trained on days these intervals hold out: it is not scored on them
        assert "it trained on rows from" in json.loads(
            version.tags["evaluation.scores.champion"])["error"]
        assert version.tags["evaluation.verdict"] == "passed"
        assert version.tags["promotion.decision"].startswith(
            "promotion blocked because this is a backfill run")
    interval_ends = sorted(version.tags["data.window_end"][:10] for version in trained.values())
    assert interval_ends == [str(today - dt.timedelta(days=days)) for days in (3, 2, 1)]
    assert stack.aliases() == production_before
    assert stack.git_state() == git_before
