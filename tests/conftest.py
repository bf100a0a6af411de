"""Shared fixtures: a real MLflow server process, Airflow on SQLite, local GitOps repositories, and
model specs written to a temporary specs folder.

Airflow reads its configuration when first imported, so its environment is set here, at collection,
before any test module imports Airflow.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedded.airflow_env import airflow_environment, migrate_database
from embedded.gitops_repo import create_gitops_repo
from embedded.mlflow_server import MlflowServer
from model_lifecycle.specs import PROJECT_ROOT
from tests.support.github_server import FakeGitHub

SESSION_DIR = Path(tempfile.mkdtemp(prefix="model-lifecycle-tests-"))
AIRFLOW_ENV = airflow_environment(SESSION_DIR / "airflow", mlflow_url="http://127.0.0.1:9")
os.environ.update(AIRFLOW_ENV)
os.environ["MODEL_LIFECYCLE_SPECS_DIR"] = str(SESSION_DIR / "no-specs-selected")
os.environ["MODEL_LIFECYCLE_CACHE_DIR"] = str(SESSION_DIR / "cache")  # inherited by Airflow's processes

DEMO_SPEC = PROJECT_ROOT / "include" / "models" / "demo.yaml"
EXAMPLE_MANIFEST = PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice.yaml"
TRAINER_IMAGE = "model-lifecycle-trainer:test"


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    server = MlflowServer(SESSION_DIR / "mlflow").start()
    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = server.url
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    migrate_database(AIRFLOW_ENV)


@pytest.fixture
def mlflow_client(mlflow_server: MlflowServer) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


@pytest.fixture
def gitops_repo(tmp_path: Path) -> Path:
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    repo = tmp_path / "gitops"
    create_gitops_repo(repo, EXAMPLE_MANIFEST, spec["gitops"]["manifest_path"])
    return repo


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The stand-in for GitHub, holding the demo's InferenceService manifest on ``main``, reached through
    the ``github_default`` connection. Any request or response off GitHub's OpenAPI description fails
    the test."""
    server = FakeGitHub(token=f"ghp_{uuid.uuid4().hex}").start()
    manifest_path = yaml.safe_load(DEMO_SPEC.read_text())["gitops"]["manifest_path"]
    server.commit("main", {manifest_path: EXAMPLE_MANIFEST.read_text()}, "Add the InferenceService")
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DEFAULT", json.dumps(
        {"conn_type": "github", "host": server.url, "password": server.token}))
    yield server
    server.stop()
    assert server.violations == [], "requests or responses off GitHub's OpenAPI description"


@pytest.fixture
def specs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    monkeypatch.setenv("MODEL_LIFECYCLE_SPECS_DIR", str(directory))
    return directory


@pytest.fixture
def write_spec(specs_dir: Path, gitops_repo: Path) -> Callable[..., Any]:
    """Writes a spec like the demo's, with a unique model name and this test's GitOps repository,
    ``overrides`` merged over it; returns the validated ``ModelSpec``."""
    from model_lifecycle.specs import merge_over, parse_spec

    def write(**overrides: Any) -> Any:
        document = yaml.safe_load(DEMO_SPEC.read_text())
        name = f"t{uuid.uuid4().hex[:8]}"
        document.update(name=name, registered_model=f"{name}-model", experiment=f"{name}-experiment")
        document["gitops"].update(repository=str(gitops_repo), poll_interval_seconds=1)
        document = merge_over(copy.deepcopy(document), overrides)
        path = specs_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return parse_spec(path)

    return write


@pytest.fixture(scope="session")
def kube_api() -> Iterator[Any]:
    """A Kubernetes API on loopback with a test kubelet that runs pods as local processes; the
    trainer image is ``include/training``."""
    from tests.support.kube_api import KubernetesApi
    from tests.support.kubelet import TestKubelet

    api = KubernetesApi()
    kubelet = TestKubelet(api, images={TRAINER_IMAGE: PROJECT_ROOT / "include" / "training"})
    kubelet.start()
    api.kubelet = kubelet
    yield api
    kubelet.stop()
    api.stop()


@pytest.fixture(scope="session")
def model_servers() -> Iterator[Any]:
    """The serving runtimes' real MLServers, one per runtime, started when a test first needs one."""
    from tests.support.serving import ModelServers

    servers = ModelServers(SESSION_DIR / "model-servers")
    yield servers
    servers.stop()


@pytest.fixture
def kubernetes_default(kube_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Connection ``kubernetes_default`` pointing at the loopback API; every InferenceService the API
    served during the test must have matched the KServe CRD schema."""
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}))
    before = len(kube_api.violations)
    yield kube_api
    assert kube_api.violations[before:] == []
