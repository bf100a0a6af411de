"""The github provider and the merge trigger against a stateful GitHub API on loopback: the real
``requests`` over HTTP, every request and response checked against GitHub's OpenAPI description (the
``github`` fixture fails the test on any mismatch)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

import pytest
import yaml

from model_lifecycle.gitops import ChangeRequest, GitOpsError, Proposal
from model_lifecycle.gitops.github import GitHubProvider
from model_lifecycle.hooks.github import GitHubAccess
from model_lifecycle.manifests import pin_model_version, read_pinned_model
from model_lifecycle.policy import promotion_branch, promotion_branch_prefix
from model_lifecycle.specs import PROJECT_ROOT, GitOps
from model_lifecycle.triggers.merge import MergeTrigger
from tests.support.github_server import BOT, FakeGitHub
from tests.support.triggers import first_event

SPEC = yaml.safe_load((PROJECT_ROOT / "include" / "models" / "demo.yaml").read_text())["gitops"]
MANIFEST = SPEC["manifest_path"]
ISVC = SPEC["inference_service"]
PREFIX = promotion_branch_prefix(namespace=ISVC["namespace"], inference_service=ISVC["name"])


def provider(github: FakeGitHub) -> GitHubProvider:
    return GitHubProvider(github.repository, GitHubAccess(api_url=github.url, token=github.token))


def pin(version: str):  # noqa: ANN201
    def edit(manifest: str) -> str:
        return pin_model_version(manifest, path=MANIFEST, name=ISVC["name"], namespace=ISVC["namespace"],
                                 storage_uri=f"s3://models/demo/{version}", registered_model="demo",
                                 version=version, run_id=f"run{version}")

    return edit


def request(version: str = "1", **changes: Any) -> ChangeRequest:
    fields: dict[str, Any] = {
        "branch": promotion_branch(namespace=ISVC["namespace"], inference_service=ISVC["name"], model="demo",
                                   version=version),
        "base_branch": "main", "path": MANIFEST, "edit": pin(version),
        "title": f"Promote demo v{version}",
        "body": f"| metric | value |\n| --- | --- |\n| accuracy | 0.9{version} |",
        "labels": ("model-promotion",), "reviewers": ("alice",), "team_reviewers": ("ml-reviewers",),
    }
    return ChangeRequest(**{**fields, **changes})


def pinned_version(github: FakeGitHub, ref: str) -> str | None:
    return read_pinned_model(github.file(ref, MANIFEST), path=MANIFEST, **ISVC).version


def calls(github: FakeGitHub, method: str, path_end: str) -> list[int]:
    return [status for sent, path, status in github.log if sent == method and path.endswith(path_end)]


def test_first_pull_request_carries_one_commit_with_the_evidence(github: FakeGitHub) -> None:
    main_before = github.branches["main"]
    proposal = provider(github).propose(request())
    change = proposal.change
    assert change is not None and proposal.base_sha == main_before
    [pull] = github.pulls_with(state="open")
    assert (change.number, change.url) == (pull.number, f"{github.html}/pull/{pull.number}")
    assert (pull.head, pull.base, pull.user) == (request().branch, "main", BOT)
    assert pull.title == "Promote demo v1" and "| accuracy | 0.91 |" in pull.body
    assert pull.labels == ["model-promotion"]
    assert (pull.reviewers, pull.teams) == (["alice"], ["ml-reviewers"])
    head = github.commits[change.head_sha]
    assert head.parents == [main_before] and github.branches[pull.head] == change.head_sha
    before = github.commits[main_before].files
    assert [path for path in head.files if head.files[path] != before.get(path)] == [MANIFEST]
    assert pinned_version(github, pull.head) == "1"
    assert "# set by the retraining DAG" in github.file(pull.head, MANIFEST)  # a round-trip edit
    assert github.branches["main"] == main_before


def test_an_open_pull_request_is_adopted_and_given_missing_labels(github: FakeGitHub) -> None:
    first = provider(github).propose(request(labels=())).change
    again = provider(github).propose(request(labels=("model-promotion", "staging")))
    assert again.change == first
    [pull] = github.pulls_with()
    assert pull.labels == ["model-promotion", "staging"]
    assert len(calls(github, "POST", "/git/commits")) == 1


def test_a_merged_pull_request_is_adopted(github: FakeGitHub) -> None:
    first = provider(github).propose(request()).change
    github.approve(first.number, "alice")
    merge_sha = github.merge(first.number, "alice")
    again = provider(github).propose(request())
    assert again == Proposal(base_sha=merge_sha, change=first)
    status = provider(github).change_status(first)
    assert (status.state, status.merge_sha, status.merged_by, status.approved_by) == (
        "merged", merge_sha, "alice", ("alice",))
    assert len(github.pulls) == 1


def test_a_newer_version_supersedes_older_open_pull_requests(github: FakeGitHub) -> None:
    gitops = provider(github)
    v1 = gitops.propose(request("1")).change
    other_model = gitops.propose(request("7", branch=f"{PREFIX}other-model-v7")).change
    v2 = gitops.propose(request("2")).change
    closed = gitops.close_superseded(v2, PREFIX)
    assert closed == [v1]
    assert github.pulls[v1.number].state == "closed" and github.pulls[v1.number].merged_at is None
    assert [comment["body"] for comment in github.pulls[v1.number].comments] == [
        f"Superseded by {v2.url}, which proposes a newer version."]
    assert {pull.number for pull in github.pulls_with(state="open")} == {v2.number, other_model.number}
    assert gitops.change_status(v1).state == "closed"


def test_version_already_on_the_base_branch_opens_nothing(github: FakeGitHub) -> None:
    github.commit("main", {MANIFEST: pin("3")(github.file("main", MANIFEST))}, "Pinned by hand")
    proposal = provider(github).propose(request("3"))
    assert proposal == Proposal(base_sha=github.branches["main"], change=None)
    assert github.pulls == {} and request("3").branch not in github.branches


def test_base_branch_moving_during_the_commit_rebuilds_it_on_the_new_base(github: FakeGitHub) -> None:
    def someone_pushes() -> None:
        manifest = github.file("main", MANIFEST)
        github.commit("main", {MANIFEST: "# owned by the serving team\n" + manifest, "README.md": "hi\n"},
                      "A concurrent change")

    github.after("POST", r"/git/commits$", someone_pushes)
    change = provider(github).propose(request()).change
    moved_main = github.branches["main"]
    assert github.commits[change.head_sha].parents == [moved_main]
    assert github.file(change.branch, MANIFEST).startswith("# owned by the serving team\n")
    assert pinned_version(github, change.branch) == "1"
    assert len(calls(github, "POST", "/git/commits")) == 2 and len(github.pulls) == 1


def test_server_error_is_retried_with_backoff(github: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    github.fail("POST", r"/git/trees$", 502, message="Server Error")
    with caplog.at_level(logging.WARNING):
        change = provider(github).propose(request()).change
    assert change is not None and calls(github, "POST", "/git/trees") == [502, 201]
    assert "server error 502; asking again in 1 s" in caplog.text


def test_errors_name_the_repository_and_what_is_wrong(github: FakeGitHub) -> None:
    with pytest.raises(GitOpsError, match="apps/missing.yaml does not exist at main"):
        provider(github).read_file("main", "apps/missing.yaml")
    with pytest.raises(GitOpsError, match="acme/gitops: no branch 'release'"):
        provider(github).propose(request(base_branch="release"))
    elsewhere = GitHubProvider("acme/elsewhere", GitHubAccess(api_url=github.url, token=github.token))
    with pytest.raises(GitOpsError, match="acme/elsewhere: no such repository, or the token cannot read it"):
        elsewhere.read_file("main", MANIFEST)
    wrong_token = GitHubProvider(github.repository, GitHubAccess(api_url=github.url, token="not-it"))
    with pytest.raises(GitOpsError, match="401 Bad credentials .the token of the GitHub conn") as refusal:
        wrong_token.read_file("main", MANIFEST)
    assert "not-it" not in str(refusal.value)
    [refused] = github.violations
    assert refused.endswith("/git/ref/heads%2Fmain: sent without the token")
    github.violations.clear()


# The merge trigger ---------------------------------------------------------------------------------


def trigger_for(change: Any, *, seconds: float = 30, **gitops: Any) -> MergeTrigger:
    spec = GitOps(provider="github", repository="acme/gitops", manifest_path=MANIFEST,
                  inference_service=ISVC, **gitops)
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return MergeTrigger(gitops=spec.model_dump(mode="json"), change=change.to_xcom(),
                        deadline=deadline.isoformat(), poll_interval=0.2)


def later(seconds: float, action: Any) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_trigger_waits_with_conditional_requests_until_the_merge(github: FakeGitHub) -> None:
    change = provider(github).propose(request()).change
    requests_before, used_before = len(github.log), github.rate_limit_used

    def review() -> None:
        github.approve(change.number, "alice")
        github.merge(change.number, "bob")

    later(1.5, review)
    event = first_event(trigger_for(change))
    assert event["state"] == "merged"
    status = event["status"]
    assert (status["merge_sha"], status["merged_by"], status["approved_by"]) == (
        github.branches["main"], "bob", ["alice"])
    answers = [status for _, _, status in github.log[requests_before:]]
    assert answers.count(304) >= 1  # unchanged answers came back as 304 ...
    assert github.rate_limit_used - used_before == len(answers) - answers.count(304)  # ... at no cost


def test_trigger_reports_closed_without_merge_with_who_objected(github: FakeGitHub) -> None:
    change = provider(github).propose(request()).change
    github.request_changes(change.number, "carol")
    github.close(change.number, "carol")
    event = first_event(trigger_for(change))
    assert event["state"] == "closed"
    assert event["status"]["closed_by"] == "carol (requested changes)"
    assert "was closed without merge" in event["status"]["detail"]


def test_trigger_times_out(github: FakeGitHub) -> None:
    change = provider(github).propose(request()).change
    event = first_event(trigger_for(change, seconds=0.5))
    assert event["state"] == "timeout"
    assert event["status"]["detail"] == f"#{change.number} is open (mergeable state: clean)"


def test_trigger_honours_retry_after_and_logs_why_it_waits(github: FakeGitHub,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    change = provider(github).propose(request()).change
    github.fail("GET", rf"/pulls/{change.number}$", 403, headers={"Retry-After": "1"},
                message="You have exceeded a secondary rate limit.")
    github.fail("GET", rf"/pulls/{change.number}$", 429, headers={"x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(dt.datetime.now(dt.UTC).timestamp()) + 1)})
    github.approve(change.number, "alice")
    github.merge(change.number, "alice")
    event = first_event(trigger_for(change))
    assert event["state"] == "merged"
    assert calls(github, "GET", f"/pulls/{change.number}") == [403, 429, 200]
    log = capsys.readouterr().out
    assert "rate limited (403, Retry-After 1 s); next check in 1 s" in log
    assert "rate limit used up (429), it resets at" in log


def test_trigger_waits_first_when_the_task_was_told_to(github: FakeGitHub,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    change = provider(github).propose(request()).change
    github.close(change.number, "alice")
    trigger = trigger_for(change)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    trigger.first_check = {"at": at.isoformat(), "reason": "rate limited (403, Retry-After 1 s)"}
    assert first_event(trigger)["state"] == "closed"
    assert "rate limited (403, Retry-After 1 s); next check in 1 s" in capsys.readouterr().out


def test_trigger_auto_merges_once_required_checks_pass(github: FakeGitHub) -> None:
    github.required_checks = ["ci/validate"]
    change = provider(github).propose(request()).change
    github.set_status(change.head_sha, "ci/validate", "pending")
    later(1.0, lambda: github.set_status(change.head_sha, "ci/validate", "success"))
    event = first_event(trigger_for(change, auto_merge=True))
    assert event["state"] == "merged"
    assert (event["status"]["merged_by"], event["status"]["approved_by"]) == (BOT, [])
    assert calls(github, "PUT", "/merge") == [200]
    assert pinned_version(github, "main") == "1"


def test_auto_merge_into_a_merge_queue_fails_with_a_clear_message(github: FakeGitHub) -> None:
    github.require_merge_queue = True
    change = provider(github).propose(request()).change
    event = first_event(trigger_for(change, auto_merge=True))
    assert event["state"] == "error" and event["retry"] is False
    assert "main requires a merge queue (Changes must be made through the merge queue)" in event["message"]
    assert "set auto_merge to false" in event["message"]
    assert github.pulls[change.number].state == "open"


def test_trigger_arguments_hold_no_token(github: FakeGitHub) -> None:
    change = provider(github).propose(request()).change
    classpath, kwargs = trigger_for(change).serialize()
    assert github.token not in json.dumps(kwargs)
    assert MergeTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_connection_without_a_token_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_lifecycle.hooks.github import GitHubConnectionError, GitHubHook

    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_EMPTY", json.dumps({"conn_type": "github"}))
    with pytest.raises(GitHubConnectionError,
                       match="connection 'github_empty' has no token: set its password"):
        GitHubHook("github_empty").get_conn()
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_GHE", json.dumps(
        {"conn_type": "github", "host": "ghe.example.com/api/v3", "password": "secret"}))
    access = GitHubHook("github_ghe").get_conn()
    assert access.api_url == "https://ghe.example.com/api/v3" and "secret" not in repr(access)
