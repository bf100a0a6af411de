"""Training on Kubernetes: the cncf provider's KubernetesPodOperator, deferrable, with the environment
contract, credentials from Secrets, and a failure message that names the reason.

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
from model_lifecycle.operators.training.common import contract_environment, reusable_run
from model_lifecycle.pods import pod_failure_reason
from model_lifecycle.results import Plan
from model_lifecycle.specs import PROJECT_ROOT, ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

POD_TEMPLATE = PROJECT_ROOT / "include" / "kubernetes" / "training-pod-template.yaml"
MODEL_LABEL = "model-lifecycle/model"


class KubernetesTrainingOperator(ModelLifecycleOperator, KubernetesPodOperator):
    """One training pod per attempt, unless MLflow already holds a finished run for this window.

    Succeeded pods are deleted, failed ones kept for debugging. The trainer's result is found in
    MLflow (no XCom sidecar). The pod carries the labels Airflow gives it (dag_id, task_id, run_id,
    try_number) and the model's name."""

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "plan")
    ui_color = "#fce8b2"

    def __init__(self, *, spec: ModelSpec, plan: Plan | XComArg, mlflow_conn_id: str = MLFLOW_CONN_ID,
                 kubernetes_conn_id: str = "kubernetes_default", **kwargs: Any) -> None:
        pod = spec.training.kubernetes
        super().__init__(
            kubernetes_conn_id=kubernetes_conn_id,
            namespace=pod.namespace,
            name=f"train-{spec.name}",
            image=spec.training.image,
            cmds=list(spec.training.command),
            labels={MODEL_LABEL: spec.name, "app.kubernetes.io/part-of": "model-lifecycle"},
            container_resources=k8s.V1ResourceRequirements(
                requests=spec.training.resources.requests or None,
                limits=spec.training.resources.limits or None,
            ),
            service_account_name=pod.service_account,
            node_selector=pod.node_selector or None,
            tolerations=[k8s.V1Toleration(**toleration.model_dump()) for toleration in pod.tolerations],
            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=secret))
                      for secret in pod.secrets],
            pod_template_file=str(POD_TEMPLATE),
            deferrable=True,
            poll_interval=pod.poll_interval_seconds,
            startup_timeout_seconds=pod.startup_timeout_seconds,
            schedule_timeout_seconds=pod.schedule_timeout_seconds,
            on_finish_action="delete_succeeded_pod",
            do_xcom_push=False,
            get_logs=True,
            log_events_on_failure=True,
            **kwargs,
        )
        self.use_spec(spec, mlflow_conn_id)
        self.plan = plan

    def execute(self, context: Context) -> str | None:
        window = Plan.from_xcom(self.plan).window
        earlier = reusable_run(self, window)
        if earlier is not None:
            return earlier
        tracking_uri = self.spec.training.kubernetes.mlflow_tracking_uri or self.mlflow.tracking_uri
        environment = contract_environment(self, context, window, tracking_uri=tracking_uri)
        self.env_vars = [k8s.V1EnvVar(name=name, value=value) for name, value in environment.items()]
        return super().execute(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> str:
        try:
            super().trigger_reentry(context, event)
        except AirflowException as error:
            raise AirflowException(self._failure_message(event) or str(error)) from error
        run = self.registry.finished_run(Plan.from_xcom(self.plan).window)
        if run is None:
            raise AirflowException(
                f"training pod {event['namespace']}/{event['name']} succeeded but logged no finished "
                f"MLflow run for this window in experiment {self.spec.experiment!r}; the trainer must "
                "honour the environment contract"
            )
        return run.info.run_id

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
        return f"training pod {event['namespace']}/{event['name']} failed: {reason}"
