"""A stateful GitHub REST API on loopback, standing in for GitHub in tests.

It keeps one repository in memory (trees, commits, branches, pull requests with their labels, review
requests, reviews and comments, commit statuses) and serves the operations the github provider uses,
under ``/api/v3`` as GitHub Enterprise does (so the configurable base URL is exercised).

Every request it receives and every response it returns is checked against GitHub's published OpenAPI
description (``tests/specs/github/rest-api-subset.json``) with openapi-core; each mismatch is kept in
``violations``, which the ``github`` fixture asserts empty. Answers the description leaves to GitHub's
infrastructure (rate limits and gateway errors, which any operation may get) are checked against its
``basic-error`` schema.

Tests act on it in Python: ``commit`` moves a branch, ``approve``/``request_changes``/``merge``/``close``
are what a reviewer does, ``set_status`` reports a check, ``fail`` answers the next matching requests
with an error (403 with Retry-After, 429, 502), ``after`` runs an action after a matching request (the
base branch moves between read and write), ``require_merge_queue`` makes merges through the API
answer 405.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.support.api_specs import api_specs_dir

API_PREFIX = "/api/v3"
BOT = "model-lifecycle-bot"
RATE_LIMIT = 5000
READY = "success"


@functools.cache
def _description() -> dict[str, Any]:
    return json.loads((api_specs_dir() / "github" / "rest-api-subset.json").read_text())


@functools.cache
def _openapi() -> Any:
    from openapi_core import OpenAPI

    description = copy.deepcopy(_description())
    description["servers"] = [{"url": API_PREFIX}]
    return OpenAPI.from_dict(description)


def _example(name: str) -> Any:
    return copy.deepcopy(_description()["components"]["examples"][name]["value"])


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _id(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


@dataclass
class Commit:
    sha: str
    files: dict[str, str]
    parents: list[str]
    message: str
    author: str
    date: str = field(default_factory=_now)


@dataclass
class Pull:
    number: int
    title: str
    body: str
    head: str
    head_sha: str
    base: str
    user: str
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    state: str = "open"
    merged_by: str | None = None
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    closed_by: str | None = None
    closed_at: str | None = None
    labels: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    message: str
    headers: dict[str, str]
    times: int


@dataclass
class Hook:
    method: str
    path: re.Pattern[str]
    action: Callable[[], None]
    times: int


class HTTPError(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message,
                                     "documentation_url": "https://docs.github.com/rest"}
        if errors:
            self.body["errors"] = errors


class FakeGitHub:
    def __init__(self, token: str, *, owner: str = "acme", name: str = "gitops") -> None:
        self.token = token
        self.owner = owner
        self.name = name
        self.repository = f"{owner}/{name}"
        self.violations: list[str] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        self.rate_limit_used = 0
        self.required_checks: list[str] = []
        self.require_merge_queue = False
        self.commits: dict[str, Commit] = {}
        self.trees: dict[str, dict[str, str]] = {}
        self.branches: dict[str, str] = {}
        self.pulls: dict[int, Pull] = {}
        self.statuses: dict[str, dict[str, str]] = {}
        self._faults: list[Fault] = []
        self._hooks: list[Hook] = []
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-github")
        self.url = f"http://127.0.0.1:{self._server.server_port}{API_PREFIX}"
        self.html = f"https://github.example/{self.repository}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    # What tests do -------------------------------------------------------------------------------

    def commit(self, branch: str, files: dict[str, str], message: str, author: str = "platform") -> str:
        """A commit of ``files`` (path: text) on ``branch`` (created from nothing if it is new)."""
        with self._lock:
            parent = self.branches.get(branch)
            tree = {**(self.commits[parent].files if parent else {}), **files}
            sha = self._store_commit(tree, [parent] if parent else [], message, author)
            self.branches[branch] = sha
            return sha

    def file(self, ref: str, path: str) -> str:
        with self._lock:
            return self.commits[self.branches.get(ref, ref)].files[path]

    def pulls_with(self, **state: Any) -> list[Pull]:
        with self._lock:
            return [pull for pull in self.pulls.values()
                    if all(getattr(pull, key) == value for key, value in state.items())]

    def approve(self, number: int, login: str) -> None:
        self._review(number, login, "APPROVED")

    def request_changes(self, number: int, login: str) -> None:
        self._review(number, login, "CHANGES_REQUESTED")

    def merge(self, number: int, login: str) -> str:
        with self._lock:
            return self._merge(self.pulls[number], login)

    def close(self, number: int, login: str) -> None:
        with self._lock:
            self._close(self.pulls[number], login)

    def set_status(self, sha: str, context: str, state: str) -> None:
        with self._lock:
            self.statuses.setdefault(sha, {})[context] = state

    def fail(self, method: str, path: str, status: int, *, message: str = "", times: int = 1,
             headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests whose API path matches the regex ``path`` with ``status``."""
        with self._lock:
            self._faults.append(Fault(method, re.compile(path), status, message, headers or {}, times))

    def after(self, method: str, path: str, action: Callable[[], None], *, times: int = 1) -> None:
        """Run ``action`` after answering the next ``times`` matching requests."""
        with self._lock:
            self._hooks.append(Hook(method, re.compile(path), action, times))

    def review_each_new_pull(self, login: str, action: str, *, delay: float = 0.5) -> None:
        """Act as a reviewer on every pull request opened from now on: approve and merge, or close."""
        def act(number: int) -> None:
            if action == "merge":
                self.approve(number, login)
                self.merge(number, login)
            else:
                self.request_changes(number, login)
                self.close(number, login)

        seen = set(self.pulls)

        def watch() -> None:
            while not self._server_stopped():
                for number in [n for n in list(self.pulls) if n not in seen]:
                    seen.add(number)
                    time.sleep(delay)
                    act(number)
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True, name=f"reviewer-{login}").start()

    def _server_stopped(self) -> bool:
        return not self._thread.is_alive()

    # HTTP ----------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        request = Request(environ)
        raw_path = environ.get("RAW_URI", request.path).split("?", 1)[0]
        with self._lock:
            response, fault = self._answer(request, raw_path)
            self._validate(request, raw_path, response, fault)
            if response.status_code != 304:
                self.rate_limit_used += 1
            response.headers.update({
                "x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": str(max(RATE_LIMIT - self.rate_limit_used, 0)),
                "x-ratelimit-used": str(self.rate_limit_used),
                "x-ratelimit-reset": str(int(time.time()) + 3600),
                "x-ratelimit-resource": "core",
                **response.headers,
            })
            self.log.append((request.method, raw_path.removeprefix(API_PREFIX), response.status_code))
            hook = self._take(self._hooks, request.method, raw_path)
            if hook is not None:
                hook.action()
        return response(environ, start_response)

    def _answer(self, request: Request, raw_path: str) -> tuple[Response, bool]:
        if request.headers.get("Authorization") not in (f"Bearer {self.token}", f"token {self.token}"):
            self.violations.append(f"{request.method} {raw_path}: sent without the token")
            return self._json(401, {"message": "Bad credentials"}), True
        fault = self._take(self._faults, request.method, raw_path)
        if fault is not None:
            body = {"message": fault.message or "Server Error",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}
            response = self._json(fault.status, body)
            response.headers.update(fault.headers)
            return response, True
        try:
            status, body = self._route(request, raw_path.removeprefix(API_PREFIX))
        except HTTPError as error:
            return self._json(error.status, error.body), False
        response = self._json(status, body)
        if request.method == "GET" and status == 200:
            etag = f'W/"{hashlib.sha1(response.get_data()).hexdigest()}"'
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304, headers={"ETag": etag}), False
            response.headers["ETag"] = etag
        return response, False

    @staticmethod
    def _json(status: int, body: Any) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")

    @staticmethod
    def _take(rules: list[Any], method: str, raw_path: str) -> Any:
        """The first rule (fault or hook) for this request that has uses left, using one."""
        path = unquote(raw_path.removeprefix(API_PREFIX))
        for rule in rules:
            if rule.times > 0 and rule.method == method and rule.path.search(path):
                rule.times -= 1
                return rule
        return None

    def _validate(self, request: Request, raw_path: str, response: Response, fault: bool) -> None:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
        from openapi_core.templating.responses.exceptions import ResponseNotFound

        class AsSent(WerkzeugOpenAPIRequest):
            # One path segment per parameter, as the description has them: match the path as sent
            # (percent-encoded), not as decoded.
            @property
            def path(self) -> str:
                return raw_path

        openapi_request = AsSent(request)
        what = f"{request.method} {raw_path}"
        try:
            _openapi().validate_request(openapi_request)
        except Exception as error:  # noqa: BLE001 - every kind of mismatch is reported the same way
            self.violations.append(f"request {what}: {_explain(error)}")
        try:
            _openapi().validate_response(openapi_request, WerkzeugOpenAPIResponse(response))
        except ResponseNotFound as error:
            if fault:  # an answer of GitHub's infrastructure, which no operation lists
                self._validate_error_body(what, response)
            else:
                self.violations.append(f"response {response.status_code} to {what}: {_explain(error)}")
        except Exception as error:  # noqa: BLE001
            self.violations.append(f"response {response.status_code} to {what}: {_explain(error)}")

    def _validate_error_body(self, what: str, response: Response) -> None:
        from openapi_schema_validator import OAS30Validator

        schema = _description()["components"]["schemas"]["basic-error"]
        for error in OAS30Validator(schema).iter_errors(json.loads(response.get_data())):
            self.violations.append(f"error response {response.status_code} to {what}: {error.message}")

    # The API -------------------------------------------------------------------------------------

    def _route(self, request: Request, path: str) -> tuple[int, Any]:
        method = request.method
        prefix = f"/repos/{self.owner}/{self.name}"
        if path == prefix and method == "GET":
            return 200, self._full_repository()
        if not path.startswith(prefix + "/"):
            raise HTTPError(404, "Not Found")
        parts = [unquote(part) for part in path.removeprefix(prefix + "/").split("/")]
        body = request.get_json(silent=True) or {}
        query = request.args
        match parts:
            case ["git", "ref", ref] if method == "GET":
                return 200, self._git_ref(ref)
            case ["git", "commits", sha] if method == "GET":
                return 200, self._git_commit(self._commit(sha))
            case ["git", "trees"] if method == "POST":
                return 201, self._create_tree(body)
            case ["git", "commits"] if method == "POST":
                parents = [self._commit(sha).sha for sha in body["parents"]]
                sha = self._store_commit(self._tree(body["tree"]), parents, body["message"], BOT)
                return 201, self._git_commit(self.commits[sha])
            case ["git", "refs"] if method == "POST":
                branch = body["ref"].removeprefix("refs/heads/")
                if branch in self.branches:
                    raise HTTPError(422, "Reference already exists")
                self.branches[branch] = self._commit(body["sha"]).sha
                return 201, self._git_ref(f"heads/{branch}")
            case ["git", "refs", ref] if method == "PATCH":
                branch = self._branch(ref)
                if not body.get("force") and not self._is_ancestor(self.branches[branch], body["sha"]):
                    raise HTTPError(422, "Update is not a fast forward")
                self.branches[branch] = self._commit(body["sha"]).sha
                return 200, self._git_ref(ref)
            case ["contents", file_path] if method == "GET":
                return 200, self._content(file_path, query.get("ref", "main"))
            case ["pulls"] if method == "GET":
                return 200, self._page([self._pull_simple(pull) for pull in self._list_pulls(query)], query)
            case ["pulls"] if method == "POST":
                return 201, self._pull_full(self._open_pull(body))
            case ["pulls", number] if method == "GET":
                return 200, self._pull_full(self._pull(number))
            case ["pulls", number] if method == "PATCH":
                pull = self._pull(number)
                if body.get("state") == "closed" and pull.state == "open":
                    self._close(pull, BOT)
                return 200, self._pull_full(pull)
            case ["pulls", number, "reviews"] if method == "GET":
                return 200, self._page(self._pull(number).reviews, query)
            case ["pulls", number, "requested_reviewers"] if method == "POST":
                return 201, self._pull_simple(self._request_reviewers(self._pull(number), body))
            case ["pulls", number, "merge"] if method == "PUT":
                return 200, self._merge_by_api(self._pull(number), body)
            case ["issues", number, "labels"] if method == "POST":
                pull = self._pull(number)
                pull.labels += [label for label in body["labels"] if label not in pull.labels]
                return 200, [self._label(label) for label in pull.labels]
            case ["issues", number, "comments"] if method == "POST":
                return 201, self._comment(self._pull(number), body["body"])
        raise HTTPError(404, "Not Found")

    def _git_ref(self, ref: str) -> dict[str, Any]:
        sha = self.branches[self._branch(ref)]
        return {**_example("git-ref"), "ref": f"refs/{ref}", "node_id": f"REF_{_id(ref)}",
                "url": f"{self.url}/repos/{self.repository}/git/refs/{ref}",
                "object": {"type": "commit", "sha": sha,
                           "url": f"{self.url}/repos/{self.repository}/git/commits/{sha}"}}

    def _branch(self, ref: str) -> str:
        branch = ref.removeprefix("heads/")
        if not ref.startswith("heads/") or branch not in self.branches:
            raise HTTPError(404, "Not Found")
        return branch

    def _commit(self, sha: str) -> Commit:
        if sha not in self.commits:
            raise HTTPError(404, f"No commit found for SHA: {sha}")
        return self.commits[sha]

    def _tree(self, sha: str) -> dict[str, str]:
        if sha not in self.trees:
            raise HTTPError(422, f"Invalid tree info: {sha}")
        return self.trees[sha]

    def _store_commit(self, files: dict[str, str], parents: list[str], message: str, author: str) -> str:
        tree_sha = _sha(files)
        self.trees[tree_sha] = dict(files)
        sha = _sha(tree_sha, parents, message, author, next(self._ids))
        self.commits[sha] = Commit(sha, dict(files), parents, message, author)
        return sha

    def _git_commit(self, commit: Commit) -> dict[str, Any]:
        person = {"name": commit.author, "email": f"{commit.author}@example.com", "date": commit.date}
        base = f"{self.url}/repos/{self.repository}/git"
        return {**_example("git-commit"), "sha": commit.sha, "node_id": f"C_{_id(commit.sha)}",
                "url": f"{base}/commits/{commit.sha}", "html_url": f"{self.html}/commit/{commit.sha}",
                "author": person, "committer": person, "message": commit.message,
                "tree": {"sha": _sha(commit.files), "url": f"{base}/trees/{_sha(commit.files)}"},
                "parents": [{"sha": parent, "url": f"{base}/commits/{parent}",
                             "html_url": f"{self.html}/commit/{parent}"} for parent in commit.parents]}

    def _create_tree(self, body: dict[str, Any]) -> dict[str, Any]:
        files = dict(self._tree(body["base_tree"])) if body.get("base_tree") else {}
        for entry in body["tree"]:
            if "content" not in entry:
                raise HTTPError(422, "this fake takes tree entries with content only")
            files[entry["path"]] = entry["content"]
        sha = _sha(files)
        self.trees[sha] = files
        return {**_example("git-tree"), "sha": sha, "truncated": False,
                "url": f"{self.url}/repos/{self.repository}/git/trees/{sha}",
                "tree": [{"path": path, "mode": "100644", "type": "blob", "sha": _sha(text),
                          "size": len(text.encode())} for path, text in sorted(files.items())]}

    def _content(self, path: str, ref: str) -> dict[str, Any]:
        commit = self._commit(self.branches.get(ref, ref))
        if path not in commit.files:
            raise HTTPError(404, "Not Found")
        data = commit.files[path].encode()
        url = f"{self.url}/repos/{self.repository}/contents/{path}?ref={ref}"
        return {**_example("content-file-response-if-content-is-a-file"), "type": "file",
                "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1], "path": path,
                "content": base64.encodebytes(data).decode(), "sha": _sha(commit.files[path]), "url": url,
                "git_url": None, "html_url": None, "download_url": None,
                "_links": {"self": url, "git": None, "html": None}}

    def _list_pulls(self, query: Any) -> list[Pull]:
        state, head, base = query.get("state", "open"), query.get("head"), query.get("base")
        found = [pull for pull in self.pulls.values()
                 if state in ("all", pull.state)
                 and (head is None or head == f"{self.owner}:{pull.head}")
                 and (base is None or base == pull.base)]
        return sorted(found, key=lambda pull: pull.number, reverse=True)

    @staticmethod
    def _page(items: list[Any], query: Any) -> list[Any]:
        size, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        return items[(page - 1) * size : page * size]

    def _pull(self, number: str | int) -> Pull:
        if int(number) not in self.pulls:
            raise HTTPError(404, "Not Found")
        return self.pulls[int(number)]

    def _open_pull(self, body: dict[str, Any]) -> Pull:
        head, base = body["head"].split(":")[-1], body["base"]
        if head not in self.branches or base not in self.branches:
            raise HTTPError(422, "Validation Failed", [{"resource": "PullRequest", "field": "head",
                                                        "code": "invalid"}])
        if self.pulls_with(head=head, base=base, state="open"):
            raise HTTPError(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": f"A pull request already exists for {self.owner}:{head}.",
            }])
        pull = Pull(number=next(self._numbers), title=body["title"], body=body.get("body") or "",
                    head=head, head_sha=self.branches[head], base=base, user=BOT)
        self.pulls[pull.number] = pull
        return pull

    def _request_reviewers(self, pull: Pull, body: dict[str, Any]) -> Pull:
        if pull.user in body.get("reviewers", []):
            raise HTTPError(422, "Review cannot be requested from pull request author.")
        pull.reviewers += [login for login in body.get("reviewers", []) if login not in pull.reviewers]
        pull.teams += [team for team in body.get("team_reviewers", []) if team not in pull.teams]
        return pull

    def _review(self, number: int, login: str, state: str) -> None:
        with self._lock:
            pull = self.pulls[number]
            review = _example("pull-request-review")
            review.update(id=next(self._ids), node_id=f"PRR_{next(self._ids)}", user=self._user(login),
                          body="", state=state, commit_id=self._head(pull), submitted_at=_now(),
                          html_url=f"{self.html}/pull/{number}#pullrequestreview",
                          pull_request_url=f"{self.url}/repos/{self.repository}/pulls/{number}")
            pull.reviews.append(review)
            if login in pull.reviewers:
                pull.reviewers.remove(login)
            pull.updated_at = _now()

    def _comment(self, pull: Pull, text: str) -> dict[str, Any]:
        comment = _example("issue-comment")
        comment.update(id=next(self._ids), node_id=f"IC_{next(self._ids)}", body=text, user=self._user(BOT),
                       created_at=_now(), updated_at=_now(),
                       html_url=f"{self.html}/pull/{pull.number}#issuecomment",
                       issue_url=f"{self.url}/repos/{self.repository}/issues/{pull.number}",
                       url=f"{self.url}/repos/{self.repository}/issues/comments/{comment['id']}")
        pull.comments.append(comment)
        pull.updated_at = _now()
        return comment

    def _head(self, pull: Pull) -> str:
        # An open pull request follows its branch, as on GitHub.
        return self.branches.get(pull.head, pull.head_sha) if pull.state == "open" else pull.head_sha

    def _mergeable_state(self, pull: Pull) -> str:
        if pull.state != "open":
            return "unknown"
        reported = self.statuses.get(self._head(pull), {})
        return "clean" if all(reported.get(check) == READY for check in self.required_checks) else "blocked"

    def _merge_by_api(self, pull: Pull, body: dict[str, Any]) -> dict[str, Any]:
        if pull.state != "open":
            raise HTTPError(405, "Pull Request is not mergeable")
        if self.require_merge_queue:
            raise HTTPError(405, "Changes must be made through the merge queue")
        if self._mergeable_state(pull) != "clean":
            missing = [check for check in self.required_checks
                       if self.statuses.get(self._head(pull), {}).get(check) != READY]
            raise HTTPError(405, f"Required status check \"{missing[0]}\" is expected.")
        if body.get("sha") and body["sha"] != self._head(pull):
            raise HTTPError(409, "Head branch was modified. Review and try the merge again.")
        return {"sha": self._merge(pull, BOT), "merged": True, "message": "Pull Request successfully merged"}

    def _merge(self, pull: Pull, login: str) -> str:
        head, base = self._head(pull), self.branches[pull.base]
        since = self.commits[self._merge_base(head, base)].files
        changed = {path: text for path, text in self.commits[head].files.items() if since.get(path) != text}
        sha = self._store_commit({**self.commits[base].files, **changed}, [base, head],
                                 f"Merge pull request #{pull.number} from {self.owner}/{pull.head}", login)
        self.branches[pull.base] = sha
        pull.head_sha, pull.state, pull.merged_by, pull.merge_commit_sha = head, "closed", login, sha
        pull.merged_at = pull.closed_at = pull.updated_at = _now()
        return sha

    def _close(self, pull: Pull, login: str) -> None:
        pull.head_sha = self._head(pull)
        pull.state, pull.closed_by = "closed", login
        pull.closed_at = pull.updated_at = _now()

    def _ancestors(self, sha: str) -> list[str]:
        seen, queue = [], [sha]
        while queue:
            current = queue.pop(0)
            if current not in seen:
                seen.append(current)
                queue += self.commits[current].parents
        return seen

    def _merge_base(self, head: str, base: str) -> str:
        on_base = set(self._ancestors(base))
        return next(sha for sha in self._ancestors(head) if sha in on_base)

    def _is_ancestor(self, sha: str, of: str) -> bool:
        return sha in self._ancestors(of)

    # Objects as GitHub renders them ------------------------------------------------------------

    def _user(self, login: str) -> dict[str, Any]:
        user = _example("pull-request")["user"]
        user.update(login=login, id=_id(login), node_id=f"U_{_id(login)}", type="User", site_admin=False,
                    html_url=f"https://github.example/{login}", url=f"{self.url}/users/{login}")
        return user

    def _team(self, slug: str) -> dict[str, Any]:
        team = _example("pull-request")["requested_teams"][0]
        team.update(id=_id(slug), node_id=f"T_{_id(slug)}", name=slug, slug=slug, parent=None,
                    type="organization", url=f"{self.url}/orgs/{self.owner}/teams/{slug}",
                    html_url=f"https://github.example/orgs/{self.owner}/teams/{slug}")
        return team

    def _label(self, name: str) -> dict[str, Any]:
        label = _example("label-items")[0]
        label.update(id=_id(name), node_id=f"L_{_id(name)}", name=name, default=False,
                     url=f"{self.url}/repos/{self.repository}/labels/{name}")
        return label

    def _repo(self) -> dict[str, Any]:
        repo = _example("pull-request")["head"]["repo"]
        repo.update(id=_id(self.repository), node_id=f"R_{_id(self.repository)}", name=self.name,
                    full_name=self.repository, owner=self._user(self.owner), html_url=self.html,
                    url=f"{self.url}/repos/{self.repository}")
        return repo

    def _full_repository(self) -> dict[str, Any]:
        repo = _example("full-repository-default-response")
        # Not a fork: no parent or source (GitHub's example shows a fork's, short of required fields).
        for fork_only in ("parent", "source"):
            repo.pop(fork_only, None)
        repo.update({key: value for key, value in self._repo().items() if key in repo})
        repo.setdefault("language", None)  # required by the schema, absent from the example
        return repo

    def _pull_full(self, pull: Pull) -> dict[str, Any]:
        rendered = _example("pull-request")
        api = f"{self.url}/repos/{self.repository}"
        head = self._head(pull)

        def end(ref: str, sha: str) -> dict[str, Any]:
            return {"label": f"{self.owner}:{ref}", "ref": ref, "sha": sha, "user": self._user(self.owner),
                    "repo": self._repo()}

        rendered.update(
            url=f"{api}/pulls/{pull.number}", id=_id(f"pull{pull.number}"), node_id=f"PR_{pull.number}",
            html_url=f"{self.html}/pull/{pull.number}", number=pull.number, state=pull.state, locked=False,
            title=pull.title, body=pull.body, user=self._user(pull.user),
            labels=[self._label(label) for label in pull.labels], milestone=None, active_lock_reason=None,
            created_at=pull.created_at, updated_at=pull.updated_at, closed_at=pull.closed_at,
            merged_at=pull.merged_at, merge_commit_sha=pull.merge_commit_sha, assignee=None, assignees=[],
            requested_reviewers=[self._user(login) for login in pull.reviewers],
            requested_teams=[self._team(slug) for slug in pull.teams],
            head=end(pull.head, head), base=end(pull.base, self.branches[pull.base]),
            draft=False, merged=pull.merged_at is not None, mergeable=pull.state == "open",
            rebaseable=pull.state == "open", mergeable_state=self._mergeable_state(pull),
            merged_by=self._user(pull.merged_by) if pull.merged_by else None,
            comments=len(pull.comments), review_comments=0, commits=1, additions=5, deletions=5,
            changed_files=1, auto_merge=None,
        )
        return rendered

    def _pull_simple(self, pull: Pull) -> dict[str, Any]:
        simple = _description()["components"]["schemas"]["pull-request-simple"]["properties"]
        return {key: value for key, value in self._pull_full(pull).items() if key in simple}


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """``log`` keeps every request; the test output stays readable."""


def _explain(error: Exception) -> str:
    """openapi-core's error with the schema errors behind it, which say which field is wrong."""
    details = [f"{'/'.join(str(p) for p in problem.absolute_path) or '(body)'}: {problem.message[:300]}"
               for problem in getattr(error.__cause__, "schema_errors", None) or []]
    return f"{type(error).__name__}: {error}" + (f" [{'; '.join(details)}]" if details else "")
