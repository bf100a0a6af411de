"""What sits behind the merge in production, on loopback: a GitOps agent, a KServe controller and the
model server, so the rollout check reads real InferenceService objects over the Kubernetes API.

- The agent watches the base branch of the GitOps repository and applies the merged InferenceService
  to the loopback Kubernetes API. With ``argocd=True`` it also answers Argo CD's Application API with
  the revision it synced (``argocd_lag`` keeps reporting the previous one, as an out-of-sync Argo CD).
- The controller rolls out a new predictor revision whenever ``storageUri`` changes and writes the
  status KServe writes (conditions, components.predictor revisions and traffic, modelStatus), after
  ``rollout_delay`` seconds. ``behaviour`` chooses the outcome: ``healthy``; ``fail_load`` (the new
  model cannot be loaded: BlockedByFailedLoad, FailedToLoad, the old model still Loaded); ``stuck``
  (the old revision stays the ready one). A manifest with ``canaryTrafficPercent`` gets a canary
  that starts at 0% and reaches the configured percentage after another ``rollout_delay``.
- The model server loads the ready revision's model through MLflow and answers the v1 and v2
  inference protocols on the InferenceService's ``status.url``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from embedded.gitops_repo import git
from embedded.polling import PollingThread
from tests.support.kube_api import KubernetesApi

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ARGOCD_TOKEN = "argocd-test-token"


class ServingStack(PollingThread):
    def __init__(self, api: KubernetesApi, repo: Path, manifest_path: str, *, tracking_uri: str,
                 behaviour: str = "healthy", rollout_delay: float = 0.5, argocd: bool = False,
                 argocd_lag: bool = False, base_branch: str = "main") -> None:
        super().__init__(name="serving-stack", interval=0.2)
        configuration = client.Configuration()
        configuration.host = api.url
        self.objects = client.CustomObjectsApi(client.ApiClient(configuration))
        self.repo, self.manifest_path, self.base_branch = repo, manifest_path, base_branch
        self.tracking_uri = tracking_uri
        self.behaviour, self.rollout_delay = behaviour, rollout_delay
        self.argocd_lag = argocd_lag
        self.synced: str | None = None  # what Argo CD reports
        self.models: dict[str, Any] = {}  # InferenceService name -> the loaded model it serves
        self.revisions: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.model_server = _serve(self._model_handler())
        self.argocd_server = _serve(self._argocd_handler()) if argocd else None
        self._applied: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.model_server.server_port}"

    @property
    def argocd_url(self) -> str:
        assert self.argocd_server is not None
        return f"http://127.0.0.1:{self.argocd_server.server_port}"

    def start(self) -> ServingStack:
        """Deploys the manifest on the base branch afresh (an earlier test may have left one)."""
        manifest = yaml.safe_load(git(self.repo, "show", f"{self.base_branch}:{self.manifest_path}"))
        try:
            self.objects.delete_namespaced_custom_object(GROUP, VERSION, manifest["metadata"]["namespace"],
                                                         PLURAL, manifest["metadata"]["name"])
        except ApiException as error:
            if error.status != 404:
                raise
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
        for server in (self.model_server, self.argocd_server):
            if server is not None:
                server.shutdown()

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
        previous_uri = ((current.get("spec") or {}).get("predictor") or {}).get("model", {}).get("storageUri")
        if previous_uri != manifest["spec"]["predictor"]["model"]["storageUri"] or not current.get("status"):
            threading.Thread(target=self._roll_out, args=(namespace, name, manifest), daemon=True).start()

    # The KServe controller -------------------------------------------------------------------

    def _roll_out(self, namespace: str, name: str, manifest: dict[str, Any]) -> None:
        predictor = manifest["spec"]["predictor"]
        uri = predictor["model"]["storageUri"]
        old = self._revision(name, self.revisions[name]) if self.revisions[name] else None
        self.revisions[name] += 1
        new = self._revision(name, self.revisions[name])
        first = old is None  # the initial deployment of the placeholder manifest
        if not first:
            self._status(namespace, name, ready=old, created=new, rolled_out=old, traffic={old: 100},
                         transition="InProgress", active="Loaded", target="Loading",
                         deployment=("Unknown", "RevisionMissing"))
        time.sleep(self.rollout_delay)
        if self.behaviour == "stuck" and not first:
            self._status(namespace, name, ready=old, created=old, rolled_out=old, traffic={old: 100},
                         transition="UpToDate", active="Loaded", target="Loaded")
            return
        if self.behaviour == "fail_load" and not first:
            self._status(namespace, name, ready=old, created=new, rolled_out=old, traffic={old: 100},
                         transition="BlockedByFailedLoad", active="Loaded", target="FailedToLoad",
                         deployment=("False", "RevisionFailed"),
                         failure={"reason": "ModelLoadFailed", "modelRevisionName": new,
                                  "message": f"failed to load {uri}: no MLmodel file found"})
            return
        if not first:
            import mlflow.pyfunc

            mlflow.set_tracking_uri(self.tracking_uri)
            self.models[name] = mlflow.pyfunc.load_model(uri)
        canary = predictor.get("canaryTrafficPercent")
        if canary is not None and not first:
            self._status(namespace, name, ready=new, created=new, rolled_out=old,
                         traffic={new: 0, old: 100}, transition="UpToDate", active="Loaded", target="Loaded")
            time.sleep(self.rollout_delay)
            self._status(namespace, name, ready=new, created=new, rolled_out=old,
                         traffic={new: canary, old: 100 - canary}, transition="UpToDate", active="Loaded",
                         target="Loaded")
            return
        self._status(namespace, name, ready=new, created=new, rolled_out=new, traffic={new: 100},
                     transition="UpToDate", active="Loaded", target="Loaded")

    @staticmethod
    def _revision(name: str, number: int) -> str:
        return f"{name}-predictor-{number:05d}"

    def _status(self, namespace: str, name: str, **fields: Any) -> None:
        status = inference_service_status(url=self.url, address=f"http://{name}.{namespace}.svc.cluster.local",
                                          **fields)
        self.objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                           {"status": status})

    # The model server and Argo CD ------------------------------------------------------------

    def _model_handler(self) -> type[BaseHTTPRequestHandler]:
        stack = self

        class Handler(_JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                parts = self.path.strip("/").split("/")
                name = parts[2].split(":")[0] if len(parts) > 2 else ""
                stack.requests.append((self.path, body))
                model = stack.models.get(name)
                if model is None:
                    return self.reply(503, {"error": f"model {name} is not loaded"})
                import numpy as np

                if self.path.startswith("/v1/"):
                    predictions = model.predict(np.asarray(body["instances"]))
                    return self.reply(200, {"predictions": predictions.tolist()})
                tensor = body["inputs"][0]
                predictions = model.predict(np.asarray(tensor["data"]).reshape(tensor["shape"]))
                return self.reply(200, {"model_name": name, "outputs": [
                    {"name": "output-0", "shape": [len(predictions)], "datatype": "INT64",
                     "data": predictions.tolist()}]})

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
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def inference_service_status(*, ready: str, created: str, rolled_out: str, traffic: dict[str, int],
                             transition: str, active: str, target: str, url: str = "http://127.0.0.1",
                             address: str = "http://isvc.models.svc.cluster.local",
                             deployment: tuple[str, str] | None = None,
                             failure: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status KServe writes on a Serverless InferenceService (conditions, the predictor's
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
        "deploymentMode": "Serverless",
        "conditions": conditions,
        "components": {"predictor": {
            "latestCreatedRevision": created, "latestReadyRevision": ready,
            "latestRolledoutRevision": rolled_out, "url": url,
            "traffic": [{"revisionName": revision, "percent": percent, "latestRevision": revision == created,
                         **({"tag": "latest" if revision == created else "prev"} if len(traffic) > 1 else {})}
                        for revision, percent in traffic.items()],
        }},
        "modelStatus": model_status,
    }
