"""What sits behind the merge in production, on loopback: a GitOps agent, a KServe controller and the
serving runtime, so the rollout check reads real InferenceService objects over the Kubernetes API and
its smoke request reaches the real MLServer.

- The agent watches the base branch of the GitOps repository and applies the merged InferenceService
  to the loopback Kubernetes API. With ``argocd=True`` it also answers Argo CD's Application API with
  the revision it synced (``argocd_lag`` keeps reporting the previous one, as an out-of-sync Argo CD).
- The controller rolls out a new predictor revision whenever ``storageUri`` changes, as KServe does:
  KServe's own storage-initializer code (``kserve-storage``) downloads what the URI holds (a proxied
  ``mlflow-artifacts:`` URI is read where the tracking server keeps it, ``artifacts_destination``),
  and the runtime the manifest selects loads it. It writes the status KServe writes (conditions,
  components.predictor revisions and traffic, modelStatus) after ``rollout_delay`` seconds: a model the
  runtime cannot load ends BlockedByFailedLoad / FailedToLoad with the runtime's own error, the old
  model still Loaded. ``behaviour="stuck"`` keeps the old revision the ready one (a controller that
  does not act). A manifest with ``canaryTrafficPercent`` below 100 gets a canary that starts at 0%
  and reaches that share after another ``rollout_delay``; a change of the share alone moves the traffic
  between the revisions (100: all of it to the canary, which is then the rolled-out revision).
- The serving runtime is one real MLServer per runtime for the whole session (``ModelServers``):
  each revision is a version of the InferenceService's model in its model repository, loaded through
  MLServer's repository API. ``status.url`` routes inference requests to the revisions by their
  traffic share, as Knative's route does.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from embedded.gitops_repo import git
from embedded.polling import PollingThread
from model_lifecycle.hooks.mlflow import artifact_location
from model_lifecycle.rollout import SOURCE_URI_ANNOTATION, deployment_mode, predictor_deployment_name
from model_lifecycle.runtime_server import (
    MLFLOW_IMPLEMENTATION,
    RuntimeServer,
    runtime_error,
    storage_initializer,
)
from model_lifecycle.runtimes import RUNTIMES, ServingRuntime
from tests.support.kube_api import KubernetesApi

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ARGOCD_TOKEN = "argocd-test-token"


class ModelLoadError(RuntimeError):
    """The runtime did not load a revision's model; the message is the runtime's own error."""


class ModelRepository:
    """A real MLServer of one serving runtime, started empty, whose model repository holds one folder
    per revision: ``<model>/<revision>/model-settings.json``, a version of the model named like the
    InferenceService (MLServer's model versions, ``/v2/models/<model>/versions/<revision>/infer``)."""

    def __init__(self, runtime: ServingRuntime, root: Path) -> None:
        self.runtime = runtime
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.server = RuntimeServer(runtime, root, log_path=root.parent / f"{runtime.name}.log")
        self._lock = threading.Lock()

    def start(self) -> ModelRepository:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def load(self, model: str, revision: str, model_dir: Path) -> None:
        """Load ``model_dir`` as version ``revision`` of ``model``; ``ModelLoadError`` says why not."""
        folder = self.root / model / revision
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model-settings.json").write_text(json.dumps({
            "name": model, "implementation": MLFLOW_IMPLEMENTATION,
            "parameters": {"uri": str(model_dir), "version": revision}}))
        with self._lock:
            offset = self.server.log_path.stat().st_size
            response = self._repository(model, "load")
            if response.status_code == 200:
                return
            shutil.rmtree(folder)
            with self.server.log_path.open(errors="replace") as log:
                log.seek(offset)
                error = runtime_error(log.read())
        raise ModelLoadError(error or f"HTTP {response.status_code}: {response.text[:500]}")

    def retire(self, model: str, revision: str) -> None:
        """Unload one version: MLServer's repository load drops the versions no folder declares."""
        shutil.rmtree(self.root / model / revision, ignore_errors=True)
        with self._lock:
            remaining = any((self.root / model).glob("*/model-settings.json"))
            self._repository(model, "load" if remaining else "unload")

    def forget(self, model: str) -> None:
        """Every version of ``model`` (what an earlier test left)."""
        shutil.rmtree(self.root / model, ignore_errors=True)
        with self._lock:
            self._repository(model, "unload")

    def infer(self, path: str, body: bytes) -> requests.Response:
        return requests.post(f"{self.server.url}{path}", data=body,
                             headers={"Content-Type": "application/json"}, timeout=60)

    def _repository(self, model: str, action: str) -> requests.Response:
        return requests.post(f"{self.server.url}/v2/repository/models/{model}/{action}", timeout=120)


class ModelServers:
    """One ``ModelRepository`` per serving runtime, started when first asked for, for the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._started: dict[str, ModelRepository] = {}
        self._lock = threading.Lock()

    def __getitem__(self, runtime: str) -> ModelRepository:
        with self._lock:
            if runtime not in self._started:
                self._started[runtime] = ModelRepository(RUNTIMES[runtime], self.root / runtime).start()
            return self._started[runtime]

    def stop(self) -> None:
        for repository in self._started.values():
            repository.stop()


def selected_runtime(model: dict[str, Any]) -> str:
    """The runtime KServe selects for ``spec.predictor.model``: the one it names, else the one whose
    supported MLflow format versions include the declared version (kserve-mlserver by default)."""
    if model.get("runtime"):
        return model["runtime"]
    version = str((model.get("modelFormat") or {}).get("version") or "")
    return next((name for name, runtime in RUNTIMES.items() if version in runtime.model_format_versions),
                "kserve-mlserver")


class ServingStack(PollingThread):
    def __init__(self, api: KubernetesApi, repo: Path, manifest_path: str, *, models: ModelServers,
                 artifacts_destination: str, behaviour: str = "healthy", rollout_delay: float = 0.5,
                 progress_deadline: float = 3.0, argocd: bool = False, argocd_lag: bool = False,
                 base_branch: str = "main") -> None:
        super().__init__(name="serving-stack", interval=0.2)
        configuration = client.Configuration()
        configuration.host = api.url
        self.objects = client.CustomObjectsApi(client.ApiClient(configuration))
        self.apps = client.AppsV1Api(client.ApiClient(configuration))
        self.repo, self.manifest_path, self.base_branch = repo, manifest_path, base_branch
        self.models, self.artifacts_destination = models, artifacts_destination
        self.behaviour, self.rollout_delay = behaviour, rollout_delay
        self.progress_deadline = progress_deadline
        self.argocd_lag = argocd_lag
        self.synced: str | None = None  # what Argo CD reports
        self.revisions: dict[str, int] = {}
        # InferenceService name -> the runtime serving it and each serving revision's traffic share
        self.routes: dict[str, tuple[ModelRepository, dict[str, int]]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.downloads = Path(tempfile.mkdtemp(prefix="kserve-models-"))
        self.router = _serve(self._router_handler())
        # Knative's routes to the tagged revisions, for enable-tag-routing
        self.tag_routers = {tag: _serve(self._router_handler(tag)) for tag in ("latest", "prev")}
        self.tag_routing: dict[str, bool] = {}
        self.argocd_server = _serve(self._argocd_handler()) if argocd else None
        self._applied: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router.server_port}"

    @property
    def argocd_url(self) -> str:
        assert self.argocd_server is not None
        return f"http://127.0.0.1:{self.argocd_server.server_port}"

    def start(self) -> ServingStack:
        """Deploys the manifest on the base branch afresh (an earlier test may have left one)."""
        manifest = yaml.safe_load(git(self.repo, "show", f"{self.base_branch}:{self.manifest_path}"))
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        for delete in (lambda: self.objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                            name),
                       lambda: self.apps.delete_namespaced_deployment(predictor_deployment_name(name),
                                                                      namespace)):
            try:
                delete()
            except ApiException as error:
                if error.status != 404:
                    raise
        self.models[selected_runtime(manifest["spec"]["predictor"]["model"])].forget(name)
        self._applied = git(self.repo, "rev-parse", self.base_branch).strip()
        self._apply(self._applied)
        super().start()
        return self

    def __enter__(self) -> ServingStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        super().stop()
        for server in (self.router, *self.tag_routers.values(), self.argocd_server):
            if server is not None:
                server.shutdown()
        for name, (repository, _) in self.routes.items():
            repository.forget(name)
        shutil.rmtree(self.downloads, ignore_errors=True)

    def inference_service(self, namespace: str, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    # The GitOps agent ------------------------------------------------------------------------

    def poll(self) -> None:
        head = git(self.repo, "rev-parse", self.base_branch).strip()
        if head != self._applied:
            self._apply(head)
            self._applied = head

    def _apply(self, sha: str) -> None:
        manifest = yaml.safe_load(git(self.repo, "show", f"{sha}:{self.manifest_path}"))
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            current = self.inference_service(namespace, name)
        except ApiException as error:
            if error.status != 404:
                raise
            current = self.objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                   manifest)
            self.revisions[name] = 0
        else:
            self.objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name,
                {"metadata": {"annotations": manifest["metadata"].get("annotations") or {}},
                 "spec": manifest["spec"]})
        if not self.argocd_lag or self.synced is None:
            self.synced = sha
        self.tag_routing[name] = (manifest["metadata"].get("annotations") or {}).get(
            "serving.kserve.io/enable-tag-routing") == "true"
        previous = (current.get("spec") or {}).get("predictor") or {}
        predictor = manifest["spec"]["predictor"]
        if previous.get("model", {}).get("storageUri") != predictor["model"]["storageUri"] \
                or not current.get("status"):
            threading.Thread(target=self._roll_out, args=(namespace, name, manifest), daemon=True).start()
        elif previous.get("canaryTrafficPercent") != predictor.get("canaryTrafficPercent"):
            threading.Thread(target=self._shift_traffic, args=(namespace, name, predictor),
                             daemon=True).start()

    # The KServe controller -------------------------------------------------------------------

    def _roll_out(self, namespace: str, name: str, manifest: dict[str, Any]) -> None:
        if deployment_mode(manifest) == "Standard":
            return self._roll_out_deployment(namespace, name, manifest)
        predictor = manifest["spec"]["predictor"]
        old = self._revision(name, self.revisions[name]) if self.revisions[name] else None
        self.revisions[name] += 1
        new = self._revision(name, self.revisions[name])
        if old is None:  # the initial deployment of the placeholder manifest: nothing to load
            self._status(namespace, name, ready=new, created=new, rolled_out=new, traffic={new: 100},
                         transition="UpToDate", active="Loaded", target="Loaded")
            return
        self._status(namespace, name, ready=old, created=new, rolled_out=old, traffic={old: 100},
                     transition="InProgress", active="Loaded", target="Loading",
                     deployment=("Unknown", "RevisionMissing"))
        time.sleep(self.rollout_delay)
        if self.behaviour == "stuck":
            self._status(namespace, name, ready=old, created=old, rolled_out=old, traffic={old: 100},
                         transition="UpToDate", active="Loaded", target="Loaded")
            return
        repository, error = self._load(name, new, predictor["model"])
        if error is not None:
            self._status(namespace, name, ready=old, created=new, rolled_out=old, traffic={old: 100},
                         transition="BlockedByFailedLoad", active="Loaded", target="FailedToLoad",
                         deployment=("False", "RevisionFailed"),
                         failure={"reason": "ModelLoadFailed", "modelRevisionName": new, "message": error})
            return
        canary = predictor.get("canaryTrafficPercent")
        if canary is not None and canary < 100:  # the canary starts without traffic
            self._split(namespace, name, repository, new=new, old=old, share=0)
            time.sleep(self.rollout_delay)
        self._split(namespace, name, repository, new=new, old=old, share=canary)

    def _shift_traffic(self, namespace: str, name: str, predictor: dict[str, Any]) -> None:
        """Only ``canaryTrafficPercent`` changed: Knative moves the traffic between the revisions it
        has, and creates none (100, or no share: all of it to the latest, which is then rolled out)."""
        time.sleep(self.rollout_delay)
        repository, _ = self.routes[name]
        self._split(namespace, name, repository, new=self._revision(name, self.revisions[name]),
                    old=self._revision(name, self.revisions[name] - 1),
                    share=predictor.get("canaryTrafficPercent"))

    def _split(self, namespace: str, name: str, repository: ModelRepository, *, new: str, old: str,
               share: int | None) -> None:
        """Route and report the traffic as Knative splits it: ``share`` to the new revision and the rest
        to the old one, or (no share, or 100) all of it to the new one, which is then rolled out."""
        if share is None or share == 100:
            traffic, rolled_out = {new: 100}, new
        else:
            traffic, rolled_out = {new: share, old: 100 - share}, old
        self._route(name, repository, traffic)
        self._status(namespace, name, ready=new, created=new, rolled_out=rolled_out, traffic=traffic,
                     transition="UpToDate", active="Loaded", target="Loaded")

    def _roll_out_deployment(self, namespace: str, name: str, manifest: dict[str, Any]) -> None:
        """Standard mode: the predictor Deployment takes the new URI on its pod template (a new
        generation), the Deployment controller observes it and surges a new ReplicaSet next to the old
        one, and the old one goes once the new pods are available. KServe's PropagateRawStatus
        (pkg/apis/serving/v1beta1/inference_service_status.go, v0.20.0) writes only PredictorReady, the
        URL and the Deployment's observedGeneration into the InferenceService; a model server that
        cannot load its model crash-loops, its pods never become available, and the Deployment ends
        ProgressDeadlineExceeded."""
        predictor = manifest["spec"]["predictor"]
        uri = predictor["model"]["storageUri"]
        replicas = predictor.get("minReplicas") or 1
        self.revisions[name] += 1
        generation = self.revisions[name]
        new = f"{predictor_deployment_name(name)}-{generation:05d}"  # the new ReplicaSet
        complete = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{new}" has successfully progressed.')
        if generation == 1:  # the initial deployment of the placeholder manifest: nothing to load
            self._deployment(namespace, name, uri, generation=1, observed=1, replicas=replicas,
                             updated=replicas, available=replicas, progressing=complete)
            self._raw_status(namespace, name, generation=1, ready=True)
            return
        self._deployment(namespace, name, uri, generation=generation, observed=generation - 1,
                         replicas=replicas, updated=replicas, available=replicas,
                         progressing=("True", "NewReplicaSetAvailable", "the previous rollout"))
        time.sleep(self.rollout_delay)
        surging = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new}" is progressing.')
        self._deployment(namespace, name, uri, generation=generation, observed=generation,
                         replicas=replicas + 1, updated=1, available=replicas, progressing=surging)
        self._raw_status(namespace, name, generation=generation, ready=True)
        if self.behaviour == "stuck":
            return
        repository, error = self._load(name, new, predictor["model"])
        if error is not None:
            time.sleep(self.progress_deadline)
            self._deployment(namespace, name, uri, generation=generation, observed=generation,
                             replicas=replicas + 1, updated=1, available=replicas,
                             progressing=("False", "ProgressDeadlineExceeded",
                                          f'ReplicaSet "{new}" has timed out progressing.'))
            self._raw_status(namespace, name, generation=generation, ready=False,
                             reason="ProgressDeadlineExceeded",
                             message=f'ReplicaSet "{new}" has timed out progressing.')
            return
        self._route(name, repository, {new: 100})
        self._deployment(namespace, name, uri, generation=generation, observed=generation, replicas=replicas,
                         updated=replicas, available=replicas, progressing=complete)
        self._raw_status(namespace, name, generation=generation, ready=True)

    def _load(self, name: str, revision: str, model: dict[str, Any]) -> tuple[ModelRepository, str | None]:
        """The storage initializer and the runtime: the repository serving ``revision``, or the error
        that stopped it (kserve-storage's or the runtime's, in their own words)."""
        repository = self.models[selected_runtime(model)]
        try:
            repository.load(name, revision, self._download(model["storageUri"], self.downloads / revision))
        except Exception as error:  # noqa: BLE001 (a failed storage initializer or load, whatever it raised)
            return repository, str(error)
        return repository, None

    def _deployment(self, namespace: str, name: str, uri: str, *, generation: int, observed: int,
                    replicas: int, updated: int, available: int, progressing: tuple[str, str, str]) -> None:
        """The predictor Deployment as the API serves it; the API server bumps ``generation`` on a
        template change, here the controller sets it."""
        deployment_name = predictor_deployment_name(name)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {"app": f"isvc.{deployment_name}", "serving.kserve.io/inferenceservice": name}
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deployment_name, "namespace": namespace, "generation": generation,
                         "labels": labels, "annotations": {SOURCE_URI_ANNOTATION: uri}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": labels["app"]}},
                     "template": {"metadata": {"labels": labels, "annotations": {SOURCE_URI_ANNOTATION: uri}},
                                  "spec": {"containers": [{"name": "kserve-container",
                                                           "image": "docker.io/seldonio/mlserver:1.7.1"}]}}},
            "status": {
                "observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                "readyReplicas": available, "availableReplicas": available,
                "conditions": [
                    {"type": "Available", "status": "True" if available >= 1 else "False",
                     "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.",
                     "lastUpdateTime": now, "lastTransitionTime": now},
                    {"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                     "message": progressing[2], "lastUpdateTime": now, "lastTransitionTime": now},
                ],
            },
        }
        try:
            self.apps.patch_namespaced_deployment(deployment_name, namespace, body)
        except ApiException as error:
            if error.status != 404:
                raise
            self.apps.create_namespaced_deployment(namespace, body)

    def _raw_status(self, namespace: str, name: str, *, generation: int, ready: bool, reason: str = "",
                    message: str = "") -> None:
        """What PropagateRawStatus and PropagateModelStatus (rawDeployment) write in Standard mode."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = "True" if ready else "False"
        conditions = [{"type": kind, "status": condition, "lastTransitionTime": now,
                       **({"reason": reason, "message": message} if reason else {})}
                      for kind in ("PredictorReady", "Ready")]
        status = {
            "url": self.url, "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
            "observedGeneration": generation, "deploymentMode": "Standard", "conditions": conditions,
            "components": {"predictor": {"url": self.url}},
            "modelStatus": {"transitionStatus": "UpToDate" if ready else "InProgress",
                            "states": {"activeModelState": "Loaded",
                                       "targetModelState": "Loaded" if ready else "Loading"},
                            "copies": {"failedCopies": 0, "totalCopies": 1}},
        }
        self.objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                           {"status": status})

    def _download(self, uri: str, target: Path) -> Path:
        """What KServe's storage initializer puts in /mnt/models, from the URI as the manifest pins it."""
        return storage_initializer(artifact_location(uri, self.artifacts_destination), target)

    def _route(self, name: str, repository: ModelRepository, traffic: dict[str, int]) -> None:
        """Send requests to the revisions by their share; retire the revisions left without traffic."""
        _, previous = self.routes.get(name, (repository, {}))
        self.routes[name] = (repository, traffic)
        for revision in previous:
            if revision not in traffic:
                repository.retire(name, revision)

    @staticmethod
    def _revision(name: str, number: int) -> str:
        return f"{name}-predictor-{number:05d}"

    def _status(self, namespace: str, name: str, **fields: Any) -> None:
        tag_urls = None
        if self.tag_routing.get(name):
            tag_urls = {tag: f"http://127.0.0.1:{router.server_port}"
                        for tag, router in self.tag_routers.items()}
        status = inference_service_status(url=self.url, address=f"http://{name}.{namespace}.svc.cluster.local",
                                          tag_urls=tag_urls, **fields)
        self.objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                           {"status": status})

    # The route and Argo CD -------------------------------------------------------------------

    def _router_handler(self, tag: str | None = None) -> type[BaseHTTPRequestHandler]:
        """The InferenceService's route: to the revisions by their share, or to the tagged one."""
        stack = self

        class Handler(_JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                payload = self.rfile.read(int(self.headers["Content-Length"]))
                stack.requests.append((self.path, json.loads(payload)))
                parts = self.path.strip("/").split("/")
                if len(parts) != 4 or parts[:2] != ["v2", "models"]:
                    # The MLServer runtimes speak the V2 protocol only (their protocolVersions).
                    return self.reply(404, {"error": f"{self.path}: not a V2 inference path"})
                name, operation = parts[2], parts[3]
                if name not in stack.routes:
                    return self.reply(503, {"error": f"no revision of {name} is serving"})
                repository, traffic = stack.routes[name]
                latest = stack._revision(name, stack.revisions[name])
                if tag == "latest":
                    revision = latest
                elif tag == "prev":
                    revision = next((revision for revision in traffic if revision != latest), None)
                    if revision is None:  # Knative routes the tag only while the traffic is split
                        return self.reply(404, {"error": f"{name} has no previous revision serving"})
                else:
                    revisions = [revision for revision, share in traffic.items() if share > 0]
                    revision = random.choices(revisions, weights=[traffic[r] for r in revisions])[0]
                answer = repository.infer(f"/v2/models/{name}/versions/{revision}/{operation}", payload)
                return self.send(answer.status_code, answer.content,
                                 answer.headers.get("Content-Type", "application/json"))

        return Handler

    def _argocd_handler(self) -> type[BaseHTTPRequestHandler]:
        stack = self

        class Handler(_JsonHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("Authorization") != f"Bearer {ARGOCD_TOKEN}":
                    return self.reply(401, {"error": "invalid session"})
                application = self.path.rsplit("/", 1)[-1]
                return self.reply(200, {"metadata": {"name": application}, "status": {
                    "sync": {"status": "Synced", "revision": stack.synced},
                    "health": {"status": "Healthy"}}})

        return Handler


class _JsonHandler(BaseHTTPRequestHandler):
    def reply(self, code: int, body: dict[str, Any]) -> None:
        self.send(code, json.dumps(body).encode(), "application/json")

    def send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def traffic_target(revision: str, percent: int, *, latest: bool,
                   tag_urls: dict[str, str] | None) -> dict[str, Any]:
    """A Knative traffic target as KServe's ksvc reconciler (reconcilers/knative/ksvc_reconciler.go,
    v0.20.0) asks for it: the latest revision tagged ``latest`` only with
    ``serving.kserve.io/enable-tag-routing: "true"``, the previous one of a split always ``prev``; a
    tagged target has its own URL (``tag_urls``)."""
    target: dict[str, Any] = {"revisionName": revision, "percent": percent, "latestRevision": latest}
    tag = "latest" if latest and tag_urls else None if latest else "prev"
    if tag:
        target["tag"] = tag
        if tag_urls:
            target["url"] = tag_urls[tag]
    return target


def inference_service_status(*, ready: str, created: str, rolled_out: str, traffic: dict[str, int],
                             transition: str, active: str, target: str, url: str = "http://127.0.0.1",
                             tag_urls: dict[str, str] | None = None,
                             address: str = "http://isvc.models.svc.cluster.local",
                             deployment: tuple[str, str] | None = None,
                             failure: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status KServe writes on a Knative-mode InferenceService (conditions, the predictor's
    revisions and traffic, the model status)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": now}
                  for kind in ("IngressReady", "PredictorReady", "Ready")]
    if deployment is not None:
        conditions.append({"type": "LatestDeploymentReady", "status": deployment[0], "reason": deployment[1],
                           "lastTransitionTime": now})
    model_status: dict[str, Any] = {"transitionStatus": transition,
                                    "states": {"activeModelState": active, "targetModelState": target},
                                    "copies": {"failedCopies": 1 if failure else 0, "totalCopies": 1}}
    if failure:
        model_status["lastFailureInfo"] = {**failure, "time": now}
    return {
        "url": url,
        "address": {"url": address},
        "observedGeneration": 1,
        "deploymentMode": "Knative",
        "conditions": conditions,
        "components": {"predictor": {
            "latestCreatedRevision": created, "latestReadyRevision": ready,
            "latestRolledoutRevision": rolled_out, "url": url,
            "traffic": [traffic_target(revision, percent, latest=revision == created, tag_urls=tag_urls)
                        for revision, percent in traffic.items()],
        }},
        "modelStatus": model_status,
    }
