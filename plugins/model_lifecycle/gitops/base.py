"""One interface for every GitOps provider: read a file on a branch, open a change, report its state.

A *change* is what the provider calls a pull request (GitHub) or a branch (local git). Values that
cross task boundaries (``ChangeRef``, ``ChangeStatus``) are small and JSON-serialisable, for XCom and
for trigger arguments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Literal


class GitOpsError(RuntimeError):
    """The repository refused or failed an operation; the message says which and why."""


@dataclass(frozen=True)
class ChangeRequest:
    branch: str
    base_branch: str
    path: str
    content: str
    title: str
    body: str
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeRef:
    """Identifies an opened change; ``head_sha`` is the commit that carries the manifest edit."""

    provider: str
    branch: str
    base_branch: str
    head_sha: str
    url: str
    number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeRef:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class ChangeStatus:
    state: Literal["open", "merged", "closed"]
    merge_sha: str | None = None
    merged_by: str | None = None
    merged_at: str | None = None
    closed_by: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GitOpsProvider(ABC):
    name: str

    @abstractmethod
    def read_file(self, ref: str, path: str) -> tuple[str, str]:
        """The file's text at ``ref`` (a branch or a commit), and the commit it was read from."""

    @abstractmethod
    def open_change(self, request: ChangeRequest) -> ChangeRef:
        """Open the change, or adopt the one already open for the same branch."""

    @abstractmethod
    def change_status(self, ref: ChangeRef) -> ChangeStatus:
        """Whether the change is open, merged into its base branch, or closed without merge."""
