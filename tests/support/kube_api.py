"""A Kubernetes API on loopback, for the real ``kubernetes`` and ``kubernetes_asyncio`` clients.

kmock's ``KubernetesEmulator`` keeps objects in memory and serves create, get, list, watch, patch and
delete. This extends it where the provider's KubernetesPodOperator needs more: object metadata
(uid, creationTimestamp, resourceVersion), label and field selectors on lists and watches, and the
``pods/<name>/log`` subresource (fed by the test kubelet). Every InferenceService it serves is
validated against the KServe CRD schema in ``tests/specs/kserve/``; violations are collected for
the tests to assert on.

The server runs on its own event loop in a background thread, so synchronous tests and Airflow's
in-process task runner can use it like a real cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import json
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import jsonschema
import yaml
from kmock._internal import apps, enums, k8s, rendering

from tests.support.api_specs import api_specs_dir

ISVC_RESOURCE = "serving.kserve.io/v1beta1/inferenceservices"
RESOURCES = ["v1/pods", "v1/events", "v1/secrets", "v1/namespaces", "apps/v1/deployments", ISVC_RESOURCE]


@functools.cache
def inference_service_schema() -> dict[str, Any]:
    crd_file = api_specs_dir() / "kserve" / "serving.kserve.io_inferenceservices.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return version["schema"]["openAPIV3Schema"]


def schema_violations(isvc: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(inference_service_schema())
    return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(isvc)]


class LoopbackKubernetes(k8s.KubernetesEmulator):
    """The emulator with the extensions listed in the module docstring."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self.logs: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.violations: list[str] = []
        self._validator = jsonschema.Draft7Validator(inference_service_schema())
        for resource in RESOURCES:
            self.resources[resource] = {}

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.subresource == "log" and request.method == enums.method.GET:
            text = "".join(self.logs.get((request.namespace or "", request.name or ""), []))
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            metadata.setdefault("namespace", request.namespace)
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", _now())
            metadata.setdefault("generation", 1)
            metadata["resourceVersion"] = str(next(self._versions))
            if request.resource is not None and request.resource.plural == "pods":
                # The API server answers a created pod with phase Pending before any kubelet sees it.
                request.data.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
        elif request.action == enums.action.UPDATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        response = await super()._handle(request)
        if request.action == enums.action.CREATE and response.status == 200 and not response.prepared:
            response.set_status(201)  # what the API answers to a create, and what clients expect
        return response

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        listing = await super()._serve_list(request)
        listing["items"] = [self._served(item) for item in listing["items"] if _selected(request, item)]
        listing["metadata"] = {"resourceVersion": str(next(self._versions))}
        return listing

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        async for event in super()._serve_watch(request):
            if not isinstance(event, dict) or _selected(request, event.get("object") or {}):
                if isinstance(event, dict):
                    event = {**event, "object": self._served(event["object"])}
                yield event

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        return self._served(await super()._serve_fetch(request))

    def _served(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("kind") == "InferenceService":
            for error in self._validator.iter_errors(obj):
                path = "/".join(map(str, error.absolute_path)) or "(root)"
                self.violations.append(f"{obj['metadata'].get('name')}: {path}: {error.message}")
        return obj


def _selected(request: rendering.Request, obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    label_selector = request.params.get("labelSelector") or ""
    for term in _split_selector(label_selector):
        if not _label_matches(term, labels):
            return False
    for term in _split_selector(request.params.get("fieldSelector") or ""):
        key, operator, value = re.fullmatch(r"([^!=]+)(!=|==|=)(.*)", term).groups()
        actual: Any = obj
        for part in key.split("."):
            actual = actual.get(part) if isinstance(actual, Mapping) else None
        if (str(actual) == value) != (operator != "!="):
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    """Split at commas that are not inside ``in (...)`` sets."""
    return [term.strip() for term in re.split(r",(?![^(]*\))", selector) if term.strip()]


def _label_matches(term: str, labels: Mapping[str, str]) -> bool:
    if match := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\((.*)\)", term):
        key, operator, values = match.groups()
        inside = labels.get(key) in {value.strip() for value in values.split(",")}
        return inside if operator == "in" else not inside
    if term.startswith("!"):
        return term[1:] not in labels
    if match := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*(.*)", term):
        key, operator, value = match.groups()
        return (labels.get(key) == value) == (operator != "!=")
    return term in labels


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubernetesApi:
    """Runs ``LoopbackKubernetes`` on loopback in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kube-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the loopback Kubernetes API did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with LoopbackKubernetes() as handler, apps.Server(handler) as server:
            self.handler = handler
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    @property
    def violations(self) -> list[str]:
        return list(self.handler.violations)

    def append_log(self, namespace: str, name: str, text: str) -> None:
        self.loop.call_soon_threadsafe(self.handler.logs[(namespace, name)].append, text)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file that points the clients at this server (no authentication)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "loopback",
            "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "tester"}}],
        }))
        return path
