"""GitOps providers behind one interface; the spec's ``gitops.provider`` chooses one."""

from __future__ import annotations

from model_lifecycle.gitops.base import (
    BaseMovedError,
    ChangeRequest,
    ChangeStatus,
    GitOpsError,
    GitOpsProvider,
    MergeRefused,
    RetryLater,
)
from model_lifecycle.results import ChangeRef, Proposal
from model_lifecycle.specs import GitOps

__all__ = ["BaseMovedError", "ChangeRef", "ChangeRequest", "ChangeStatus", "GitOpsError", "GitOpsProvider",
           "MergeRefused", "Proposal", "RetryLater", "provider_for", "provider_for_triggerer"]


def provider_for(gitops: GitOps) -> GitOpsProvider:
    """For tasks: the connection is read as tasks read it, and short rate-limit waits are waited out."""
    if gitops.provider == "github":
        from model_lifecycle.gitops.github import GitHubProvider
        from model_lifecycle.hooks.github import GitHubHook

        return GitHubProvider(gitops.repository, GitHubHook(gitops.connection_id).get_conn())
    from model_lifecycle.gitops.local import LocalGitProvider

    return LocalGitProvider(gitops.repository_path())


async def provider_for_triggerer(gitops: GitOps) -> GitOpsProvider:
    """For triggers: the connection is read without blocking the event loop, and every wait is left to
    the caller (``RetryLater``), which waits with asyncio instead of holding a thread."""
    if gitops.provider == "github":
        from model_lifecycle.gitops.github import GitHubProvider
        from model_lifecycle.hooks.github import GitHubHook

        access = await GitHubHook(gitops.connection_id).aget_conn()
        return GitHubProvider(gitops.repository, access, max_inline_wait=0)
    return provider_for(gitops)
