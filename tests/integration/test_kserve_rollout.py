"""The rollout trigger against InferenceServices on the loopback Kubernetes API, as a GitOps agent
and a KServe controller change them after a merge."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from embedded.gitops_repo import PLATFORM, git
from model_lifecycle.manifests import pin_model_version
from model_lifecycle.triggers.rollout import InferenceServiceRolloutTrigger
from tests.support.serving import ARGOCD_TOKEN, ServingStack
from tests.support.triggers import first_event

MANIFEST = "models/demo-breast-cancer/inferenceservice.yaml"
FIRST_REVISION = "demo-breast-cancer-predictor-00001"

pytestmark = pytest.mark.usefixtures("kubernetes_default")


@pytest.fixture(scope="module")
def model_uri(mlflow_server: Any) -> str:
    """A real model in MLflow for the controller to load."""
    import mlflow
    import mlflow.sklearn
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("rollout-trigger-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(DummyClassifier().fit([[0.0], [1.0]], [0, 1]), name="model")
    return info.artifact_path


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


def watch(uri: str, merge_sha: str, *, seconds: float, argocd: bool = False) -> dict[str, Any]:
    trigger = InferenceServiceRolloutTrigger(
        kubernetes_conn_id="kubernetes_default", namespace="models", name="demo-breast-cancer",
        storage_uri=uri, previous_revision=FIRST_REVISION, merge_sha=merge_sha,
        argocd_application="demo-breast-cancer" if argocd else None,
        deadline=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(), poll_interval=0.2)

    return first_event(trigger, timeout=seconds + 30)


def stack(repo: Path, mlflow_server: Any, kube: Any, **options: Any) -> ServingStack:
    return ServingStack(kube, repo, MANIFEST, tracking_uri=mlflow_server.url, **options)


def test_rollout_of_the_new_revision_passes(gitops_repo: Path, mlflow_server: Any,
                                            kubernetes_default: Any, model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default) as serving:
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=30)
    assert event["state"] == "passed"
    assert event["reason"].startswith("revision 'demo-breast-cancer-predictor-00002' has all the traffic")
    assert event["url"] == serving.url


def test_old_revision_still_ready_times_out_with_the_last_conditions(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, behaviour="stuck"):
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=3)
    assert event["state"] == "timeout"
    assert event["reason"] == (f"the latest ready revision is still '{FIRST_REVISION}', the one from "
                               "before the merge")
    assert event["conditions"] == "IngressReady=True, PredictorReady=True, Ready=True"


def test_failed_load_fails_at_once_quoting_the_failure(gitops_repo: Path, mlflow_server: Any,
                                                       kubernetes_default: Any, model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, behaviour="fail_load"):
        event = watch(model_uri, merge(gitops_repo, model_uri), seconds=60)
    assert event["state"] == "failed"
    assert "ModelLoadFailed: failed to load" in event["reason"]
    assert "activeModelState 'Loaded' is the previous model" in event["reason"]
    assert "LatestDeploymentReady=False (RevisionFailed)" in event["conditions"]


def test_canary_is_waited_for_until_it_has_the_configured_share(
        gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any, model_uri: str) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, rollout_delay=1.5):
        merge_sha = merge(gitops_repo, model_uri, canary=25)
        early = watch(model_uri, merge_sha, seconds=2.5)
        later = watch(model_uri, merge_sha, seconds=30)
    assert early["state"] == "timeout"
    assert early["reason"].startswith("canary in progress") and "waiting for the configured 25%" in \
        early["reason"]
    assert later["state"] == "passed"
    assert later["reason"].startswith("canary: revision 'demo-breast-cancer-predictor-00002' has the "
                                      "configured 25% of the traffic")


def test_argocd_must_report_the_merge_first(gitops_repo: Path, mlflow_server: Any, kubernetes_default: Any,
                                            model_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with stack(gitops_repo, mlflow_server, kubernetes_default, argocd=True, argocd_lag=True) as serving:
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
