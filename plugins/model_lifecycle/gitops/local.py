"""GitOps on a git repository on this filesystem: a branch is the pull request, merging it is approval.

The repository may be bare or have a working tree (a reviewer's checkout): this provider writes only
objects and refs with git plumbing and a temporary index, so it never touches a working tree, an index
or a checked-out branch. The description a reviewer reads is the commit message on the branch
(``git log main..<branch>``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path

from model_lifecycle.gitops.base import (
    BaseMovedError,
    ChangeRequest,
    ChangeStatus,
    GitOpsError,
    GitOpsProvider,
)
from model_lifecycle.results import ChangeRef

log = logging.getLogger(__name__)

BOT_NAME = "Airflow model-lifecycle"
BOT_EMAIL = "model-lifecycle@airflow.local"
_ZERO_SHA = "0" * 40


class LocalGitProvider(GitOpsProvider):
    name = "local"

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        if not (repository / "HEAD").exists() and not (repository / ".git").exists():
            raise GitOpsError(f"{repository} is not a git repository (gitops.repository)")

    def url(self, branch: str) -> str:
        return f"{self.repository.as_uri()}#{branch}"

    def read_file(self, ref: str, path: str) -> tuple[str, str]:
        commit = self._resolve(ref)
        if commit is None:
            raise GitOpsError(f"{self.repository}: no branch or commit {ref!r}")
        try:
            return self._git("show", f"{commit}:{path}"), commit
        except GitOpsError:
            raise GitOpsError(f"{self.repository}: {path} does not exist at {ref} ({commit[:12]})") from None

    def adopt_change(self, request: ChangeRequest) -> ChangeRef | None:
        existing = self._resolve(f"refs/heads/{request.branch}")
        return None if existing is None else self._ref(request.branch, request.base_branch, existing)

    def open_change(self, request: ChangeRequest, base_sha: str, content: str) -> ChangeRef:
        base = self._resolve(f"refs/heads/{request.base_branch}")
        if base is None:
            raise GitOpsError(f"{self.repository}: base branch {request.base_branch!r} does not exist")
        if base != base_sha:
            raise BaseMovedError(f"{request.base_branch} moved from {base_sha[:12]} to {base[:12]}")
        commit = self._commit_file(base, request, content)
        try:
            # Creates the branch only if it does not exist yet: a concurrent attempt cannot be overwritten.
            self._git("update-ref", f"refs/heads/{request.branch}", commit, _ZERO_SHA)
        except GitOpsError:
            winner = self._resolve(f"refs/heads/{request.branch}")
            if winner is None:
                raise
            if not self._is_ancestor(winner, base):
                log.info("Branch %s was created concurrently at %s; adopting it.", request.branch,
                         winner[:12])
                return self._ref(request.branch, request.base_branch, winner)
            # Left by an earlier proposal of this version that was merged and later replaced: moved
            # (only if nobody moved it meanwhile) to the new proposal.
            self._git("update-ref", f"refs/heads/{request.branch}", commit, winner)
        log.info("Opened branch %s at %s on top of %s %s.", request.branch, commit[:12],
                 request.base_branch, base[:12])
        return self._ref(request.branch, request.base_branch, commit)

    def open_changes(self, branch_prefix: str, base_branch: str) -> list[ChangeRef]:
        listing = self._git("for-each-ref", "--format=%(refname:short) %(objectname)",
                            f"refs/heads/{branch_prefix}")
        base = self._resolve(f"refs/heads/{base_branch}")
        return [self._ref(branch, base_branch, head) for branch, head in
                (line.split() for line in listing.splitlines())
                if base is None or not self._is_ancestor(head, base)]

    def close_change(self, ref: ChangeRef, comment: str) -> None:
        head = self._resolve(f"refs/heads/{ref.branch}")
        if head is None:
            return
        # A branch has nowhere to hold a comment: the log keeps it.
        log.info("Deleting branch %s at %s without merging it: %s", ref.branch, head[:12], comment)
        self._git("update-ref", "-d", f"refs/heads/{ref.branch}", head)

    def change_status(self, ref: ChangeRef) -> ChangeStatus:
        base = self._resolve(f"refs/heads/{ref.base_branch}")
        if base is None:
            raise GitOpsError(f"{self.repository}: base branch {ref.base_branch!r} does not exist")
        branch_head = self._resolve(f"refs/heads/{ref.branch}")
        # A reviewer may push fixups to the branch: its current head is what gets merged.
        head = branch_head or ref.head_sha
        if self._is_ancestor(head, base):
            merge_sha = self._merge_commit(head, base)
            merged_by, merged_at = self._merger(merge_sha, head, ref.base_branch)
            # Merging the branch is the approval: whoever merged it approved it.
            return ChangeStatus(state="merged", merge_sha=merge_sha,
                                merged_by=merged_by or "unknown (fast-forward merge)", merged_at=merged_at,
                                approved_by=(merged_by,) if merged_by else None,
                                detail=f"{head[:12]} is on {ref.base_branch}")
        if branch_head is None:
            return ChangeStatus(
                state="closed",
                closed_by="unknown (the branch was deleted)",
                detail=f"branch {ref.branch} was deleted without being merged into {ref.base_branch}",
            )
        return ChangeStatus(state="open", detail=f"{ref.branch} at {head[:12]} is not merged yet")

    # Plumbing ---------------------------------------------------------------------------------

    def _ref(self, branch: str, base_branch: str, head: str) -> ChangeRef:
        return ChangeRef(provider=self.name, branch=branch, base_branch=base_branch, head_sha=head,
                         url=self.url(branch))

    def _commit_file(self, base: str, request: ChangeRequest, content: str) -> str:
        blob = self._git("hash-object", "-w", "--stdin", input=content).strip()
        mode = self._git("ls-tree", base, "--", request.path).split(" ", 1)[0] or "100644"
        with tempfile.TemporaryDirectory() as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            self._git("read-tree", base, env=env)
            self._git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{request.path}", env=env)
            tree = self._git("write-tree", env=env).strip()
        identity = {
            "GIT_AUTHOR_NAME": BOT_NAME, "GIT_AUTHOR_EMAIL": BOT_EMAIL,
            "GIT_COMMITTER_NAME": BOT_NAME, "GIT_COMMITTER_EMAIL": BOT_EMAIL,
        }
        message = f"{request.title}\n\n{request.body}"
        return self._git("commit-tree", tree, "-p", base, "-F", "-", input=message, env=identity).strip()

    def _merge_commit(self, head: str, base: str) -> str:
        """The commit on the base branch's first-parent line that brought ``head`` in: a merge commit,
        or ``head`` itself after a fast-forward."""
        descendants = self._git("rev-list", "--first-parent", "--ancestry-path", "--reverse",
                                f"{head}..{base}").split()
        if not descendants:
            return head
        first = descendants[0]
        first_parent = self._git("rev-parse", f"{first}^1").strip()
        return head if first_parent == head else first

    def _merger(self, merge_sha: str, head: str, base_branch: str) -> tuple[str | None, str]:
        """Who merged (None when git cannot tell), and when."""
        if merge_sha != head:
            who, when = self._git("log", "-1", "--format=%cn <%ce>%x00%cI", merge_sha).strip().split("\0")
            return who, when
        # A fast-forward creates no commit of the merger's; the base branch's reflog, where there is
        # one, records who moved it.
        try:
            entries = self._git("reflog", "show", "--date=iso-strict", "--format=%H%x00%gn <%ge>%x00%gd",
                                f"refs/heads/{base_branch}").splitlines()
        except GitOpsError:
            entries = []
        for entry in reversed(entries):
            sha, who, selector = entry.split("\0")
            if sha == head:
                return who, selector[selector.find("{") + 1 : -1]
        when = self._git("log", "-1", "--format=%cI", head).strip()
        return None, when

    def _resolve(self, ref: str) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
        except GitOpsError:
            return None

    def _is_ancestor(self, commit: str, of: str) -> bool:
        result = subprocess.run(
            ["git", "-C", str(self.repository), "merge-base", "--is-ancestor", commit, of],
            capture_output=True, text=True,
        )
        if result.returncode not in (0, 1):
            raise GitOpsError(f"git merge-base {commit} {of} failed in {self.repository}: "
                              f"{result.stderr.strip()}")
        return result.returncode == 0

    def _git(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", "-C", str(self.repository), *args],
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
        if result.returncode != 0:
            raise GitOpsError(f"git {args[0]} failed in {self.repository}: {result.stderr.strip()}")
        return result.stdout
