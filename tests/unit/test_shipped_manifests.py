"""The Kubernetes manifests the project ships or writes: InferenceServices match the KServe CRD schema,
and Airflow's RBAC grants what it needs and nothing on the serving side beyond reading."""

from __future__ import annotations

import pytest
import yaml

from model_lifecycle.manifests import pin_model_version
from model_lifecycle.rollout import deployment_mode
from model_lifecycle.specs import PROJECT_ROOT
from tests.support.kube_api import schema_violations

KUBERNETES = PROJECT_ROOT / "include" / "kubernetes"


EXAMPLES = pytest.mark.parametrize(("manifest", "mode"), [("inferenceservice.yaml", "Knative"),
                                                         ("inferenceservice-standard.yaml", "Standard")])


@EXAMPLES
def test_example_inference_services_match_the_crd_and_name_their_mode(manifest: str, mode: str) -> None:
    isvc = yaml.safe_load((KUBERNETES / manifest).read_text())
    assert schema_violations(isvc) == []
    assert deployment_mode(isvc) == mode
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode  # not a legacy name
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == "mlflow"


def test_the_standard_example_differs_from_the_knative_one_only_in_its_mode() -> None:
    knative = yaml.safe_load((KUBERNETES / "inferenceservice.yaml").read_text())
    standard = yaml.safe_load((KUBERNETES / "inferenceservice-standard.yaml").read_text())
    assert standard["spec"] == knative["spec"]
    assert "canaryTrafficPercent" not in standard["spec"]["predictor"]


@EXAMPLES
def test_the_manifest_the_dag_writes_matches_the_crd(manifest: str, mode: str) -> None:
    text = (KUBERNETES / manifest).read_text()
    edited = pin_model_version(text, path="isvc.yaml", name="demo-breast-cancer", namespace="models",
                               storage_uri="s3://mlflow/artifacts/1/models/m-1/artifacts",
                               registered_model="demo-breast-cancer", version="7", run_id="abc")
    assert schema_violations(yaml.safe_load(edited)) == []


def test_rbac_reads_inference_services_and_their_deployments_and_runs_training_pods_only() -> None:
    documents = list(yaml.safe_load_all((KUBERNETES / "rbac.yaml").read_text()))
    roles = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] in ("Role", "ClusterRole")}
    assert all(doc["kind"] == "Role" for doc in roles.values())  # namespaced, nothing cluster-wide
    serving = roles["model-lifecycle-inferenceservice-reader"]
    assert serving["metadata"]["namespace"] == "models"
    assert serving["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                                 "verbs": ["get", "list", "watch"]},
                                {"apiGroups": ["apps"], "resources": ["deployments"],
                                 "verbs": ["get", "list", "watch"]}]
    training = roles["model-lifecycle-training"]
    assert training["metadata"]["namespace"] == "ml-training"
    granted = {(group, resource): set(rule["verbs"]) for rule in training["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted == {("", "pods"): {"create", "get", "list", "watch", "patch", "delete"},
                       ("", "pods/log"): {"get"}, ("", "events"): {"get", "list", "watch"}}
    bindings = [doc for doc in documents if doc["kind"] == "RoleBinding"]
    assert {(b["roleRef"]["name"], b["subjects"][0]["name"]) for b in bindings} == {
        ("model-lifecycle-training", "airflow"), ("model-lifecycle-inferenceservice-reader", "airflow")}


def test_training_pod_template() -> None:
    pod = yaml.safe_load((KUBERNETES / "training-pod-template.yaml").read_text())
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert [container["name"] for container in pod["spec"]["containers"]] == ["base"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
