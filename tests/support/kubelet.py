"""A test kubelet: moves pods of the loopback Kubernetes API through their phases and runs each pod's
command as a local process, so a training pod really trains and logs to the real MLflow server.

It talks to the API with the real ``kubernetes`` client, as a kubelet does: it lists pods, patches
their status, reads the Secrets their environment refers to, records events, and feeds the container
output to ``pods/<name>/log``. What it does with a pod follows the pod:

- a node selector the node's labels do not satisfy: the pod stays Pending, PodScheduled False
  (Unschedulable), with a FailedScheduling event;
- an image it does not know: ErrImagePull;
- an envFrom Secret that does not exist: CreateContainerConfigError;
- otherwise the command runs (``python`` is this interpreter, the working directory is the image's
  folder); a process above the container's memory limit is killed (OOMKilled, 137); the exit code
  ends the pod Succeeded or Failed. A pod deleted while running has its process killed.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from embedded.polling import PollingThread
from tests.support.kube_api import KubernetesApi

_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


class TestKubelet(PollingThread):
    __test__ = False  # not a pytest test class

    def __init__(self, api: KubernetesApi, images: dict[str, Path],
                 node_labels: dict[str, str] | None = None) -> None:
        super().__init__(name="test-kubelet", interval=0.2)
        configuration = client.Configuration()
        configuration.host = api.url
        self.core = client.CoreV1Api(client.ApiClient(configuration))
        self.api = api
        self.images = images
        self.node_labels = node_labels or {"kubernetes.io/os": "linux"}
        self.pods: dict[str, client.V1Pod] = {}  # pod name -> the pod as it was created
        self.environments: dict[str, dict[str, str]] = {}  # pod name -> the environment it ran with
        self._seen: set[str] = set()

    def poll(self) -> None:
        for pod in self.core.list_pod_for_all_namespaces().items:
            if pod.metadata.uid not in self._seen:
                self._seen.add(pod.metadata.uid)
                threading.Thread(target=self._run_pod, args=(pod,), daemon=True).start()

    def _run_pod(self, pod: client.V1Pod) -> None:
        namespace, name = pod.metadata.namespace, pod.metadata.name
        self.pods[name] = pod
        container = pod.spec.containers[0]
        unmatched = {key: value for key, value in (pod.spec.node_selector or {}).items()
                     if self.node_labels.get(key) != value}
        if unmatched:
            message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            unschedulable = _condition("PodScheduled", "False", "Unschedulable", message)
            self._status(pod, phase="Pending", conditions=[unschedulable])
            self._event(pod, "FailedScheduling", message)
            return
        scheduled = [_condition("PodScheduled", "True")]
        self._status(pod, phase="Pending", conditions=scheduled,
                     container=_waiting(container, "ContainerCreating"))
        if container.image not in self.images:
            message = (f'Failed to pull image "{container.image}": rpc error: code = NotFound desc = '
                       f"{container.image}: not found")
            self._status(pod, phase="Pending", conditions=scheduled,
                         container=_waiting(container, "ErrImagePull", message))
            self._event(pod, "Failed", message)
            return
        try:
            environment = self._environment(namespace, container)
        except LookupError as missing:
            self._status(pod, phase="Pending", conditions=scheduled,
                         container=_waiting(container, "CreateContainerConfigError", str(missing)))
            return
        self.environments[name] = environment
        argv = [*(container.command or []), *(container.args or [])]
        argv = [sys.executable if part in ("python", "python3") else part for part in argv]
        started = _now()
        process = subprocess.Popen(argv, cwd=self.images[container.image], env=environment,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        self._status(pod, phase="Running", conditions=[*scheduled, _condition("Ready", "True")],
                     container={**_identity(container, process.pid), "ready": True, "restartCount": 0,
                                "state": {"running": {"startedAt": started}}})
        limit = _bytes(((container.resources and container.resources.limits) or {}).get("memory"))
        watchdog = _Watchdog(process, limit, lambda: self._exists(namespace, name))
        watchdog.start()
        for line in process.stdout:
            self.api.append_log(namespace, name, line)
        code = process.wait()
        watchdog.join()
        if watchdog.deleted:
            return
        reason = "OOMKilled" if watchdog.oom_killed else ("Completed" if code == 0 else "Error")
        exit_code = 137 if watchdog.oom_killed else code
        self._status(pod, phase="Succeeded" if exit_code == 0 else "Failed",
                     conditions=[*scheduled, _condition("Ready", "False", "PodCompleted")],
                     container={**_identity(container, process.pid), "ready": False, "restartCount": 0,
                                "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                                                         "startedAt": started, "finishedAt": _now()}}})

    def _environment(self, namespace: str, container: client.V1Container) -> dict[str, str]:
        environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
        for source in container.env_from or []:
            if source.secret_ref is not None:
                try:
                    secret = self.core.read_namespaced_secret(source.secret_ref.name, namespace)
                except ApiException as error:
                    if error.status == 404:
                        raise LookupError(f'secret "{source.secret_ref.name}" not found') from None
                    raise
                environment.update({key: base64.b64decode(value).decode()
                                    for key, value in (secret.data or {}).items()})
        environment.update({variable.name: variable.value or "" for variable in container.env or []})
        return environment

    def _exists(self, namespace: str, name: str) -> bool:
        try:
            self.core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def _status(self, pod: client.V1Pod, *, phase: str, conditions: list[dict[str, Any]],
                container: dict[str, Any] | None = None) -> None:
        status: dict[str, Any] = {"phase": phase, "conditions": conditions, "hostIP": "127.0.0.1"}
        if container is not None:
            status["containerStatuses"] = [container]
            if phase != "Pending":
                status["startTime"] = container["state"].get("running", {}).get("startedAt") or _now()
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                                  {"status": status})
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise

    def _event(self, pod: client.V1Pod, reason: str, message: str) -> None:
        self.core.create_namespaced_event(pod.metadata.namespace, client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{pod.metadata.name}.{time.monotonic_ns()}"),
            involved_object=client.V1ObjectReference(kind="Pod", name=pod.metadata.name,
                                                     namespace=pod.metadata.namespace, uid=pod.metadata.uid),
            reason=reason, message=message, type="Warning", count=1,
            first_timestamp=dt.datetime.now(dt.UTC), last_timestamp=dt.datetime.now(dt.UTC),
        ))


class _Watchdog(threading.Thread):
    """Kills the container's process when it exceeds its memory limit, or when its pod is deleted."""

    def __init__(self, process: subprocess.Popen[str], limit: int | None, pod_exists: Any) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.limit = limit
        self.pod_exists = pod_exists
        self.oom_killed = False
        self.deleted = False

    def run(self) -> None:
        checks = 0
        while self.process.poll() is None:
            if self.limit is not None and _rss(self.process.pid) > self.limit:
                self.oom_killed = True
                self._kill()
            elif checks % 10 == 0 and not self.pod_exists():
                self.deleted = True
                self._kill()
            checks += 1
            time.sleep(0.05)

    def _kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


def _bytes(quantity: str | None) -> int | None:
    if quantity is None:
        return None
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return int(float(number) * _UNITS[unit])


def _condition(kind: str, status: str, reason: str | None = None,
               message: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": status, "lastTransitionTime": _now()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _waiting(container: client.V1Container, reason: str, message: str | None = None) -> dict[str, Any]:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {"name": container.name, "image": container.image, "imageID": "", "ready": False,
            "restartCount": 0, "state": {"waiting": waiting}}


def _identity(container: client.V1Container, pid: int) -> dict[str, Any]:
    return {"name": container.name, "image": container.image, "imageID": f"local://{container.image}",
            "containerID": f"process://{pid}"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
