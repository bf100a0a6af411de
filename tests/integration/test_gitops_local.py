"""The local GitOps provider and the merge trigger, on real git repositories."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from embedded.gitops_repo import PLATFORM, REVIEWER, create_gitops_repo, git, promotion_branches
from model_lifecycle.gitops import ChangeRequest, GitOpsError
from model_lifecycle.gitops.local import BOT_EMAIL, LocalGitProvider
from model_lifecycle.specs import PROJECT_ROOT, GitOps
from model_lifecycle.triggers.merge import MergeTrigger
from tests.support.triggers import first_event

MANIFEST = "apps/demo/isvc.yaml"
EXAMPLE = PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "gitops"
    create_gitops_repo(path, EXAMPLE, MANIFEST)
    return path


def request(content: str = "changed: true\n") -> ChangeRequest:
    return ChangeRequest(branch="model-lifecycle/models/demo/demo-v1", base_branch="main", path=MANIFEST,
                         edit=lambda _: content, title="Promote demo v1",
                         body="| metric | value |\n| --- | --- |\n| accuracy | 0.97 |")


def test_open_change_commits_only_the_manifest_and_leaves_the_checkout_alone(repo: Path) -> None:
    (repo / "notes.txt").write_text("a reviewer's uncommitted work\n")
    head_before = git(repo, "rev-parse", "HEAD")
    ref = LocalGitProvider(repo).propose(request()).change
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "status", "--porcelain") == "?? notes.txt\n"
    assert git(repo, "diff", "--name-only", "main", ref.branch).split() == [MANIFEST]
    assert git(repo, "show", f"{ref.branch}:{MANIFEST}") == "changed: true\n"
    assert git(repo, "rev-list", "--count", f"main..{ref.branch}").strip() == "1"
    message = git(repo, "log", "-1", "--format=%B", ref.branch)
    assert message.startswith("Promote demo v1\n\n| metric | value |")
    assert git(repo, "log", "-1", "--format=%ae", ref.branch).strip() == BOT_EMAIL
    assert ref.head_sha == git(repo, "rev-parse", ref.branch).strip()
    assert ref.url == f"{repo.as_uri()}#{ref.branch}"


def test_opening_again_adopts_the_branch(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    first = provider.propose(request()).change
    again = provider.propose(request(content="something else\n")).change
    assert again == first
    assert git(repo, "rev-list", "--count", f"main..{first.branch}").strip() == "1"


def test_concurrent_attempts_create_one_branch(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    results = []
    threads = [threading.Thread(target=lambda: results.append(provider.propose(request()).change))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({ref.head_sha for ref in results}) == 1
    assert git(repo, "rev-parse", request().branch).strip() == results[0].head_sha


def test_base_branch_moving_while_the_change_is_written_rebuilds_it(repo: Path) -> None:
    read = []

    def edit(manifest: str) -> str:
        if not read:  # someone pushes to main between the read and the write
            (repo / "other.txt").write_text("x")
            git(repo, "add", "other.txt")
            git(repo, "commit", "--quiet", "-m", "Concurrent", env=PLATFORM)
        read.append(manifest)
        return "changed: true\n"

    ref = LocalGitProvider(repo).propose(replace(request(), edit=edit)).change
    assert len(read) == 2
    assert git(repo, "rev-parse", f"{ref.branch}^").strip() == git(repo, "rev-parse", "main").strip()


def test_a_newer_version_deletes_the_branches_of_older_ones(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    v1 = provider.propose(request()).change
    v2 = provider.propose(replace(request(), branch="model-lifecycle/models/demo/demo-v2")).change
    assert provider.close_superseded(v2, "model-lifecycle/models/demo/") == [v1]
    assert promotion_branches(repo) == [v2.branch]
    assert provider.change_status(v1).state == "closed"


def test_status_follows_the_reviewer(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    ref = provider.propose(request()).change
    assert provider.change_status(ref).state == "open"
    git(repo, "merge", "--no-ff", "--quiet", "-m", "Merge it", ref.branch, env=REVIEWER)
    merged = provider.change_status(ref)
    assert merged.state == "merged"
    assert merged.merge_sha == git(repo, "rev-parse", "main").strip()
    assert merged.merged_by == "Demo Reviewer <reviewer@example.com>"
    git(repo, "branch", "-D", ref.branch)
    assert provider.change_status(ref) == merged  # deleting a merged branch changes nothing


def test_later_commits_on_main_do_not_change_the_merge_commit(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    ref = provider.propose(request()).change
    git(repo, "merge", "--no-ff", "--quiet", "-m", "Merge it", ref.branch, env=REVIEWER)
    merge_sha = git(repo, "rev-parse", "main").strip()
    (repo / "other.txt").write_text("x")
    git(repo, "add", "other.txt")
    git(repo, "commit", "--quiet", "-m", "Unrelated", env=PLATFORM)
    assert provider.change_status(ref).merge_sha == merge_sha


def test_fast_forward_merge_names_the_merger_from_the_reflog(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    ref = provider.propose(request()).change
    git(repo, "merge", "--ff-only", "--quiet", ref.branch, env=REVIEWER)
    status = provider.change_status(ref)
    assert (status.state, status.merge_sha) == ("merged", ref.head_sha)
    assert status.merged_by == "Demo Reviewer <reviewer@example.com>"
    assert dt.datetime.fromisoformat(status.merged_at).tzinfo is not None


def test_branch_deleted_without_merge_is_closed(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    ref = provider.propose(request()).change
    git(repo, "branch", "-D", ref.branch)
    status = provider.change_status(ref)
    assert status.state == "closed"
    assert "was deleted without being merged into main" in status.detail


def test_fixups_pushed_to_the_branch_are_followed(repo: Path) -> None:
    provider = LocalGitProvider(repo)
    ref = provider.propose(request()).change
    git(repo, "checkout", "--quiet", ref.branch)
    (repo / MANIFEST).write_text("changed: true\nfixed: true\n")
    git(repo, "commit", "--quiet", "-am", "Reviewer fixup", env=REVIEWER)
    git(repo, "checkout", "--quiet", "main")
    git(repo, "merge", "--no-ff", "--quiet", "-m", "Merge", ref.branch, env=REVIEWER)
    assert provider.change_status(ref).state == "merged"


def test_errors_name_the_repository_and_what_is_missing(repo: Path, tmp_path: Path) -> None:
    provider = LocalGitProvider(repo)
    with pytest.raises(GitOpsError, match="apps/missing.yaml does not exist at main"):
        provider.read_file("main", "apps/missing.yaml")
    with pytest.raises(GitOpsError, match="no branch or commit 'release'"):
        provider.read_file("release", MANIFEST)
    with pytest.raises(GitOpsError, match="base branch 'release' does not exist"):
        provider.open_change(replace(request(), base_branch="release"), "0" * 40, "changed: true\n")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitOpsError, match="is not a git repository"):
        LocalGitProvider(tmp_path / "plain")


def trigger_for(repo: Path, ref_dict: dict, seconds: float) -> MergeTrigger:
    gitops = GitOps(repository=str(repo), manifest_path=MANIFEST,
                    inference_service={"name": "demo", "namespace": "models"})
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return MergeTrigger(gitops=gitops.model_dump(mode="json"), change=ref_dict,
                        deadline=deadline.isoformat(), poll_interval=0.2)


def test_trigger_waits_for_the_merge(repo: Path) -> None:
    ref = LocalGitProvider(repo).propose(request()).change
    timer = threading.Timer(1.0, lambda: git(repo, "merge", "--no-ff", "--quiet", "-m", "Merge",
                                             ref.branch, env=REVIEWER))
    timer.start()
    event = first_event(trigger_for(repo, ref.to_xcom(), seconds=20))
    assert event["state"] == "merged"
    assert event["status"]["merge_sha"] == git(repo, "rev-parse", "main").strip()


def test_trigger_reports_a_deleted_branch_and_a_timeout(repo: Path) -> None:
    ref = LocalGitProvider(repo).propose(request()).change
    assert first_event(trigger_for(repo, ref.to_xcom(), seconds=0.5))["state"] == "timeout"
    git(repo, "branch", "-D", ref.branch)
    assert first_event(trigger_for(repo, ref.to_xcom(), seconds=20))["state"] == "closed"


def test_trigger_serialises_to_what_recreates_it(repo: Path) -> None:
    ref = LocalGitProvider(repo).propose(request()).change
    trigger = trigger_for(repo, ref.to_xcom(), seconds=5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "model_lifecycle.triggers.merge.MergeTrigger"
    assert MergeTrigger(**kwargs).serialize() == (classpath, kwargs)
