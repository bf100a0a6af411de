"""Runner ``kubernetes`` of the ``mlflow_gc`` DAG: each step is a pod running the gc image (the MLflow
image with this package's gc modules, ``include/mlflow_gc/Dockerfile``), the seed's CronJob moved
into Airflow where it is visible and retriable.

The backend store URI reaches the pod only as a ``secretKeyRef`` on the configured Secret: it is never
in the pod spec, nor in Airflow. ``MLFLOW_TRACKING_URI`` is set so proxied artifact URIs resolve. The
step's JSON result comes back through the XCom sidecar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from model_lifecycle.gc import BACKEND_STORE_URI_ENV, GC_MODULE, TRACKING_URI_ENV
from model_lifecycle.gc.config import GcConfig
from model_lifecycle.gc.operators.common import MlflowGcStep, Step

if TYPE_CHECKING:
    from airflow.sdk import Context

XCOM_RESULT = "/airflow/xcom/return.json"


class KubernetesMlflowGcOperator(MlflowGcStep, KubernetesPodOperator):
    template_fields = (*KubernetesPodOperator.template_fields, *MlflowGcStep.template_fields)

    def __init__(self, *, step: Step, config: GcConfig, report: Any = None,
                 mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        runner = config.kubernetes
        if runner is None:
            raise ValueError("runner kubernetes needs the kubernetes section of the mlflow_gc configuration")
        secret = runner.backend_store_secret
        super().__init__(
            kubernetes_conn_id=runner.conn_id,
            namespace=runner.namespace,
            image=runner.image,
            name=f"mlflow-gc-{step}",
            cmds=["python", "-m", GC_MODULE],
            arguments=[],  # from the trigger form, when the task runs (prepare_pod)
            env_vars=[k8s.V1EnvVar(name=BACKEND_STORE_URI_ENV, value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=secret.name, key=secret.key)))],
            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name))
                      for name in runner.env_from_secrets],
            service_account_name=runner.service_account,
            container_resources=k8s.V1ResourceRequirements(
                requests=runner.resources.requests or None, limits=runner.resources.limits or None),
            labels={"app.kubernetes.io/name": "mlflow-gc", "app.kubernetes.io/component": step},
            startup_timeout_seconds=runner.startup_timeout_seconds,
            do_xcom_push=True,
            get_logs=True,
            on_finish_action="delete_pod",
            **kwargs,
        )
        self.step = step
        self.config = config
        self.report = report
        self.mlflow_conn_id = mlflow_conn_id
        self._secret_env = list(self.env_vars)

    def prepare_pod(self, context: Context) -> None:
        """The step's command line and tracking URI, known only when the task runs."""
        tracking_uri = self.config.kubernetes.tracking_uri or self.tracking_uri()
        self.arguments = [*self.gc_arguments(context), "--output", XCOM_RESULT]
        self.env_vars = [*self._secret_env, k8s.V1EnvVar(name=TRACKING_URI_ENV, value=tracking_uri)]

    def execute(self, context: Context) -> dict[str, Any]:
        self.prepare_pod(context)
        return self.gc_result(context, super().execute(context))
