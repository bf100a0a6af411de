"""GitOps through GitHub pull requests, over GitHub's REST API (api.github.com or GitHub Enterprise).

Opening a change writes one commit with the git data API (a tree on top of the base commit's tree, a
commit whose parent is the base, then the branch), so the branch appears with its final content in one
step; then the pull request is opened, labelled, and reviews are requested.

Waiting is cheap: the pull request is read with conditional requests (``If-None-Match`` with the ETag of
the previous answer, kept for the life of this object), which GitHub answers with 304, at no rate-limit
cost, while nothing changed. Rate limiting (403/429 with ``Retry-After`` or ``x-ratelimit-reset``),
server errors (5xx, backoff) and lost connections are waited out here when the wait is at most
``max_inline_wait`` seconds, else raised as ``RetryLater`` for the caller to wait (the trigger does, with
asyncio, holding no thread).

Path parameters are percent-encoded whole (``heads%2Fmain``, ``models%2Fisvc.yaml``): GitHub's OpenAPI
description has one path segment per parameter, and GitHub decodes them (octokit sends them so too).

The token travels only in the Authorization header: no message, log line or returned value holds it.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from model_lifecycle.gitops.base import (
    BaseMovedError,
    ChangeRequest,
    ChangeStatus,
    GitOpsError,
    GitOpsProvider,
    MergeRefused,
    RetryLater,
)
from model_lifecycle.hooks.github import GitHubAccess
from model_lifecycle.results import ChangeRef

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
MAX_INLINE_ATTEMPTS = 6
MAX_BACKOFF_SECONDS = 60.0
PAGE_SIZE = 100
# States of a pull request whose required checks have passed (GitHub's own auto-merge merges these too).
READY_TO_MERGE = {"clean", "has_hooks", "unstable"}
_SHA = re.compile(r"[0-9a-f]{40}")
_SERVER_ERRORS = {500, 502, 503, 504}


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str


def retry_wait(status: int | None, headers: Mapping[str, str], message: str, failures: int,
               now: float) -> Wait | None:
    """How long to wait before asking GitHub again, or None when its answer is final.

    ``status`` None means no answer at all; ``failures`` counts the answers in a row, this one included,
    that asked to wait (server errors back off exponentially); ``now`` is the epoch time."""
    if status in (403, 429):
        retry_after = headers.get("retry-after", "")
        if retry_after.isdigit():
            return Wait(max(float(retry_after), 1.0), f"rate limited ({status}, Retry-After {retry_after} s)")
        reset = headers.get("x-ratelimit-reset", "")
        if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
            until = dt.datetime.fromtimestamp(int(reset), dt.UTC).isoformat(timespec="seconds")
            return Wait(max(int(reset) - now, 1.0), f"rate limit used up ({status}), it resets at {until}")
        if status == 429 or "rate limit" in message.lower():
            # GitHub's advice for a secondary rate limit that names no time: wait at least a minute.
            return Wait(60.0, f"secondary rate limit ({status}: {message})")
        return None
    if status is None or status in _SERVER_ERRORS:
        seconds = min(2.0 ** (failures - 1), MAX_BACKOFF_SECONDS)
        return Wait(seconds, f"server error {status}" if status else f"no answer ({message})")
    return None


def review_verdicts(reviews: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Each reviewer's standing verdict: their latest review that approves, requests changes or was
    dismissed (comments change nothing). GitHub lists reviews oldest first."""
    verdicts: dict[str, str] = {}
    for review in reviews:
        if review["state"] in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED") and review.get("user"):
            verdicts[review["user"]["login"]] = review["state"]
    return verdicts


def who(verdicts: Mapping[str, str], verdict: str) -> tuple[str, ...]:
    return tuple(sorted(login for login, given in verdicts.items() if given == verdict))


class GitHubProvider(GitOpsProvider):
    name = "github"

    def __init__(self, repository: str, access: GitHubAccess, *, max_inline_wait: float = 300.0) -> None:
        import requests

        self.repository = repository
        self.owner = repository.split("/", 1)[0]
        self.access = access
        self.max_inline_wait = max_inline_wait
        self._session = requests.Session()
        self._session.headers.update({
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "airflow-model-lifecycle",
            "Authorization": f"Bearer {access.token}",
        })
        self._failures = 0
        self._etags: dict[str, tuple[str, Any]] = {}

    # The GitOps interface ---------------------------------------------------------------------

    def read_file(self, ref: str, path: str) -> tuple[str, str]:
        commit = ref if _SHA.fullmatch(ref) else self._branch_head(ref)
        if commit is None:
            # GitHub answers 404 for the branch of a repository it does not show this token, too.
            status, _ = self._call("GET", "", expect=(200, 404))
            if status == 404:
                raise GitOpsError(f"{self.repository}: no such repository, or the token cannot read it")
            raise GitOpsError(f"{self.repository}: no branch {ref!r}")
        status, content = self._call("GET", f"/contents/{quote(path, safe='')}", params={"ref": commit},
                                     expect=(200, 404))
        if status == 404:
            raise GitOpsError(f"{self.repository}: {path} does not exist at {ref} ({commit[:12]})")
        if not isinstance(content, dict) or content.get("type") != "file" or "content" not in content:
            raise GitOpsError(f"{self.repository}: {path} at {ref} is not a file GitHub returns inline "
                              "(a directory, a link, or larger than 1 MB)")
        # GitHub sends file contents base64-encoded, wrapped at 60 characters (b64decode skips newlines).
        return base64.b64decode(content["content"]).decode("utf-8"), commit

    def adopt_change(self, request: ChangeRequest) -> ChangeRef | None:
        pulls = self._list("/pulls", {"state": "all", "head": f"{self.owner}:{request.branch}",
                                      "base": request.base_branch})
        candidates = [pull for pull in pulls if pull["state"] == "open"] or \
                     [pull for pull in pulls if pull["merged_at"]]
        if not candidates:
            return None
        pull = candidates[0]
        if pull["state"] == "open":
            self._label(pull["number"], request.labels, present=[label["name"] for label in pull["labels"]])
        return self._ref(pull)

    def open_change(self, request: ChangeRequest, base_sha: str, content: str) -> ChangeRef:
        _, base_commit = self._call("GET", f"/git/commits/{base_sha}")
        # Manifests are regular files (mode 100644); the data API creates the blob from the content.
        _, tree = self._call("POST", "/git/trees", expect=(201,), body={
            "base_tree": base_commit["tree"]["sha"],
            "tree": [{"path": request.path, "mode": "100644", "type": "blob", "content": content}],
        })
        _, commit = self._call("POST", "/git/commits", expect=(201,), body={
            "message": f"{request.title}\n\n{request.body}", "tree": tree["sha"], "parents": [base_sha],
        })
        base_now = self._branch_head(request.base_branch)
        if base_now is None:
            raise GitOpsError(f"{self.repository}: base branch {request.base_branch!r} does not exist")
        if base_now != base_sha:
            raise BaseMovedError(f"{request.base_branch} moved from {base_sha[:12]} to {base_now[:12]}")
        self._point_branch(request.branch, commit["sha"])
        status, pull = self._call("POST", "/pulls", expect=(201, 422), body={
            "title": request.title, "head": request.branch, "base": request.base_branch,
            "body": request.body,
        })
        if status == 422:
            # Most likely a concurrent attempt opened it a moment ago: adopt that one.
            existing = self.adopt_change(request)
            if existing is None:
                raise GitOpsError(f"{self.repository}: GitHub refused to open a pull request from "
                                  f"{request.branch} into {request.base_branch}: {_message(pull)}")
            return existing
        self._label(pull["number"], request.labels, present=[])
        self._request_reviews(pull["number"], request)
        log.info("Opened pull request #%s (%s) from %s at %s on top of %s %s.", pull["number"],
                 pull["html_url"], request.branch, commit["sha"][:12], request.base_branch, base_sha[:12])
        return self._ref(pull)

    def change_status(self, ref: ChangeRef) -> ChangeStatus:
        number = self._number(ref)
        _, pull = self._call("GET", f"/pulls/{number}", conditional=True)
        head = pull["head"]["sha"]
        if pull["merged_at"]:
            verdicts = review_verdicts(self._list(f"/pulls/{number}/reviews", {}))
            return ChangeStatus(
                state="merged", merge_sha=pull["merge_commit_sha"],
                merged_by=(pull.get("merged_by") or {}).get("login", "unknown"), merged_at=pull["merged_at"],
                approved_by=who(verdicts, "APPROVED"), head_sha=head,
                detail=f"#{number} was merged into {pull['base']['ref']}",
            )
        if pull["state"] == "closed":
            # GitHub names who closed a pull request only in its issue events; the reviews say who objected.
            objecting = who(review_verdicts(self._list(f"/pulls/{number}/reviews", {})), "CHANGES_REQUESTED")
            return ChangeStatus(
                state="closed", head_sha=head,
                closed_by=f"{', '.join(objecting)} (requested changes)" if objecting else "unknown",
                detail=f"#{number} was closed without merge at {pull['closed_at']}",
            )
        mergeable_state = pull.get("mergeable_state") or "unknown"
        return ChangeStatus(state="open", head_sha=head, mergeable=mergeable_state in READY_TO_MERGE,
                            detail=f"#{number} is open (mergeable state: {mergeable_state})")

    def open_changes(self, branch_prefix: str, base_branch: str) -> list[ChangeRef]:
        return [
            self._ref(pull) for pull in self._list("/pulls", {"state": "open", "base": base_branch})
            if pull["head"]["ref"].startswith(branch_prefix)
            # a fork's pull request with the same branch name is not ours to close
            and ((pull["head"].get("repo") or {}).get("full_name") or "").lower() == self.repository.lower()
        ]

    def close_change(self, ref: ChangeRef, comment: str) -> None:
        number = self._number(ref)
        self._call("POST", f"/issues/{number}/comments", body={"body": comment}, expect=(201,))
        self._call("PATCH", f"/pulls/{number}", body={"state": "closed"})
        log.info("Closed pull request #%s (%s): %s", number, ref.url, comment)

    def merge(self, ref: ChangeRef, head_sha: str) -> bool:
        number = self._number(ref)
        status, answer = self._call("PUT", f"/pulls/{number}/merge", expect=(200, 405, 409),
                                    body={"sha": head_sha, "merge_method": "merge"})
        if status == 200:
            log.info("Merged pull request #%s at %s (gitops.auto_merge).", number, head_sha[:12])
            return True
        message = _message(answer)
        if status == 405 and "merge queue" in message.lower():
            raise MergeRefused(
                f"{self.repository}: {ref.base_branch} requires a merge queue ({message}), and "
                "gitops.auto_merge cannot merge through one: set auto_merge to false and let the merge "
                "queue merge the pull request (for example with auto-merge enabled on it in GitHub)"
            )
        log.info("Pull request #%s cannot be merged yet: %s (%s).", number, message, status)
        return False

    # Steps ------------------------------------------------------------------------------------

    def _branch_head(self, branch: str) -> str | None:
        status, ref = self._call("GET", f"/git/ref/{quote(f'heads/{branch}', safe='')}", expect=(200, 404))
        return ref["object"]["sha"] if status == 200 else None

    def _point_branch(self, branch: str, sha: str) -> None:
        status, _ = self._call("POST", "/git/refs", expect=(201, 422),
                               body={"ref": f"refs/heads/{branch}", "sha": sha})
        if status == 422:
            # Left by an attempt that opened no pull request, or by one closed unmerged: the branch is
            # this project's by its name, and no open or merged pull request uses it.
            log.info("Branch %s exists without an open or merged pull request; moving it to %s.", branch,
                     sha[:12])
            self._call("PATCH", f"/git/refs/{quote(f'heads/{branch}', safe='')}",
                       body={"sha": sha, "force": True})

    def _label(self, number: int, labels: Sequence[str], *, present: Sequence[str]) -> None:
        missing = [label for label in labels if label not in present]
        if missing:
            self._call("POST", f"/issues/{number}/labels", body={"labels": missing})

    def _request_reviews(self, number: int, request: ChangeRequest) -> None:
        if not request.reviewers and not request.team_reviewers:
            return
        status, answer = self._call("POST", f"/pulls/{number}/requested_reviewers", expect=(201, 422), body={
            "reviewers": list(request.reviewers), "team_reviewers": list(request.team_reviewers),
        })
        if status == 422:
            # The pull request stands; a review request GitHub refuses is a notification lost, not a reason
            # to fail the promotion.
            log.warning("GitHub refused the review requests of gitops.reviewers %s / gitops.team_reviewers "
                        "%s on #%s: %s", list(request.reviewers), list(request.team_reviewers), number,
                        _message(answer))

    def _ref(self, pull: Mapping[str, Any]) -> ChangeRef:
        return ChangeRef(provider=self.name, branch=pull["head"]["ref"], base_branch=pull["base"]["ref"],
                         head_sha=pull["head"]["sha"], url=pull["html_url"], number=pull["number"])

    def _number(self, ref: ChangeRef) -> int:
        if ref.number is None:
            raise GitOpsError(f"{ref.url}: the change has no pull request number (opened by the "
                              f"{ref.provider!r} provider?)")
        return ref.number

    # HTTP -------------------------------------------------------------------------------------

    def _list(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        items: list[Any] = []
        for page in range(1, 1000):
            _, batch = self._call("GET", path, params={**params, "per_page": PAGE_SIZE, "page": page})
            items.extend(batch)
            if len(batch) < PAGE_SIZE:
                break
        return items

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Mapping[str, Any] | None = None, expect: Sequence[int] = (200,),
              conditional: bool = False) -> tuple[int, Any]:
        """One API call on the repository; returns the status (one of ``expect``) and the JSON answer.
        ``conditional``: send the ETag of the previous answer, and take a 304 as that answer again."""
        import requests

        url = f"{self.access.api_url}/repos/{self.repository}{path}"
        what = f"GitHub {method} {path} ({self.repository})"
        cached = self._etags.get(url) if conditional else None
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._session.request(
                    method, url, params=params, json=body, timeout=(10, 60),
                    headers={"If-None-Match": cached[0]} if cached else None,
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                response = None
                wait = retry_wait(None, {}, type(error).__name__, self._failures + 1, time.time())
            else:
                wait = retry_wait(response.status_code, response.headers, _message(_json(response)),
                                  self._failures + 1, time.time())
            if wait is None:
                self._failures = 0
                break
            self._failures += 1
            if wait.seconds > self.max_inline_wait or attempt >= MAX_INLINE_ATTEMPTS:
                raise RetryLater(wait.seconds, f"{what}: {wait.reason}")
            log.warning("%s: %s; asking again in %.0f s.", what, wait.reason, wait.seconds)
            time.sleep(wait.seconds)

        assert response is not None
        if response.status_code == 304 and cached:
            return 200, cached[1]
        answer = _json(response)
        if response.status_code not in expect:
            hint = " (the token of the GitHub connection was refused)" if response.status_code == 401 else ""
            raise GitOpsError(f"{what}: {response.status_code} {_message(answer)}{hint}")
        if conditional and response.headers.get("ETag"):
            self._etags[url] = (response.headers["ETag"], answer)
        return response.status_code, answer


def _json(response: Any) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def _message(answer: Any) -> str:
    """GitHub's error message, with the details of a validation error (422)."""
    if not isinstance(answer, dict):
        return ""
    details = [error.get("message") or error.get("code", "") for error in answer.get("errors") or []
               if isinstance(error, dict)]
    return "; ".join(str(part) for part in [answer.get("message", ""), *details] if part)
