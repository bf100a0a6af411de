"""KServe through connection ``kubernetes_default``: reading InferenceServices and, in Standard mode, their
predictor Deployments (never writing either), and the smoke request to a served model over KServe's V1
or V2 inference protocol.

The cncf provider's hooks own the Kubernetes connection (in-cluster, ``kube_config_path`` or
``kube_config``); this hook asks them for the API client and speaks the KServe resource through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from requests import Response

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
SMOKE_TIMEOUT_SECONDS = 60


class KServeHook(BaseHook):
    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "KServe (model lifecycle)"

    def __init__(self, kubernetes_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id

    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService as the API serves it, or None when it does not exist (yet)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from kubernetes.client.exceptions import ApiException

        try:
            return KubernetesHook(conn_id=self.kubernetes_conn_id).get_custom_object(
                group=GROUP, version=VERSION, plural=PLURAL, name=name, namespace=namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def aget_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The same, from the triggerer's event loop."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio.client import CustomObjectsApi
        from kubernetes_asyncio.client.exceptions import ApiException

        async with AsyncKubernetesHook(conn_id=self.kubernetes_conn_id).get_conn() as api_client:
            try:
                return await CustomObjectsApi(api_client).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

    async def aget_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment as the API serves it (camelCase fields), or None when it does not exist (yet)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio.client import AppsV1Api
        from kubernetes_asyncio.client.exceptions import ApiException

        async with AsyncKubernetesHook(conn_id=self.kubernetes_conn_id).get_conn() as api_client:
            try:
                deployment = await AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            return api_client.sanitize_for_serialization(deployment)

    @staticmethod
    def infer(base_url: str, model: str, protocol: str, body: dict[str, Any]) -> Response:
        """One inference request to the model served at ``base_url`` (V1 ``:predict`` or V2 ``infer``)."""
        import requests

        from model_lifecycle.rollout import inference_path

        return requests.post(f"{base_url.rstrip('/')}{inference_path(protocol, model)}", json=body,
                             timeout=SMOKE_TIMEOUT_SECONDS)
