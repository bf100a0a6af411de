"""GitOps providers behind one interface; the spec's ``gitops.provider`` chooses one."""

from __future__ import annotations

from model_lifecycle.gitops.base import ChangeRef, ChangeRequest, ChangeStatus, GitOpsError, GitOpsProvider
from model_lifecycle.specs import GitOps

__all__ = ["ChangeRef", "ChangeRequest", "ChangeStatus", "GitOpsError", "GitOpsProvider", "provider_for"]


def provider_for(gitops: GitOps) -> GitOpsProvider:
    from model_lifecycle.gitops.local import LocalGitProvider

    return LocalGitProvider(gitops.repository_path())
