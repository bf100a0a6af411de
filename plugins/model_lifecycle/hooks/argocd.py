"""Argo CD's API through connection ``argocd_default``: which revision an Application has synced.

The connection is the API server's address, e.g. ``AIRFLOW_CONN_ARGOCD_DEFAULT=https://:<token>@argocd.example.com``;
its password is an API token with read access to the Application. It is optional: without it, the
rollout is judged from the InferenceService alone.
"""

from __future__ import annotations

from airflow.sdk import BaseHook

from model_lifecycle.hooks.http import connection_url


class ArgoCdHook(BaseHook):
    conn_name_attr = "argocd_conn_id"
    default_conn_name = "argocd_default"
    conn_type = "http"
    hook_name = "Argo CD (model lifecycle)"

    def __init__(self, argocd_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.argocd_conn_id = argocd_conn_id

    @classmethod
    def configured(cls, argocd_conn_id: str = default_conn_name) -> bool:
        """Whether the connection exists (then the rollout check waits for Argo CD's sync first)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            cls.get_connection(argocd_conn_id)
        except AirflowNotFoundException:
            return False
        return True

    async def asynced_revision(self, application: str) -> tuple[str | None, str | None]:
        """(synced revision, sync status) of the Application, from the triggerer's event loop."""
        import aiohttp

        connection = await self.aget_connection(self.argocd_conn_id)
        base = connection_url(connection, what="Argo CD's API", default_scheme="https")
        headers = {"Authorization": f"Bearer {connection.password}"} if connection.password else {}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{base.rstrip('/')}/api/v1/applications/{application}") as response:
                if response.status != 200:
                    raise RuntimeError(f"Argo CD answered HTTP {response.status} for Application "
                                       f"{application!r} ({self.argocd_conn_id})")
                sync = ((await response.json()).get("status") or {}).get("sync") or {}
        revisions = sync.get("revisions") or [sync.get("revision")]
        return (revisions[0] if revisions else None), sync.get("status")
