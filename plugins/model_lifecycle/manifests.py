"""Round-trip edit of an InferenceService manifest: point it at a model version, read back what it pins.

The edit changes the predictor's ``storageUri`` and the version annotations and nothing else: comments,
key order, quoting and indentation survive, so the pull request diff shows only what changed.
Files with several YAML documents are supported; the InferenceService is found by name and namespace.

Pure module: no Airflow, no MLflow.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

ANNOTATION_PREFIX = "model-lifecycle"
MODEL_ANNOTATION = f"{ANNOTATION_PREFIX}/registered-model"
VERSION_ANNOTATION = f"{ANNOTATION_PREFIX}/model-version"
RUN_ANNOTATION = f"{ANNOTATION_PREFIX}/mlflow-run-id"


class ManifestError(ValueError):
    """The manifest cannot be read or edited; the message names the file and the field."""


@dataclass(frozen=True)
class PinnedModel:
    """What an InferenceService manifest says it serves."""

    storage_uri: str | None
    registered_model: str | None
    version: str | None
    run_id: str | None


def pin_model_version(
    text: str,
    *,
    path: str,
    name: str,
    namespace: str,
    storage_uri: str,
    registered_model: str,
    version: str,
    run_id: str,
    canary_traffic_percent: int | None = None,
) -> str:
    """Return ``text`` with the InferenceService ``namespace/name`` pointing at the given version; with
    ``canary_traffic_percent``, KServe sends that share of the requests to it (100: all of them)."""
    yaml, documents = _load(text, path)
    document = _find_inference_service(documents, path=path, name=name, namespace=namespace)
    model = _predictor_model(document, path)
    model["storageUri"] = storage_uri
    if canary_traffic_percent is not None:
        document["spec"]["predictor"]["canaryTrafficPercent"] = canary_traffic_percent
    metadata = document["metadata"]
    if not isinstance(metadata.get("annotations"), dict):
        metadata["annotations"] = CommentedMap()
    annotations = metadata["annotations"]
    annotations[MODEL_ANNOTATION] = registered_model
    annotations[VERSION_ANNOTATION] = str(version)
    annotations[RUN_ANNOTATION] = run_id
    buffer = io.StringIO()
    if len(documents) == 1 and not text.lstrip().startswith("---"):
        yaml.dump(documents[0], buffer)
    else:
        yaml.explicit_start = text.lstrip().startswith("---")
        yaml.dump_all(documents, buffer)
    return buffer.getvalue()


def read_pinned_model(text: str, *, path: str, name: str, namespace: str) -> PinnedModel:
    _, documents = _load(text, path)
    document = _find_inference_service(documents, path=path, name=name, namespace=namespace)
    model = _predictor_model(document, path)
    annotations = document["metadata"].get("annotations") or {}
    version = annotations.get(VERSION_ANNOTATION)
    return PinnedModel(
        storage_uri=model.get("storageUri"),
        registered_model=annotations.get(MODEL_ANNOTATION),
        version=None if version is None else str(version),
        run_id=annotations.get(RUN_ANNOTATION),
    )


def read_inference_service(text: str, *, path: str, name: str, namespace: str) -> dict[str, Any]:
    """The InferenceService ``namespace/name`` as plain data, its ``spec.predictor.model`` checked."""
    _, documents = _load(text, path)
    document = _find_inference_service(documents, path=path, name=name, namespace=namespace)
    _predictor_model(document, path)
    return json.loads(json.dumps(document))


def _load(text: str, path: str) -> tuple[YAML, list[Any]]:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(**_indentation(text))
    try:
        documents = [doc for doc in yaml.load_all(text) if doc is not None]
    except YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    return yaml, documents


def _indentation(text: str) -> dict[str, int]:
    """The file's own indentation of nested mappings and of block sequences (``- `` under its key, or
    indented below it), so that the dump rewrites no line it does not change."""
    mapping, offset = None, None
    parent = None
    for line in text.splitlines():
        content = line.lstrip(" ")
        if not content or content.startswith(("#", "---", "...")):
            continue
        column = len(line) - len(content)
        if parent is not None and column > parent:
            if content.startswith("- "):
                offset = column - parent if offset is None else offset
            elif mapping is None:
                mapping = column - parent
        if mapping is not None and offset is not None:
            break
        parent = column if content.rstrip().endswith(":") else None
    mapping = mapping or 2
    offset = offset or 0
    return {"mapping": mapping, "sequence": offset + 2, "offset": offset}


def _find_inference_service(documents: list[Any], *, path: str, name: str, namespace: str) -> Any:
    found = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "InferenceService":
            continue
        metadata = document.get("metadata")
        if not isinstance(metadata, dict) or metadata.get("name") != name:
            continue
        if metadata.get("namespace") not in (None, namespace):
            continue
        found.append(document)
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ManifestError(
            f"{path}: {what} InferenceService named {namespace}/{name} (kind: InferenceService, "
            f"metadata.name: {name}); exactly one is required"
        )
    return found[0]


def _predictor_model(document: Any, path: str) -> Any:
    model = (document.get("spec") or {}).get("predictor", {}).get("model")
    if not isinstance(model, dict):
        raise ManifestError(
            f"{path}: spec.predictor.model is missing; the InferenceService must use the "
            "model-format predictor (spec.predictor.model.modelFormat and storageUri)"
        )
    return model
