"""The local GitOps repository, and a reviewer who merges (or rejects) promotion branches."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from embedded.polling import PollingThread

BRANCH_PREFIX = "model-lifecycle/"
REVIEWER = {"GIT_AUTHOR_NAME": "Demo Reviewer", "GIT_AUTHOR_EMAIL": "reviewer@example.com",
            "GIT_COMMITTER_NAME": "Demo Reviewer", "GIT_COMMITTER_EMAIL": "reviewer@example.com"}
PLATFORM = {"GIT_AUTHOR_NAME": "Platform Team", "GIT_AUTHOR_EMAIL": "platform@example.com",
            "GIT_COMMITTER_NAME": "Platform Team", "GIT_COMMITTER_EMAIL": "platform@example.com"}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout


def create_gitops_repo(repo: Path, manifest: Path, manifest_path: str, branch: str = "main") -> None:
    """A repository with one commit: the InferenceService manifest at ``manifest_path``."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "--quiet", f"--initial-branch={branch}")
    git(repo, "config", "core.logAllRefUpdates", "true")
    target = repo / manifest_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest, target)
    git(repo, "add", manifest_path)
    git(repo, "commit", "--quiet", "-m", "Add the InferenceService", env=PLATFORM)


def promotion_branches(repo: Path) -> list[str]:
    listing = git(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}")
    return listing.split()


class Reviewer(PollingThread):
    """Watches the repository for promotion branches and acts on each as a reviewer would.

    ``decide(branch)`` returns ``"merge"`` (merge commit, then delete the branch, as a pull request
    merge does), ``"delete"`` (reject: delete the branch unmerged) or ``"leave"`` (leave it open)."""

    def __init__(self, repo: Path, base: str = "main", *, decide: Callable[[str], str] = lambda _: "merge",
                 delay: float = 1.0, say: Callable[[str], None] = print) -> None:
        super().__init__(name="reviewer", interval=0.5)
        self.repo = repo
        self.base = base
        self.decide = decide
        self.delay = delay
        self.say = say
        self.handled: list[tuple[str, str]] = []
        # A branch is a new pull request when its name or its head is new: a version proposed again
        # (a rollback) reuses its branch name.
        self.seen = self._heads()

    def _heads(self) -> set[tuple[str, str]]:
        """(branch, head commit) of the promotion branches."""
        listing = git(self.repo, "for-each-ref", "--format=%(refname:short) %(objectname)",
                      f"refs/heads/{BRANCH_PREFIX}")
        return {(name, head) for name, head in (line.split(" ") for line in listing.splitlines())}

    def poll(self) -> None:
        for branch, head in sorted(self._heads()):
            if (branch, head) not in self.seen:
                self.seen.add((branch, head))
                self.review(branch)

    def review(self, branch: str) -> None:
        description = git(self.repo, "log", "--format=%B", f"{self.base}..{branch}")
        self.say(f"Reviewer: pull request {branch} is open:\n\n{description.strip()}\n")
        time.sleep(self.delay)
        action = self.decide(branch)
        if action == "merge":
            git(self.repo, "merge", "--no-ff", "--quiet", "-m", f"Merge {branch}", branch, env=REVIEWER)
            git(self.repo, "branch", "--quiet", "-D", branch)
            self.say(f"Reviewer: approved and merged {branch} into {self.base} "
                     f"({git(self.repo, 'rev-parse', '--short', self.base).strip()}), branch deleted.")
        elif action == "delete":
            git(self.repo, "branch", "--quiet", "-D", branch)
            self.say(f"Reviewer: rejected {branch}: deleted it without merging.")
        self.handled.append((branch, action))
