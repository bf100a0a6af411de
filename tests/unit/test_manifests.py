"""The manifest edit touches the storage URI and the version annotations, nothing else."""

from __future__ import annotations

import difflib

import pytest

from model_lifecycle.manifests import ManifestError, pin_model_version, read_pinned_model

MANIFEST = """\
# Platform-owned; only the model fields are edited by automation.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fraud
  namespace: models
  annotations:
    serving.kserve.io/deploymentMode: "Serverless"   # keep quoted
spec:
  predictor:
    tolerations:
    - key: "gpu"
      operator: "Exists"
    model:
      modelFormat: {name: mlflow}
      protocolVersion: v2
      storageUri: s3://bucket/old   # replaced on promotion
      args: ["--workers", "2"]
"""

PIN = {"storage_uri": "s3://bucket/models/m-1/artifacts", "registered_model": "fraud-model",
       "version": "12", "run_id": "abc123"}


def pin(text: str, **overrides: str) -> str:
    return pin_model_version(text, path="apps/fraud.yaml", name="fraud", namespace="models",
                             **{**PIN, **overrides})


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def test_only_the_uri_and_annotations_change() -> None:
    removed, added = changed_lines(MANIFEST, pin(MANIFEST))
    assert removed == ["      storageUri: s3://bucket/old   # replaced on promotion"]
    assert added == [
        "    model-lifecycle/registered-model: fraud-model",
        "    model-lifecycle/model-version: '12'",
        "    model-lifecycle/mlflow-run-id: abc123",
        "      storageUri: s3://bucket/models/m-1/artifacts # replaced on promotion",
    ]


def test_pinning_again_changes_nothing_and_a_new_version_changes_only_its_values() -> None:
    once = pin(MANIFEST)
    assert pin(once) == once
    removed, added = changed_lines(once, pin(once, version="13", storage_uri="s3://b/m-2", run_id="def"))
    # ruamel keeps each comment at its column, so only the spacing before it may move
    assert [" ".join(line.split()) for line in removed] == [
        "model-lifecycle/model-version: '12'", "model-lifecycle/mlflow-run-id: abc123",
        "storageUri: s3://bucket/models/m-1/artifacts # replaced on promotion",
    ]
    assert [" ".join(line.split()) for line in added] == [
        "model-lifecycle/model-version: '13'", "model-lifecycle/mlflow-run-id: def",
        "storageUri: s3://b/m-2 # replaced on promotion",
    ]


def test_read_back_what_is_pinned() -> None:
    pinned = read_pinned_model(pin(MANIFEST), path="x", name="fraud", namespace="models")
    assert (pinned.storage_uri, pinned.registered_model, pinned.version, pinned.run_id) == (
        "s3://bucket/models/m-1/artifacts", "fraud-model", "12", "abc123")
    before = read_pinned_model(MANIFEST, path="x", name="fraud", namespace="models")
    assert before.storage_uri == "s3://bucket/old" and before.version is None


def test_indented_sequences_and_missing_annotations_are_handled() -> None:
    text = ("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: fraud\n"
            "spec:\n  predictor:\n    tolerations:\n      - key: gpu\n    model:\n"
            "      storageUri: s3://old\n")
    edited = pin(text)
    assert "    tolerations:\n      - key: gpu\n" in edited
    assert "metadata:\n  name: fraud\n  annotations:\n    model-lifecycle/registered-model: fraud-model\n" \
        in edited


def test_multi_document_file_edits_only_the_named_service() -> None:
    other = MANIFEST.replace("name: fraud", "name: churn")
    text = f"---\n{other}---\n{MANIFEST}"
    edited = pin(text)
    first, second = edited.split("---\n")[1:]
    assert "s3://bucket/old" in first and "model-lifecycle" not in first
    assert "s3://bucket/models/m-1/artifacts" in second


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Deployment\nmetadata: {name: fraud}\n", "no InferenceService named models/fraud"),
        (MANIFEST.replace("namespace: models", "namespace: other"), "no InferenceService named models/fraud"),
        (MANIFEST.replace("    model:\n", "    sklearn:\n"), "spec.predictor.model is missing"),
        ("kind: [", "apps/fraud.yaml: not valid YAML"),
        (f"---\n{MANIFEST}---\n{MANIFEST}", "2 InferenceService named models/fraud"),
    ],
)
def test_problems_name_the_file_and_field(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as raised:
        pin(text)
    assert str(raised.value).startswith("apps/fraud.yaml: ")
