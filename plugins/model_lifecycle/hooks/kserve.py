"""Reading InferenceServices (never writing them) through connection ``kubernetes_default``, and
asking Argo CD, through connection ``argocd_default``, which revision an Application has synced.

The Argo CD connection is the API server's address, e.g.
``AIRFLOW_CONN_ARGOCD_DEFAULT=https://:<token>@argocd.example.com``; its password is an API token
with read access to the Application. Both are optional: without the connection, the rollout is
judged from the InferenceService alone.
"""

from __future__ import annotations

from typing import Any

from model_lifecycle.hooks.http import connection_url

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ARGOCD_CONN_ID = "argocd_default"


def read_inference_service(conn_id: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The InferenceService as the API serves it, or None when it does not exist (yet)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

    try:
        return KubernetesHook(conn_id=conn_id).get_custom_object(
            group=GROUP, version=VERSION, plural=PLURAL, name=name, namespace=namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


async def aread_inference_service(conn_id: str, namespace: str, name: str) -> dict[str, Any] | None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
    from kubernetes_asyncio.client import CustomObjectsApi
    from kubernetes_asyncio.client.exceptions import ApiException

    async with AsyncKubernetesHook(conn_id=conn_id).get_conn() as api_client:
        try:
            return await CustomObjectsApi(api_client).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise


def argocd_configured() -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(ARGOCD_CONN_ID)
    except AirflowNotFoundException:
        return False
    return True


async def asynced_revision(application: str) -> tuple[str | None, str | None]:
    """(synced revision, sync status) of the Argo CD Application."""
    import aiohttp
    from airflow.sdk import BaseHook

    connection = await BaseHook.aget_connection(ARGOCD_CONN_ID)
    base = connection_url(connection, what="Argo CD's API", default_scheme="https")
    headers = {"Authorization": f"Bearer {connection.password}"} if connection.password else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{base.rstrip('/')}/api/v1/applications/{application}") as response:
            if response.status != 200:
                raise RuntimeError(f"Argo CD answered HTTP {response.status} for Application "
                                   f"{application!r} ({ARGOCD_CONN_ID})")
            sync = ((await response.json()).get("status") or {}).get("sync") or {}
    revisions = sync.get("revisions") or [sync.get("revision")]
    return (revisions[0] if revisions else None), sync.get("status")
