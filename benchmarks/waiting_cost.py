"""What waiting costs GitHub and the Kubernetes API: the merge wait and the rollout wait, in simulated time.

Both waits run the real triggers (``MergeTrigger``, ``InferenceServiceRolloutTrigger``) with their
default poll intervals, against the stand-ins the tests use: the GitHub API of
``tests/support/github_server.py`` (which answers ``If-None-Match`` with 304 and, as GitHub does, does
not count a 304 against the rate limit) and the Kubernetes API of ``tests/support/kube_api.py``. Every
request is a real HTTP request from the real clients; only the waiting is simulated. The triggers read
the clock and sleep through their modules' ``dt`` and ``asyncio`` names, and those two are swapped for a
clock that skips each sleep, so an hour of polling takes seconds of wall time while requests still take
their real time.

- **GitHub**: one pull request waits an hour without a merge (the task's first look, then the trigger
  until its deadline): requests sent and requests counted against the rate limit. Then ``--trials``
  pull requests are merged at seeded random instants within the hour; the latency is from the merge
  to the trigger's event (the next poll that sees it): median and max.
- **Kubernetes**: the rollout trigger waits the default ``rollout.timeout_minutes`` for an
  InferenceService whose new revision is not ready yet: Kubernetes API requests per minute of waiting.

    .venv/bin/python -m benchmarks.waiting_cost [--trials 50] [--seed 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import tempfile
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import yaml

from embedded.airflow_env import airflow_environment
from model_lifecycle.specs import PROJECT_ROOT

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from model_lifecycle.gitops import ChangeRef
    from model_lifecycle.gitops.github import GitHubProvider
    from model_lifecycle.specs import GitOps
    from tests.support.github_server import FakeGitHub
    from tests.support.kube_api import KubernetesApi

HOUR = 3600.0
SPEC = yaml.safe_load((PROJECT_ROOT / "include" / "models" / "demo.yaml").read_text())
MANIFEST_PATH = SPEC["gitops"]["manifest_path"]
ISVC = SPEC["gitops"]["inference_service"]
EXAMPLE_MANIFEST = PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice.yaml"


class SimulatedClock:
    """Wall time plus every sleep skipped: a request takes its real time, a wait takes none.

    ``at`` schedules an action (a reviewer merging) at a simulated instant; it runs during the sleep
    that spans that instant, so the next poll is the first that can see it."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self._actions: list[tuple[dt.datetime, Callable[[], None]]] = []

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.skipped)

    def at(self, when: dt.datetime, action: Callable[[], None]) -> None:
        self._actions = sorted([*self._actions, (when, action)], key=lambda pair: pair[0])

    async def sleep(self, seconds: float) -> None:
        wake = self.now() + dt.timedelta(seconds=seconds)
        while self._actions and self._actions[0][0] <= wake:
            self._actions.pop(0)[1]()
        self.skipped += max((wake - self.now()).total_seconds(), 0.0)
        await asyncio.sleep(0)  # still yield to the event loop, as a real sleep does

    @contextlib.contextmanager
    def driving(self, module: types.ModuleType) -> Iterator[None]:
        """Swap ``module``'s ``dt`` and ``asyncio`` for this clock (everything else stays real)."""
        clock = self

        class SimulatedDatetime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # the triggers ask for UTC
                return clock.now()

        fake_dt = types.SimpleNamespace(datetime=SimulatedDatetime, UTC=dt.UTC, timedelta=dt.timedelta)
        fake_asyncio = types.SimpleNamespace(sleep=self.sleep, to_thread=asyncio.to_thread)
        with mock.patch.object(module, "dt", fake_dt), mock.patch.object(module, "asyncio", fake_asyncio):
            yield


async def run_trigger(trigger: BaseTrigger) -> dict[str, Any]:
    """Until the trigger's first event, as the triggerer runs it."""
    async for event in trigger.run():
        return event.payload
    raise RuntimeError("the trigger ended without an event")


# GitHub -------------------------------------------------------------------------------------------


def github_provider(github: FakeGitHub) -> GitHubProvider:
    """A provider of its own, as each task and each trigger has (ETags are kept per provider)."""
    from model_lifecycle.gitops.github import GitHubProvider
    from model_lifecycle.hooks.github import GitHubAccess

    return GitHubProvider(github.repository, GitHubAccess(api_url=github.url, token=github.token))


def open_pull_request(github: FakeGitHub, version: int) -> ChangeRef:
    """What the open_pr task does for ``version``; returns the change to wait for."""
    from model_lifecycle.gitops import ChangeRequest
    from model_lifecycle.manifests import pin_model_version
    from model_lifecycle.policy import promotion_branch

    def edit(text: str) -> str:
        return pin_model_version(text, path=MANIFEST_PATH, name=ISVC["name"], namespace=ISVC["namespace"],
                                 storage_uri=f"s3://models/demo/{version}", registered_model="demo",
                                 version=str(version), run_id=f"run{version}")

    branch = promotion_branch(namespace=ISVC["namespace"], inference_service=ISVC["name"], model="demo",
                              version=str(version))
    change = github_provider(github).propose(ChangeRequest(
        branch=branch, base_branch="main", path=MANIFEST_PATH, edit=edit, title=f"Promote demo v{version}",
        body="benchmark")).change
    assert change is not None
    return change


def wait_for_merge(github: FakeGitHub, gitops: GitOps, change: ChangeRef,
                   clock: SimulatedClock) -> tuple[str, dt.datetime]:
    """What the wait_for_merge task does: one look, then the trigger until its event or an hour.
    Returns the event's state and when it came."""
    from model_lifecycle.triggers import merge as merge_module

    assert github_provider(github).check(change).state == "open"
    trigger = merge_module.MergeTrigger(
        gitops=gitops.model_dump(mode="json"), change=change.to_xcom(),
        deadline=(clock.now() + dt.timedelta(seconds=HOUR)).isoformat(),
        poll_interval=gitops.poll_interval_seconds)
    with clock.driving(merge_module):
        event = asyncio.run(run_trigger(trigger))
    return event["state"], clock.now()


def github_cost(trials: int, seed: int) -> None:
    from model_lifecycle.specs import GitOps
    from tests.support.github_server import FakeGitHub

    github = FakeGitHub(token=f"ghp_{uuid.uuid4().hex}").start()
    try:
        github.commit("main", {MANIFEST_PATH: EXAMPLE_MANIFEST.read_text()}, "Add the InferenceService")
        # The trigger reads its token from the connection, as in the triggerer.
        os.environ["AIRFLOW_CONN_GITHUB_DEFAULT"] = json.dumps(
            {"conn_type": "github", "host": github.url, "password": github.token})
        gitops = GitOps(provider="github", repository=github.repository, manifest_path=MANIFEST_PATH,
                        inference_service=ISVC)

        # A pull request nobody merges: an hour of waiting.
        change = open_pull_request(github, 1)
        sent_before, counted_before = len(github.log), github.rate_limit_used
        clock = SimulatedClock()
        started = clock.now()
        state, ended = wait_for_merge(github, gitops, change, clock)
        assert state == "timeout", state
        answers = Counter(status for _, _, status in github.log[sent_before:])
        counted = github.rate_limit_used - counted_before
        github.close(change.number, "benchmark")

        # Pull requests merged at random instants within the hour.
        rng = random.Random(seed)
        latencies, counted_per_merge = [], []
        for trial in range(trials):
            change = open_pull_request(github, trial + 2)
            clock = SimulatedClock()
            merged_at = clock.now() + dt.timedelta(seconds=rng.uniform(0, HOUR))

            def review(number: int = change.number) -> None:
                github.approve(number, "alice")
                github.merge(number, "alice")

            clock.at(merged_at, review)
            counted_before = github.rate_limit_used
            state, detected = wait_for_merge(github, gitops, change, clock)
            assert state == "merged", state
            latencies.append((detected - merged_at).total_seconds())
            counted_per_merge.append(github.rate_limit_used - counted_before)
    finally:
        github.stop()
    assert github.violations == [], github.violations

    minutes = (ended - started).total_seconds() / 60
    print(f"GitHub: one pull request waiting {minutes:.0f} simulated minutes without a merge, polled every "
          f"{gitops.poll_interval_seconds} s (gitops.poll_interval_seconds default)")
    print(f"{'requests sent':<46} {answers.total():>6}")
    for status, count in sorted(answers.items()):
        print(f"{f'  answered {status}' + (' Not Modified (free)' if status == 304 else ''):<46} {count:>6}")
    print(f"{'counted against the rate limit (5,000/h)':<46} {counted:>6}")
    print()
    print(f"Merge-to-detection latency, {trials} merges at random instants within the hour (seed {seed})")
    print(f"{'median':<46} {statistics.median(latencies):>6.1f} s")
    print(f"{'max':<46} {max(latencies):>6.1f} s")
    per_merge = statistics.median(counted_per_merge)
    print(f"{'counted against the rate limit per merge wait':<46} {per_merge:>6.0f}   (median: the task's "
          "look, the trigger's first poll, the merged answer, its reviews)")


# Kubernetes ---------------------------------------------------------------------------------------


def roll_out_slowly(api: KubernetesApi) -> tuple[str, str]:
    """The merged manifest is applied and KServe has created the new revision, which is not ready yet.
    Returns the new storage URI and the revision serving before the merge."""
    from kubernetes import client

    from model_lifecycle.hooks.kserve import GROUP, PLURAL, VERSION
    from tests.support.serving import inference_service_status

    configuration = client.Configuration()
    configuration.host = api.url
    objects = client.CustomObjectsApi(client.ApiClient(configuration))
    manifest = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    storage_uri = "s3://mlflow/artifacts/demo/2"
    manifest["spec"]["predictor"]["model"]["storageUri"] = storage_uri
    namespace, name = ISVC["namespace"], ISVC["name"]
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    old, new = f"{name}-predictor-00001", f"{name}-predictor-00002"
    status = inference_service_status(ready=old, created=new, rolled_out=old, traffic={old: 100},
                                      transition="InProgress", active="Loaded", target="Loading",
                                      deployment=("Unknown", "RevisionMissing"))
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})
    return storage_uri, old


def kubernetes_cost(workdir: Path) -> None:
    from model_lifecycle.specs import KServe, Rollout
    from model_lifecycle.triggers import rollout as rollout_module
    from tests.support.kube_api import KubernetesApi

    interval, minutes = KServe().poll_interval_seconds, Rollout().timeout_minutes
    api = KubernetesApi()
    try:
        kubeconfig = api.kubeconfig(workdir / "kubeconfig")
        os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}})
        storage_uri, previous_revision = roll_out_slowly(api)
        clock = SimulatedClock()
        trigger = rollout_module.InferenceServiceRolloutTrigger(
            kubernetes_conn_id="kubernetes_default", namespace=ISVC["namespace"], name=ISVC["name"],
            storage_uri=storage_uri, previous_revision=previous_revision, merge_sha="0" * 40,
            argocd_application=None, deadline=(clock.now() + dt.timedelta(minutes=minutes)).isoformat(),
            poll_interval=interval)
        before = len(list(api.handler))
        started = clock.now()
        with clock.driving(rollout_module):
            event = asyncio.run(run_trigger(trigger))
        waited = (clock.now() - started).total_seconds() / 60
        requests = list(api.handler)[before:]
    finally:
        api.stop()
    assert event["state"] == "timeout", event
    assert api.violations == [], api.violations

    kinds = Counter(f"{request.method.name} {request.resource.plural}" if request.resource
                    else f"{request.method.name} {request.url.path}" for request in requests)
    print(f"Kubernetes: rollout verification waiting {waited:.0f} simulated minutes "
          f"(rollout.timeout_minutes default) for a new revision that does not become ready, polled every "
          f"{interval:g} s (rollout.kserve.poll_interval_seconds default)")
    for kind, count in sorted(kinds.items()):
        print(f"{'requests: ' + kind:<46} {count:>6}")
    print(f"{'Kubernetes API requests per minute of waiting':<46} {len(requests) / waited:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trials", type=int, default=50, help="merges at random instants (default 50)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the merge instants (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        # Airflow reads its configuration on first import; the triggers read connections from here.
        os.environ.update(airflow_environment(workdir / "airflow", mlflow_url="http://127.0.0.1:9"))
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # the triggers log every poll
        github_cost(args.trials, args.seed)
        print()
        kubernetes_cost(workdir)


if __name__ == "__main__":
    main()
