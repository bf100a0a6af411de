"""The rollout trigger against InferenceServices on the loopback Kubernetes API, as a GitOps agent
and a KServe controller change them after a merge, the model loaded by KServe's storage-initializer
code and the real MLServer of the declared runtime."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedded.gitops_repo import PLATFORM, git
from model_lifecycle.manifests import pin_model_version
from model_lifecycle.specs import PROJECT_ROOT
from model_lifecycle.triggers.rollout import InferenceServiceRolloutTrigger
from tests.support.airflow_stack import wait_for
from tests.support.serving import ARGOCD_TOKEN, ServingStack
from tests.support.triggers import first_event

MANIFEST = "models/demo-breast-cancer/inferenceservice.yaml"
FIRST_REVISION = "demo-breast-cancer-predictor-00001"

pytestmark = pytest.mark.usefixtures("kubernetes_default")


def log_model(mlflow_server: Any, serialization_format: str) -> str:
    """A real model in MLflow; its proxied artifact URI, as the local target's manifests pin it."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("rollout-trigger-tests")
    features = np.array([[0.0], [1.0]])
    model = DummyClassifier().fit(features, [0, 1])
    with mlflow.start_run():
        # The signature tells MLServer's MLflow runtime how to decode a V2 request.
        info = mlflow.sklearn.log_model(model, name="model", serialization_format=serialization_format,
                                        signature=infer_signature(features, model.predict(features)))
    return mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location


@pytest.fixture(scope="module")
def model_uri(mlflow_server: Any) -> str:
    """A model that KServe's default MLflow runtime (MLflow 2) loads."""
    return log_model(mlflow_server, "cloudpickle")


def merge(repo: Path, uri: str, *, canary: int | None = None) -> str:
    """Commit to main what the merged pull request would contain; returns the merge SHA."""
    path = repo / MANIFEST
    text = pin_model_version(path.read_text(), path=MANIFEST, name="demo-breast-cancer", namespace="models",
                             storage_uri=uri, registered_model="demo", version="2", run_id="r")
    if canary is not None:
        text = text.replace("    minReplicas: 1\n",
                            f"    minReplicas: 1\n    canaryTrafficPercent: {canary}\n")
    path.write_text(text)
    git(repo, "commit", "--quiet", "-am", "Promote demo v2", env=PLATFORM)
    return git(repo, "rev-parse", "HEAD").strip()


# How long a stuck rollout is watched before its timeout is read.
STUCK_SECONDS = 10


def watch(uri: str, merge_sha: str, *, seconds: float, argocd: bool = False,
          canary_percent: int | None = None) -> dict[str, Any]:
    trigger = InferenceServiceRolloutTrigger(
        kubernetes_conn_id="kubernetes_default", namespace="models", name="demo-breast-cancer",
        storage_uri=uri, previous_revision=FIRST_REVISION, merge_sha=merge_sha,
        argocd_application="demo-breast-cancer" if argocd else None,
        deadline=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(), poll_interval=0.2,
        canary_percent=canary_percent)

    return first_event(trigger, timeout=seconds + 30)


def stack(repo: Path, mlflow_server: Any, kube: Any, models: Any, **options: Any) -> ServingStack:
    return ServingStack(kube, repo, MANIFEST, models=models,
                        artifacts_destination=mlflow_server.artifacts_destination, **options)


def ask(serving: ServingStack) -> Any:
    """A V2 inference request to the InferenceService's URL, as a client sends it."""
    import requests

    body = {"inputs": [{"name": "input-0", "shape": [2, 1], "datatype": "FP64", "data": [0.0, 1.0]}]}
    return requests.post(f"{serving.url}/v2/models/demo-breast-cancer/infer", json=body, timeout=30)


def test_rollout_of_the_new_revision_passes(gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any,
                                            model_servers: Any, model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers) as serving:
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=60)
        answer = ask(serving)
    assert event["state"] == "passed"
    assert event["reason"].startswith("revision 'demo-breast-cancer-predictor-00002' has all the traffic")
    assert event["url"] == serving.url
    assert answer.status_code == 200, answer.text
    # MLServer's own answer: the model as version (revision) of the InferenceService's model
    assert answer.json()["model_name"] == "demo-breast-cancer"
    assert answer.json()["model_version"] == "demo-breast-cancer-predictor-00002"
    assert answer.json()["outputs"][0]["data"] in ([0, 0], [1, 1])  # a DummyClassifier's prior


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's S3 server, with the endpoint and credentials KServe gives its storage initializer."""
    from tests.support.stores import S3Server

    server = S3Server().start()
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def copy_to_s3(s3: Any, mlflow_server: Any, model_uri: str) -> str:
    """The logged model's files in a bucket, where a tracking server with S3 artifacts keeps them."""
    bucket = s3.create_bucket()
    files = Path(mlflow_server.artifacts_destination) / model_uri.removeprefix("mlflow-artifacts:/")
    for path in files.rglob("*"):
        if path.is_file():
            s3.client().upload_file(str(path), bucket, f"model/{path.relative_to(files)}")
    return f"s3://{bucket}/model"


def test_model_on_s3_is_fetched_by_the_storage_initializer(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any,
        model_uri: str, s3: Any) -> None:
    """The s3:// URI a manifest pins when the tracking server's artifacts live in a bucket: read by
    kserve-storage with the endpoint and credentials KServe gives its storage initializer."""
    uri = copy_to_s3(s3, mlflow_server, model_uri)
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers) as serving:
        event = watch(uri, merge(gitops_repo, uri), seconds=60)
        answer = ask(serving)
    assert event["state"] == "passed", event
    assert answer.status_code == 200 and len(answer.json()["outputs"][0]["data"]) == 2


def test_the_mlflow3_runtime_serves_what_mlflow_3_logs_by_default(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any, s3: Any) -> None:
    """A skops model, which kserve-mlserver cannot read, in the ServingRuntime the project ships for
    MLflow 3, selected by the manifest (spec.predictor.model.runtime), from a bucket. (From a folder,
    kserve-storage links the files, and MLflow 3's skops loader refuses a path that resolves outside
    the model's folder.)"""
    uri = copy_to_s3(s3, mlflow_server, log_model(mlflow_server, "skops"))
    path = gitops_repo / MANIFEST
    path.write_text(path.read_text().replace("      protocolVersion: v2\n",
                                             "      protocolVersion: v2\n      runtime: mlserver-mlflow3\n"))
    git(gitops_repo, "commit", "--quiet", "-am", "Serve demo with MLflow 3", env=PLATFORM)
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers) as serving:
        event = watch(uri, merge(gitops_repo, uri), seconds=120)
        answer = ask(serving)
    assert event["state"] == "passed", event
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "demo-breast-cancer-predictor-00002"


def test_old_revision_still_ready_times_out_with_the_last_conditions(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any,
        model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers, behaviour="stuck"):
        # long enough for the stand-ins to apply the merge on a loaded machine: the reason is the last seen
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=STUCK_SECONDS)
    assert event["state"] == "timeout"
    assert event["reason"] == (f"the latest ready revision is still '{FIRST_REVISION}', the one from "
                               "before the merge")
    assert event["conditions"] == "IngressReady=True, PredictorReady=True, Ready=True"


def test_failed_load_fails_at_once_quoting_the_runtime(gitops_repo: Path, mlflow_server: Any,
                                                       kubernetes_default: Any, model_servers: Any) -> None:
    """MLflow 3's default scikit-learn serialization, skops, which the MLflow 2 runtime cannot read."""
    uri = log_model(mlflow_server, "skops")
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers) as serving:
        event = watch(uri, merge(gitops_repo, uri), seconds=60)
        answer = ask(serving)
    assert event["state"] == "failed"
    assert "ModelLoadFailed: " in event["reason"]
    assert "Unrecognized serialization format: skops" in event["reason"]  # MLflow 2.19's own words
    assert "activeModelState 'Loaded' is the previous model" in event["reason"]
    assert "LatestDeploymentReady=False (RevisionFailed)" in event["conditions"]
    assert answer.status_code == 503  # the placeholder revision had nothing to serve


def test_canary_is_waited_for_until_it_has_its_share_then_taken_to_all(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any,
        model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers, rollout_delay=2) as serving:
        merge_sha = merge(gitops_repo, model_uri, canary=25)
        wait_for("the canary's revision to be ready with no traffic yet", lambda: any(
            (target["revisionName"], target["percent"]) == ("demo-breast-cancer-predictor-00002", 0)
            for target in serving.inference_service("models", "demo-breast-cancer")["status"]["components"][
                "predictor"]["traffic"]), timeout=60)
        early = watch(model_uri, merge_sha, seconds=0.5, canary_percent=25)
        canary = watch(model_uri, merge_sha, seconds=30, canary_percent=25)
        not_full = watch(model_uri, merge_sha, seconds=0.5)
        answers = [ask(serving) for _ in range(40)]
        path = gitops_repo / MANIFEST
        path.write_text(path.read_text().replace("canaryTrafficPercent: 25", "canaryTrafficPercent: 100"))
        git(gitops_repo, "commit", "--quiet", "-am", "Roll out demo v2 to all", env=PLATFORM)
        full = watch(model_uri, git(gitops_repo, "rev-parse", "HEAD").strip(), seconds=30)
        after = {ask(serving).json()["model_version"] for _ in range(10)}
    assert early["state"] == "timeout"
    assert early["reason"].startswith("canary in progress") and "waiting for the canary's 25%" in \
        early["reason"]
    assert canary["state"] == "passed"
    assert canary["reason"].startswith("canary: revision 'demo-breast-cancer-predictor-00002' has the "
                                       "canary's 25% of the traffic")
    assert not_full["state"] == "timeout" and "has 25% of the traffic, not 100%" in not_full["reason"]
    # about a quarter of the requests reach the canary; the placeholder revision has no model to answer
    served = {answer.json()["model_version"] for answer in answers if answer.status_code == 200}
    assert served == {"demo-breast-cancer-predictor-00002"}
    assert {answer.status_code for answer in answers} == {200, 404}
    assert full["state"] == "passed" and full["reason"].startswith(
        "revision 'demo-breast-cancer-predictor-00002' has all the traffic")
    assert after == {"demo-breast-cancer-predictor-00002"}


def test_argocd_must_report_the_merge_first(gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any,
                                            model_servers: Any, model_uri: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers, argocd=True,
               argocd_lag=True) as serving:
        port = serving.argocd_server.server_port
        monkeypatch.setenv("AIRFLOW_CONN_ARGOCD_DEFAULT", f"http://:{ARGOCD_TOKEN}@127.0.0.1:{port}")
        merge_sha = merge(gitops_repo, model_uri)
        lagging = watch(model_uri, merge_sha, seconds=4, argocd=True)
        serving.synced = merge_sha
        synced = watch(model_uri, merge_sha, seconds=30, argocd=True)
    assert lagging["state"] == "timeout"
    assert lagging["reason"].startswith("Argo CD Application 'demo-breast-cancer' is Synced at ")
    assert lagging["reason"].endswith(f"not yet at the merge {merge_sha}")
    assert synced["state"] == "passed"


# Standard mode: the predictor Deployment proves the rollout -----------------------------------------

STANDARD_EXAMPLE = PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice-standard.yaml"
DEPLOYMENT = "demo-breast-cancer-predictor"


def use_standard_mode(repo: Path) -> None:
    """The platform team's manifest on main is the Standard-mode example."""
    (repo / MANIFEST).write_text(STANDARD_EXAMPLE.read_text())
    git(repo, "commit", "--quiet", "-am", "Serve demo in KServe's Standard mode", env=PLATFORM)


def test_standard_mode_rollout_passes_once_the_deployment_has_rolled_out(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any,
        model_uri: str) -> None:
    use_standard_mode(gitops_repo)
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers) as serving:
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=60)
        answer = ask(serving)
        deployment = serving.apps.api_client.sanitize_for_serialization(
            serving.apps.read_namespaced_deployment(DEPLOYMENT, "models"))
    assert event["state"] == "passed", event
    assert event["reason"] == (f"Deployment '{DEPLOYMENT}' has all 1 replica(s) updated and available on "
                               f"{model_uri}; model Loaded and UpToDate")
    assert event["conditions"] == "Available=True (MinimumReplicasAvailable), Progressing=True " \
                                  "(NewReplicaSetAvailable)"
    assert deployment["spec"]["template"]["metadata"]["annotations"][
        "internal.serving.kserve.io/storage-initializer-sourceuri"] == model_uri
    assert answer.status_code == 200 and answer.json()["model_version"] == f"{DEPLOYMENT}-00002"


def test_standard_mode_old_replica_set_still_serving_times_out_naming_it(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any,
        model_uri: str) -> None:
    use_standard_mode(gitops_repo)
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers, behaviour="stuck"):
        # long enough for the stand-ins to apply the merge on a loaded machine: the reason is the last seen
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=STUCK_SECONDS)
    assert event["state"] == "timeout"
    assert event["reason"] == (f"an old ReplicaSet still serves: Deployment '{DEPLOYMENT}' has 2 "
                               "replica(s), 1 updated")


def test_standard_mode_model_that_cannot_load_fails_at_the_progress_deadline(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_servers: Any) -> None:
    uri = log_model(mlflow_server, "skops")
    use_standard_mode(gitops_repo)
    with stack(gitops_repo, mlflow_server, kubernetes_default, model_servers, progress_deadline=1):
        event = watch(uri, merge(gitops_repo, uri), seconds=60)
    assert event["state"] == "failed"
    assert event["reason"] == (f"Deployment '{DEPLOYMENT}' exceeded its progress deadline "
                               f"(ProgressDeadlineExceeded): ReplicaSet \"{DEPLOYMENT}-00002\" has timed out "
                               "progressing.")
