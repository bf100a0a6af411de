"""GitHub's REST API, reached through an Airflow connection (``github_default``).

The connection's password (or extra ``token``) is the token: a fine-grained token, or a GitHub App
installation token, that may write the repository's contents and pull requests. Its host is the API base
URL: empty for https://api.github.com, ``https://HOST/api/v3`` for GitHub Enterprise Server.
"""

from __future__ import annotations

from airflow.sdk import BaseHook

from model_lifecycle.gitops.github import GitHubAccess


class GitHubHook(BaseHook):
    conn_name_attr = "github_conn_id"
    default_conn_name = "github_default"
    conn_type = "github"
    hook_name = "GitHub (model lifecycle)"

    def __init__(self, github_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.github_conn_id = github_conn_id

    def access(self) -> GitHubAccess:
        return GitHubAccess.from_connection(self.get_connection(self.github_conn_id))

    @classmethod
    async def aaccess(cls, github_conn_id: str = default_conn_name) -> GitHubAccess:
        """The same, from the triggerer's event loop (the connection is fetched without blocking it)."""
        return GitHubAccess.from_connection(await cls.aget_connection(github_conn_id))

