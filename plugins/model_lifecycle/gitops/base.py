"""One interface for every GitOps provider: read a file on a branch, propose a change, report its state.

A *change* is what the provider calls a pull request (GitHub) or a branch (local git). What crosses
task boundaries is small and JSON-serialisable: ``results.ChangeRef`` and ``results.Proposal`` in XCom,
``ChangeStatus`` in the merge trigger's events.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from model_lifecycle.policy import superseded_by
from model_lifecycle.results import ChangeRef, Proposal

log = logging.getLogger(__name__)

# How often a change is rebuilt when its base branch keeps moving while it is being written.
MAX_REBUILDS = 5


class GitOpsError(RuntimeError):
    """The repository refused or failed an operation; the message says which and why."""


class BaseMovedError(GitOpsError):
    """The base branch moved after the file was read: the change must be rebuilt on the new base."""


class RetryLater(GitOpsError):
    """The service asks to wait (rate limit, server error): ask again after ``seconds``."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"{reason}; retry in {seconds:.0f} s")
        self.seconds = seconds
        self.reason = reason


class MergeRefused(GitOpsError):
    """The repository will not let this project merge the change itself; waiting does not help."""


@dataclass(frozen=True)
class ChangeRequest:
    """A change to one file: ``edit`` turns the file as the base branch has it into the proposed text
    (it runs again if the base branch moves while the change is written)."""

    branch: str
    base_branch: str
    path: str
    edit: Callable[[str], str]
    title: str
    body: str
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    team_reviewers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeStatus:
    """Where a change stands. ``mergeable``: its checks have passed and it could be merged now.
    ``approved_by``: who approved a merged change; empty when nobody did, None when it is not known."""

    state: Literal["open", "merged", "closed"]
    merge_sha: str | None = None
    merged_by: str | None = None
    merged_at: str | None = None
    approved_by: tuple[str, ...] | None = None
    closed_by: str | None = None
    head_sha: str | None = None
    mergeable: bool = False
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "approved_by": None if self.approved_by is None else list(self.approved_by)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeStatus:
        values = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        approved = values.get("approved_by")
        return cls(**{**values, "approved_by": None if approved is None else tuple(approved)})


class GitOpsProvider(ABC):
    name: str

    def propose(self, request: ChangeRequest) -> Proposal:
        """Adopt the open change for ``request.branch``, or the merged one while the base branch still
        carries it; else, unless the base branch already has the edit, open one. A merged change the
        base branch no longer carries (a later version replaced it, and this one is proposed again, as
        in a rollback) is history, not an answer. A base branch that moves while the change is written
        is read again and the change rebuilt on it."""
        for _ in range(MAX_REBUILDS):
            current, base_sha = self.read_file(request.base_branch, request.path)
            edited = request.edit(current)
            existing = self.adopt_change(request)
            if existing is not None:
                state = self.change_status(existing).state
                if state == "open" or (state == "merged" and edited == current):
                    log.info("Adopting the existing change %s for %s.", existing.url, request.branch)
                    return Proposal(base_sha=base_sha, change=existing)
            if edited == current:
                return Proposal(base_sha=base_sha, change=None)
            try:
                return Proposal(base_sha=base_sha, change=self.open_change(request, base_sha, edited))
            except BaseMovedError as moved:
                log.info("%s; rebuilding the change on the new base.", moved)
        raise GitOpsError(f"{request.base_branch} moved {MAX_REBUILDS} times while the change for "
                          f"{request.branch} was being written; try again later")

    def check(self, ref: ChangeRef, *, auto_merge: bool = False) -> ChangeStatus:
        """One look at the change; with ``auto_merge``, a change whose checks have passed is merged."""
        status = self.change_status(ref)
        if auto_merge and status.state == "open" and status.mergeable and status.head_sha:
            if self.merge(ref, status.head_sha):
                status = self.change_status(ref)
        return status

    def close_superseded(self, change: ChangeRef, branch_prefix: str) -> list[ChangeRef]:
        """Close the open changes under ``branch_prefix`` that ``change`` supersedes (the same model, an
        older version), each with a comment that links ``change``; returns them."""
        candidates = {ref.branch: ref for ref in self.open_changes(branch_prefix, change.base_branch)}
        older = [candidates[branch] for branch in superseded_by(change.branch, list(candidates))]
        for ref in older:
            self.close_change(ref, f"Superseded by {change.url}, which proposes a newer version.")
        return older

    @abstractmethod
    def read_file(self, ref: str, path: str) -> tuple[str, str]:
        """The file's text at ``ref`` (a branch or a commit), and the commit it was read from."""

    @abstractmethod
    def adopt_change(self, request: ChangeRequest) -> ChangeRef | None:
        """The open or merged change for ``request.branch``, if there is one."""

    @abstractmethod
    def open_change(self, request: ChangeRequest, base_sha: str, content: str) -> ChangeRef:
        """Open a change that sets ``request.path`` to ``content`` on top of ``base_sha``; raises
        ``BaseMovedError`` when the base branch is no longer there."""

    @abstractmethod
    def change_status(self, ref: ChangeRef) -> ChangeStatus:
        """Whether the change is open, merged into its base branch, or closed without merge."""

    @abstractmethod
    def open_changes(self, branch_prefix: str, base_branch: str) -> list[ChangeRef]:
        """The open changes into ``base_branch`` whose branch starts with ``branch_prefix``."""

    @abstractmethod
    def close_change(self, ref: ChangeRef, comment: str) -> None:
        """Close the change without merging it, saying why in ``comment``."""

    def merge(self, ref: ChangeRef, head_sha: str) -> bool:
        """Merge the change at ``head_sha``; False when it cannot be merged yet."""
        raise MergeRefused(f"the {self.name} provider does not merge changes itself (gitops.auto_merge)")
