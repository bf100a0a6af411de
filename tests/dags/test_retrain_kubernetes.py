"""The retraining DAG with training on Kubernetes and rollout on KServe: the real KubernetesPodOperator
and kubernetes clients against the loopback Kubernetes API, a test kubelet that runs the trainer, and
a GitOps agent and KServe controller that act on the merge."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from embedded.gitops_repo import git
from tests.conftest import TRAINER_IMAGE
from tests.dags.test_retrain_cycle import (
    DAY,
    aliases,
    lose_the_pickle_then_merge,
    run_with_reviewer,
    states,
    versions,
)
from tests.support.airflow_runs import load_dag, manual_run
from tests.support.serving import ARGOCD_TOKEN, ServingStack

pytestmark = pytest.mark.usefixtures("airflow_db", "mlflow_server")


@pytest.fixture
def mlflow_for_kserve(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Connection ``mlflow_default`` naming the server's artifacts destination, as a deployment for KServe
    does (here a folder, as ``file://``), so that manifests pin a location KServe's storage initializer
    reads; returns that location."""
    destination = Path(mlflow_server.artifacts_destination).as_uri()
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": mlflow_server.port,
        "extra": {"artifacts_destination": destination}}))
    return destination

SECRET = "training-credentials"
POD = {"poll_interval_seconds": 0.5, "startup_timeout_seconds": 10, "schedule_timeout_seconds": 10}
KUBERNETES_TRAINING = {"backend": "kubernetes", "image": TRAINER_IMAGE,
                       "kubernetes": {**POD, "secrets": [SECRET]}}
KSERVE_ROLLOUT = {"target": "kserve", "kserve": {"poll_interval_seconds": 0.5}}


def core(api: Any) -> client.CoreV1Api:
    configuration = client.Configuration()
    configuration.host = api.url
    return client.CoreV1Api(client.ApiClient(configuration))


def ensure_secret(api: Any) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name=SECRET), data={
        "AWS_ACCESS_KEY_ID": base64.b64encode(b"trainer-key-id").decode(),
        "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"trainer-secret-value").decode()})
    try:
        core(api).create_namespaced_secret("ml-training", secret)
    except client.ApiException as error:
        if error.status != 409:
            raise


def model_pods(api: Any, spec: Any) -> list[client.V1Pod]:
    selector = f"model-lifecycle/model={spec.name}"
    return core(api).list_namespaced_pod("ml-training", label_selector=selector).items


def test_cycle_with_training_pods_and_a_kserve_rollout(write_spec, gitops_repo: Path, mlflow_client: Any,
                                                       mlflow_server: Any, kubernetes_default: Any,
                                                       model_servers: Any, mlflow_for_kserve: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_secret(kubernetes_default)
    spec = write_spec(retries=0, training=KUBERNETES_TRAINING, rollout=KSERVE_ROLLOUT)
    with ServingStack(kubernetes_default, gitops_repo, spec.gitops.manifest_path, models=model_servers,
                      artifacts_destination=mlflow_server.artifacts_destination, argocd=True) as serving:
        monkeypatch.setenv("AIRFLOW_CONN_ARGOCD_DEFAULT",
                           f"http://:{ARGOCD_TOKEN}@127.0.0.1:{serving.argocd_server.server_port}")
        run, _ = run_with_reviewer(spec, gitops_repo)
    assert set(states(run).values()) == {"success"}, states(run)

    # the training pod: labelled, credentials from the Secret (never inlined), deleted after success
    kubelet = kubernetes_default.kubelet
    pods = {pod.metadata.labels["task_id"]: pod_name for pod_name, pod in kubelet.pods.items()
            if pod.metadata.labels.get("model-lifecycle/model") == spec.name}
    name = pods["train"]
    pod = kubelet.pods[name]
    assert pod.metadata.labels["dag_id"] == spec.dag_id
    container = pod.spec.containers[0]
    assert [source.secret_ref.name for source in container.env_from] == [SECRET]
    inlined = {variable.name: variable.value for variable in container.env}
    assert "AWS_SECRET_ACCESS_KEY" not in inlined and "trainer-secret-value" not in inlined.values()
    assert inlined["AIRFLOW_CTX_DAG_ID"] == spec.dag_id and inlined["MODEL_NAME"] == spec.registered_model
    assert kubelet.environments[name]["AWS_SECRET_ACCESS_KEY"] == "trainer-secret-value"
    assert pod.spec.restart_policy == "Never"
    assert model_pods(kubernetes_default, spec) == []
    # the evaluation ran where the data is: a pod of the training image, with the evaluator's contract
    scoring = kubelet.pods[pods["score"]]
    assert scoring.spec.containers[0].image == spec.training.image
    assert scoring.spec.containers[0].command == ["python", "-m", "training.evaluate"]
    evaluator = {variable.name: variable.value for variable in scoring.spec.containers[0].env}
    assert json.loads(evaluator["EVALUATION_MODELS"]) == {"challenger": f"models:/{spec.registered_model}/1"}
    assert [source.secret_ref.name for source in scoring.spec.containers[0].env_from] == [SECRET]

    # the rollout: a new revision, the smoke request answered by the runtime's MLServer
    version = versions(mlflow_client, spec)["1"]
    assert version.current_stage == "Production" and aliases(mlflow_client, spec) == {"production": "1"}
    assert version.tags["rollout.target"] == "kserve"
    assert version.tags["rollout.previous_revision"] == "demo-breast-cancer-predictor-00001"
    assert version.tags["rollout.detail"].startswith(
        "revision 'demo-breast-cancer-predictor-00002' has all the traffic")
    assert "the smoke request got 2 predictions: [0, 1]" in version.tags["rollout.detail"]
    assert version.tags["pr.url"] and mlflow_for_kserve in git(gitops_repo, "show",
                                                              f"main:{spec.gitops.manifest_path}")
    path, body = serving.requests[-1]
    assert path == "/v2/models/demo-breast-cancer/infer"
    assert body["inputs"][0]["shape"] == [2, 30]
    assert mlflow_client.get_run(version.run_id).data.tags["airflow.task_id"] == "train"


@pytest.mark.parametrize(("training", "reason", "kept"), [
    ({"command": ["python", "-c", "import sys; print('no data for this window'); sys.exit(3)"]},
     "container base exited with code 3 (Error)", True),
    ({"command": ["python", "-c", "x = bytearray(400 * 2**20); import time; time.sleep(30)"],
      "resources": {"limits": {"memory": "128Mi"}}},
     "container base was OOMKilled (exit code 137): it needed more memory than its limit of 128Mi", True),
    ({"image": "registry.invalid/trainer:missing"},
     "image 'registry.invalid/trainer:missing' cannot be pulled: ErrImagePull", False),
    ({"kubernetes": {**POD, "node_selector": {"pool": "gpu"}}},
     "the pod was never scheduled: Unschedulable: 0/1 nodes are available", False),
], ids=["exit-code", "oom-killed", "image-pull", "never-scheduled"])
def test_failed_training_pod_names_the_reason(write_spec, mlflow_client: Any, kubernetes_default: Any,
                                              capsys: pytest.CaptureFixture[str], training: dict[str, Any],
                                              reason: str, kept: bool) -> None:
    spec = write_spec(retries=0, training={**KUBERNETES_TRAINING, **training})
    run = manual_run(load_dag(spec.dag_id))
    found = states(run)
    assert found["train"] == "failed" and found["register"] == "upstream_failed"
    assert f"failed: {reason}" in capsys.readouterr().out
    left = model_pods(kubernetes_default, spec)
    assert len(left) == (1 if kept else 0)  # failed pods are kept; pods that never started are removed
    assert versions(mlflow_client, spec) == {}


def test_failed_model_load_fails_the_rollout_at_once(write_spec, gitops_repo: Path, mlflow_client: Any,
                                                     mlflow_server: Any, kubernetes_default: Any,
                                                     model_servers: Any, mlflow_for_kserve: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(retries=0, rollout=KSERVE_ROLLOUT)
    with ServingStack(kubernetes_default, gitops_repo, spec.gitops.manifest_path, models=model_servers,
                      artifacts_destination=mlflow_server.artifacts_destination):
        run, _ = run_with_reviewer(spec, gitops_repo, decide=lose_the_pickle_then_merge(
            gitops_repo, spec, mlflow_server.artifacts_destination))
    found = states(run)
    assert (found["verify_rollout"], found["promote_production"]) == ("failed", "upstream_failed")
    output = capsys.readouterr().out
    assert f"rollout of {spec.registered_model} v1 to models/demo-breast-cancer failed: the new model " \
           "failed to load" in output
    assert "ModelLoadFailed: " in output and "model.pkl" in output  # in the runtime's own words
    assert versions(mlflow_client, spec)["1"].tags["lifecycle.status"] == "rollout_failed"
    assert aliases(mlflow_client, spec) == {"staging": "1"}


def test_canary_then_full_rollout_then_production_and_a_failed_canary_reverted(
        write_spec, gitops_repo: Path, mlflow_client: Any, mlflow_server: Any, kubernetes_default: Any,
        model_servers: Any, mlflow_for_kserve: str) -> None:
    spec = write_spec(retries=0, rollout={**KSERVE_ROLLOUT, "kserve": {**KSERVE_ROLLOUT["kserve"],
                                                                        "canary": {"traffic_percent": 25}}})
    canary_branch = f"model-lifecycle/models/demo-breast-cancer/{spec.registered_model}-v1"
    full_branch = f"model-lifecycle/models/demo-breast-cancer/full-rollout-{spec.registered_model}-v1"
    seen: dict[str, Any] = {}

    def review(branch: str) -> str:
        """What the reviewer of the change to 100 % sees: a canary, not yet Production."""
        if branch == full_branch:
            seen["aliases"] = aliases(mlflow_client, spec)
            seen["tags"] = versions(mlflow_client, spec)["1"].tags
            seen["manifest"] = git(gitops_repo, "show", f"{branch}:{spec.gitops.manifest_path}")
        return "merge"

    with ServingStack(kubernetes_default, gitops_repo, spec.gitops.manifest_path, models=model_servers,
                      artifacts_destination=mlflow_server.artifacts_destination) as serving:
        first, reviewer = run_with_reviewer(spec, gitops_repo, decide=review, logical_date=DAY)
        found = states(first)
        assert set(found.values()) == {"success"}, found
        assert {"verify_canary", "open_full_rollout", "wait_for_full_rollout"} <= set(found)
        assert reviewer.handled == [(canary_branch, "merge"), (full_branch, "merge")]
        assert seen["aliases"] == {"staging": "1", "canary": "1"}
        assert seen["tags"]["lifecycle.status"] == "canary"
        assert seen["tags"]["canary.traffic_percent"] == "25"
        assert seen["tags"]["canary.detail"].startswith(
            "canary: revision 'demo-breast-cancer-predictor-00002' has the canary's 25% of the traffic")
        assert "canaryTrafficPercent: 100" in seen["manifest"]
        v1 = versions(mlflow_client, spec)["1"]
        assert v1.current_stage == "Production" and aliases(mlflow_client, spec) == {"production": "1"}
        assert v1.tags["canary.full_rollout_pr_url"].endswith(full_branch)
        assert v1.tags["canary.full_rollout_merged_by"] == "Demo Reviewer <reviewer@example.com>"
        assert v1.tags["rollout.detail"].startswith(
            "revision 'demo-breast-cancer-predictor-00002' has all the traffic")

        # v2's canary cannot load: a failed rollout, reverted; v1 stays Production
        second, _ = run_with_reviewer(spec, gitops_repo, logical_date=DAY + dt.timedelta(days=1),
                                      decide=lose_the_pickle_then_merge(gitops_repo, spec,
                                                                        mlflow_server.artifacts_destination))
        assert serving.routes["demo-breast-cancer"][1] == {"demo-breast-cancer-predictor-00002": 100}
    found = states(second)
    assert (found["verify_canary"], found["open_full_rollout"], found["promote_production"]) == (
        "failed", "upstream_failed", "upstream_failed")
    v2 = versions(mlflow_client, spec)["2"].tags
    assert v2["lifecycle.status"] == "rollout_failed"
    assert v2["rollout.failure"].startswith("the new model failed to load") and "model.pkl" in \
        v2["rollout.failure"]
    revert = f"model-lifecycle/models/demo-breast-cancer/revert-{spec.registered_model}-v2"
    assert v2["rollout.revert"].endswith(revert)
    reverted = git(gitops_repo, "show", f"{revert}:{spec.gitops.manifest_path}")
    assert "model-lifecycle/model-version: '1'" in reverted and "canaryTrafficPercent: 100" in reverted
    assert aliases(mlflow_client, spec) == {"production": "1", "staging": "2"}


def test_a_location_kserve_cannot_read_is_refused_before_review(write_spec, gitops_repo: Path,
                                                                 mlflow_client: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Without artifacts_destination the manifest would pin the proxied mlflow-artifacts: URI, which
    KServe's webhook admits and its storage initializer cannot read, after the merge."""
    spec = write_spec(retries=0, rollout=KSERVE_ROLLOUT)
    main_before = git(gitops_repo, "rev-parse", "main").strip()
    run = manual_run(load_dag(spec.dag_id))
    found = states(run)
    assert (found["preflight"], found["promote_staging"]) == ("failed", "upstream_failed")
    output = capsys.readouterr().out
    assert "KServe's storage initializer cannot read 'mlflow-artifacts:/" in output
    assert "set its extra artifacts_destination to the tracking server's --artifacts-destination" in output
    # the connection is at fault, not the version
    assert versions(mlflow_client, spec)["1"].tags["lifecycle.status"] == "registered"
    assert git(gitops_repo, "rev-parse", "main").strip() == main_before
    assert git(gitops_repo, "branch", "--list", "model-lifecycle/*").strip() == ""
