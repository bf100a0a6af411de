"""Why a training pod failed, named from the pod object."""

from __future__ import annotations

from typing import Any

from model_lifecycle.pods import pod_failure_reason


def pod(*, container_state: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None,
        phase: str = "Failed", limits: dict[str, str] | None = None, **status: Any) -> dict[str, Any]:
    statuses = [{"name": "base", "image": "trainer:1", "imageID": "", "ready": False, "restartCount": 0,
                 "state": container_state}] if container_state else []
    return {
        "metadata": {"name": "train-demo-x", "namespace": "ml-training"},
        "spec": {"containers": [{"name": "base", "image": "trainer:1",
                                 "resources": {"limits": limits or {}}}]},
        "status": {"phase": phase, "containerStatuses": statuses, "conditions": conditions or [], **status},
    }


def test_non_zero_exit_names_the_code_and_message() -> None:
    failed = pod(container_state={"terminated": {"exitCode": 3, "reason": "Error",
                                                 "message": "ValueError: the window holds 12 samples\n"}})
    assert pod_failure_reason(failed) == ("container base exited with code 3 (Error): "
                                          "ValueError: the window holds 12 samples")


def test_oom_kill_names_the_limit() -> None:
    killed = pod(container_state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                 limits={"memory": "128Mi"})
    assert pod_failure_reason(killed) == ("container base was OOMKilled (exit code 137): it needed more "
                                          "memory than its limit of 128Mi")


def test_image_pull_failure_names_the_image() -> None:
    pending = pod(phase="Pending", container_state={"waiting": {
        "reason": "ErrImagePull", "message": 'Failed to pull image "trainer:1": not found'}})
    assert pod_failure_reason(pending) == ("image 'trainer:1' cannot be pulled: ErrImagePull: "
                                           'Failed to pull image "trainer:1": not found')


def test_missing_secret_names_it() -> None:
    pending = pod(phase="Pending", container_state={"waiting": {
        "reason": "CreateContainerConfigError", "message": 'secret "mlflow-credentials" not found'}})
    assert pod_failure_reason(pending) == ('container base cannot be created: CreateContainerConfigError: '
                                           'secret "mlflow-credentials" not found')


def test_never_scheduled_names_the_scheduler_message() -> None:
    pending = pod(phase="Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}])
    assert pod_failure_reason(pending) == (
        "the pod was never scheduled: Unschedulable: 0/3 nodes are available: 3 node(s) didn't match "
        "Pod's node affinity/selector.")


def test_eviction_and_the_unexplained() -> None:
    evicted = pod(reason="Evicted", message="The node was low on resource: memory.")
    assert pod_failure_reason(evicted) == "the pod failed: Evicted: The node was low on resource: memory."
    assert pod_failure_reason(pod(phase="Unknown")) == "the pod ended in phase Unknown"
