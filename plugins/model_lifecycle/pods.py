"""Why a training pod failed, in one sentence, from the pod object as the Kubernetes API returns it.

Pure module: it reads a pod (camelCase JSON, as served by the API) and names the reason: a non-zero
exit, OOMKilled, an image that cannot be pulled, a container that cannot be created (a missing
Secret), a pod that was never scheduled, or an eviction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CREATE_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


def pod_failure_reason(pod: Mapping[str, Any], container: str = "base") -> str:
    status = pod.get("status") or {}
    for container_status in status.get("containerStatuses") or []:
        if container_status.get("name") != container:
            continue
        state = container_status.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        if terminated.get("reason") == "OOMKilled":
            limit = _limit(pod, container, "memory")
            return (f"container {container} was OOMKilled (exit code {terminated.get('exitCode')}): "
                    f"it needed more memory than its limit" + (f" of {limit}" if limit else ""))
        if terminated and terminated.get("exitCode") not in (None, 0):
            message = f": {terminated['message'].strip()}" if terminated.get("message") else ""
            return (f"container {container} exited with code {terminated['exitCode']} "
                    f"({terminated.get('reason') or 'Error'}){message}")
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            return (f"image {container_status.get('image')!r} cannot be pulled: {waiting['reason']}"
                    + (f": {waiting['message']}" if waiting.get("message") else ""))
        if waiting.get("reason") in CREATE_REASONS:
            return (f"container {container} cannot be created: {waiting['reason']}"
                    + (f": {waiting['message']}" if waiting.get("message") else ""))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return (f"the pod was never scheduled: {condition.get('reason') or 'Unschedulable'}"
                    + (f": {condition['message']}" if condition.get("message") else ""))
    if status.get("reason"):
        message = f": {status['message']}" if status.get("message") else ""
        return f"the pod failed: {status['reason']}{message}"
    return f"the pod ended in phase {status.get('phase') or 'Unknown'}"


def _limit(pod: Mapping[str, Any], container: str, resource: str) -> str | None:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return ((spec.get("resources") or {}).get("limits") or {}).get(resource)
    return None
