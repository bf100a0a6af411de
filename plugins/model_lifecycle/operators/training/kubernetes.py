"""Backend ``kubernetes``: the training image's commands run in pods with the cncf provider's
KubernetesPodOperator, deferrable, with the environment contract, credentials from Secrets, and a
failure message that names the reason.

Imported only by DAGs whose spec uses backend ``kubernetes``: the provider costs seconds to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException

from model_lifecycle.operators.base import MLFLOW_CONN_ID, ModelLifecycleOperator
from model_lifecycle.operators.training.common import ScoringJob, contract_environment, reusable_run
from model_lifecycle.pods import pod_failure_reason
from model_lifecycle.results import Plan, RegisteredVersion, Scoring
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

POD_TEMPLATE = PROJECT_ROOT / "include" / "kubernetes" / "training-pod-template.yaml"
MODEL_LABEL = "model-lifecycle/model"
SCORED_VERSIONS_XCOM = "scored_versions"


# The KubernetesPodOperator arguments that are the same for every model's pods.
POD_DEFAULTS: dict[str, Any] = {
    "pod_template_file": str(POD_TEMPLATE),
    "deferrable": True,
    "on_finish_action": "delete_succeeded_pod",
    "do_xcom_push": False,
    "get_logs": True,
    "log_events_on_failure": True,
}


def pod_arguments(spec: ModelSpec, *, name: str, command: list[str]) -> dict[str, Any]:
    """The KubernetesPodOperator arguments, and attributes, of a pod of the training image running
    ``command``: the same image, resources, placement and Secrets for every job of the model."""
    pod = spec.training.kubernetes
    return {
        "namespace": pod.namespace,
        "name": name,
        "image": spec.training.image,
        "cmds": list(command),
        "labels": {MODEL_LABEL: spec.name, "app.kubernetes.io/part-of": "model-lifecycle"},
        "container_resources": k8s.V1ResourceRequirements(
            requests=spec.training.resources.requests or None,
            limits=spec.training.resources.limits or None,
        ),
        "service_account_name": pod.service_account,
        "node_selector": pod.node_selector or None,
        "tolerations": [k8s.V1Toleration(**toleration.model_dump()) for toleration in pod.tolerations],
        "env_from": [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=secret))
                     for secret in pod.secrets],
        "poll_interval": pod.poll_interval_seconds,
        "startup_timeout_seconds": pod.startup_timeout_seconds,
        "schedule_timeout_seconds": pod.schedule_timeout_seconds,
    }


class KubernetesJobOperator(ModelLifecycleOperator, KubernetesPodOperator):
    """One pod per attempt. Succeeded pods are deleted, failed ones kept for debugging; the job's result
    is found in MLflow (no XCom sidecar). The pod carries the labels Airflow gives it (dag_id, task_id,
    run_id, try_number) and the model's name."""

    ui_color = "#fce8b2"

    def _contract(self, environment: dict[str, str]) -> None:
        self.env_vars = [k8s.V1EnvVar(name=name, value=value) for name, value in environment.items()]

    @property
    def tracking_uri(self) -> str:
        """The tracking server as pods reach it."""
        return self.spec.training.kubernetes.mlflow_tracking_uri or self.mlflow.tracking_uri

    def _pod_finished(self, context: Context, event: dict[str, Any]) -> None:
        try:
            super().trigger_reentry(context, event)
        except AirflowException as error:
            raise AirflowException(self._failure_message(event) or str(error)) from error

    def _failure_message(self, event: dict[str, Any]) -> str | None:
        """The pod's own account of the failure; a pod that never started is deleted so that it
        cannot start later, unattended (there is nothing inside it to debug)."""
        try:
            pod = self.hook.get_pod(event["name"], event["namespace"])
        except ApiException:
            return None
        reason = pod_failure_reason(self.client.api_client.sanitize_for_serialization(pod),
                                    self.base_container_name)
        if pod.status is not None and pod.status.phase == "Pending":
            self.pod_manager.delete_pod(pod)
        return f"pod {event['namespace']}/{event['name']} failed: {reason}"


class KubernetesTrainingOperator(KubernetesJobOperator):
    """The training pod, unless MLflow already holds a finished run for this window."""

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "plan")

    def __init__(self, *, spec: ModelSpec, plan: Plan | XComArg, mlflow_conn_id: str = MLFLOW_CONN_ID,
                 kubernetes_conn_id: str = "kubernetes_default", **kwargs: Any) -> None:
        super().__init__(kubernetes_conn_id=kubernetes_conn_id, **POD_DEFAULTS,
                         **pod_arguments(spec, name=f"train-{spec.name}", command=spec.training.command),
                         **kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.plan = plan

    def execute(self, context: Context) -> str | None:
        window = Plan.from_xcom(self.plan).window
        earlier = reusable_run(self, window)
        if earlier is not None:
            return earlier
        self._contract(contract_environment(self, context, window, tracking_uri=self.tracking_uri))
        return super().execute(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> str:
        self._pod_finished(context, event)
        run = self.registry.finished_run(Plan.from_xcom(self.plan).window)
        if run is None:
            raise AirflowException(
                f"training pod {event['namespace']}/{event['name']} succeeded but logged no finished "
                f"MLflow run for this window in experiment {self.spec.experiment!r}; the trainer must "
                "honour the environment contract"
            )
        return run.info.run_id


class KubernetesScoringOperator(KubernetesJobOperator):
    """The evaluation pod: the version and the ones it is compared with, scored on the evaluation
    dataset (``ScoringJob``), unless MLflow holds that comparison already. ``required=False`` (a manual
    promotion): a comparison that cannot be made is reported, not a failure.

    ``spec`` may be a template that names the model (the on-call DAG serves every model): the pod's
    image, namespace and placement are then the model's, set when the task runs."""

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "plan", "registered")

    def __init__(self, *, spec: ModelSpec | str, registered: RegisteredVersion | XComArg,
                 plan: Plan | XComArg | None = None, required: bool = True,
                 mlflow_conn_id: str = MLFLOW_CONN_ID, kubernetes_conn_id: str = "kubernetes_default",
                 **kwargs: Any) -> None:
        pod = _scoring_pod(spec) if isinstance(spec, ModelSpec) else {"name": "evaluate"}
        super().__init__(kubernetes_conn_id=kubernetes_conn_id, **POD_DEFAULTS, **pod, **kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.registered = registered
        self.plan = plan
        self.required = required

    def _job(self, context: Context, versions: dict[str, str] | None = None) -> ScoringJob:
        return ScoringJob.of(self, context, backend="kubernetes", registered=self.registered, plan=self.plan,
                             versions=versions)

    def execute(self, context: Context) -> dict[str, Any] | None:
        job = self._job(context)
        earlier = job.reusable()
        if earlier is not None:
            return self._result(context, earlier)
        self.log.info("Scoring %s.", job.describe())
        for attribute, value in _scoring_pod(self.spec).items():
            setattr(self, attribute, value)
        self._contract(job.environment(context, tracking_uri=self.tracking_uri))
        # The pod scores these versions, whatever the aliases say when it ends: Airflow keeps the XComs
        # of a try while it is deferred.
        context["ti"].xcom_push(key=SCORED_VERSIONS_XCOM, value=job.versions)
        return super().execute(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        job = self._job(context, context["ti"].xcom_pull(task_ids=self.task_id, key=SCORED_VERSIONS_XCOM))
        try:
            self._pod_finished(context, event)
        except AirflowException as error:
            if self.required:
                raise
            return self._result(context, job.unavailable(str(error)))
        return self._result(context, job.finished())

    def _result(self, context: Context, scoring: Scoring) -> dict[str, Any]:
        """The result, pushed as the task's XCom: ``do_xcom_push`` stays False, as the pod has no XCom
        sidecar, so Airflow pushes no return value of this operator."""
        context["ti"].xcom_push(key="return_value", value=scoring.to_xcom())
        return scoring.to_xcom()


def _scoring_pod(spec: ModelSpec) -> dict[str, Any]:
    return pod_arguments(spec, name=f"evaluate-{spec.name}", command=spec.evaluation.command)
