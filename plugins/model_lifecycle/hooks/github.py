"""GitHub's REST API, reached through an Airflow connection (``github_default``).

The connection's password (or extra ``token``) is the token: a fine-grained token, or a GitHub App
installation token, that may write the repository's contents and pull requests. Its host is the API base
URL: empty for https://api.github.com, ``https://HOST/api/v3`` for GitHub Enterprise Server. The hook
hands out ``GitHubAccess``, what the GitOps provider (``gitops/github.py``) calls the API with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook

DEFAULT_API_URL = "https://api.github.com"


class GitHubConnectionError(ValueError):
    """The connection cannot be used as it is (no token); the message says what to set."""


@dataclass(frozen=True)
class GitHubAccess:
    """Where the API is and the token for it (never shown in a repr)."""

    api_url: str
    token: str = field(repr=False)

    @classmethod
    def from_connection(cls, connection: Any) -> GitHubAccess:
        """From an Airflow connection: password (or extra ``token``) is the token, host the API base URL
        (``https://api.github.com`` when empty; GitHub Enterprise: ``https://HOST/api/v3``)."""
        token = connection.password or connection.extra_dejson.get("token")
        if not token:
            raise GitHubConnectionError(
                f"connection {connection.conn_id!r} has no token: set its password (or extra.token) to a "
                "GitHub token that may write the repository's contents and pull requests"
            )
        api_url = (connection.host or DEFAULT_API_URL).rstrip("/")
        return cls(api_url=api_url if "://" in api_url else f"https://{api_url}", token=token)



class GitHubHook(BaseHook):
    conn_name_attr = "github_conn_id"
    default_conn_name = "github_default"
    conn_type = "github"
    hook_name = "GitHub (model lifecycle)"

    def __init__(self, github_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.github_conn_id = github_conn_id

    def get_conn(self) -> GitHubAccess:
        return GitHubAccess.from_connection(self.get_connection(self.github_conn_id))

    async def aget_conn(self) -> GitHubAccess:
        """The same, from the triggerer's event loop (the connection is fetched without blocking it)."""
        return GitHubAccess.from_connection(await self.aget_connection(self.github_conn_id))
