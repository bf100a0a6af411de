"""Verifying the rollout of the merged change, and what happens when it fails.

Target ``local``: the model at the URI the merged manifest names loads in the declared serving runtime
(the real MLServer, ``runtime_server``) and answers the spec's smoke request. Target ``kserve``:
deferrable until the InferenceService serves the new version on a new, ready, fully rolled-out
revision (``triggers/rollout.py``); then the smoke request is sent to it and its answer checked.

With ``canary`` (``rollout.kserve.canary``) the new revision must have exactly the canary's share of
the traffic; then the version gets the canary alias and its record (``canary.*``), and stays out of
Production until a second change takes it to all of the traffic and that rollout is verified.

A rollout that fails after the merge is not left half-done: the version is tagged with the reason, and
with ``rollout.on_failed_rollout: revert`` a change pointing the InferenceService back at the
production version is proposed; the task fails with both links in its message.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.notifications import notify
from model_lifecycle.operators.base import MLFLOW_CONN_ID
from model_lifecycle.operators.lifecycle import VersionOperator
from model_lifecycle.promotion import KUBERNETES_CONN_ID, PromotionService
from model_lifecycle.results import Merge, Rollout
from model_lifecycle.specs import ModelSpec
from model_lifecycle.triggers.rollout import TIMEOUT, InferenceServiceRolloutTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from model_lifecycle.results import RegisteredVersion
    from model_lifecycle.rollout import Verdict


class VerifyRolloutSensor(VersionOperator):
    template_fields = ("model", "registered", "merge")
    ui_color = "#e5dbff"

    def __init__(self, *, spec: ModelSpec | str, registered: RegisteredVersion | XComArg,
                 merge: Merge | XComArg, canary: bool = False, mlflow_conn_id: str = MLFLOW_CONN_ID,
                 kubernetes_conn_id: str = KUBERNETES_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.registered = registered
        self.merge = merge
        self.canary = canary
        self.kubernetes_conn_id = kubernetes_conn_id

    @property
    def canary_percent(self) -> int | None:
        """The share of the traffic the new revision must have: the canary's, or None for all of it."""
        stage = self.spec.rollout.kserve.canary
        return stage.traffic_percent if self.canary and stage is not None else None

    @property
    def merged(self) -> Merge:
        return Merge.from_xcom(self.merge)

    @property
    def promotion(self) -> PromotionService:
        return PromotionService.of(self)

    def execute(self, context: Context) -> dict[str, Any] | None:
        if self.spec.rollout.target == "local":
            return self._verified(context, "local", self._verify_locally(context))
        self._defer_to_kserve()
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event["state"] == TIMEOUT:
            self._rollout_failed(context, f"it did not complete within rollout.timeout_minutes "
                                          f"({self.spec.rollout.timeout_minutes}): {event['reason']}; last "
                                          f"observed conditions: {event['conditions'] or 'none'}")
        if event["state"] == "failed":
            self._rollout_failed(context, event["reason"])
        details = [event["reason"]]
        if self.spec.rollout.smoke_request is not None:
            details.append(self._smoke_test_kserve(context, event["url"]))
        return self._verified(context, "kserve", "; ".join(details))

    # Target local ------------------------------------------------------------------------------

    def _verify_locally(self, context: Context) -> str:
        import tempfile
        from pathlib import Path

        from model_lifecycle.gitops import provider_for
        from model_lifecycle.manifests import read_pinned_model
        from model_lifecycle.rollout import check_pinned_model
        from model_lifecycle.runtime_server import RuntimeStartError, download_model, serve_and_ask
        from model_lifecycle.runtimes import RUNTIMES

        gitops = self.spec.gitops
        isvc = gitops.inference_service
        version = self.version.version
        text, commit = provider_for(gitops).read_file(self.merged.merge_sha, gitops.manifest_path)
        pinned = read_pinned_model(text, path=gitops.manifest_path, name=isvc.name, namespace=isvc.namespace)
        verdicts = [self._require(context, check_pinned_model(
            pinned, storage_uri=self.promotion.storage_uri(version),
            registered_model=self.spec.registered_model, version=version))]
        runtime = RUNTIMES[self.spec.rollout.runtime]
        assert pinned.storage_uri is not None  # check_pinned_model passed
        with tempfile.TemporaryDirectory(prefix="rollout-") as workdir:
            model_dir = download_model(self.mlflow.proxied_uri(pinned.storage_uri), Path(workdir) / "model",
                                       tracking_uri=self.mlflow.tracking_uri)
            try:
                verdict = serve_and_ask(runtime, model_dir, model_name=isvc.name,
                                        smoke=self.spec.rollout.smoke_request,
                                        protocol=self.spec.rollout.kserve.protocol,
                                        log_path=Path(workdir) / "runtime.log")
            except RuntimeStartError as error:
                self._rollout_failed(context, f"the model at {pinned.storage_uri} does not load in "
                                              f"{runtime.title}: {error.error}")
        verdicts.append(self._require(context, verdict))
        return f"at {commit[:12]}: " + "; ".join(verdict.reason for verdict in verdicts)

    # Target kserve -----------------------------------------------------------------------------

    def _defer_to_kserve(self) -> None:
        from model_lifecycle.hooks.argocd import ArgoCdHook
        from model_lifecycle.registry import Tag

        isvc = self.spec.gitops.inference_service
        version = self.version.version
        application = None
        if ArgoCdHook.configured():
            application = self.spec.rollout.kserve.argocd_application or isvc.name
            self.log.info("Argo CD is configured: Application %r must sync %s first.", application,
                          self.merged.merge_sha)
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=self.spec.rollout.timeout_minutes)
        previous = self.registry.version(version).tags.get(Tag.PREVIOUS_REVISION)
        share = "all" if self.canary_percent is None else f"{self.canary_percent}%"
        self.log.info("Waiting until %s/%s serves v%s on a revision newer than %r with %s of the traffic, "
                      "until %s.", isvc.namespace, isvc.name, version, previous, share,
                      deadline.isoformat(timespec="seconds"))
        self.defer(
            trigger=InferenceServiceRolloutTrigger(
                kubernetes_conn_id=self.kubernetes_conn_id,
                namespace=isvc.namespace,
                name=isvc.name,
                storage_uri=self.promotion.storage_uri(version),
                previous_revision=previous,
                merge_sha=self.merged.merge_sha,
                argocd_application=application,
                deadline=deadline.isoformat(),
                poll_interval=self.spec.rollout.kserve.poll_interval_seconds,
                canary_percent=self.canary_percent,
            ),
            method_name="execute_complete",
        )

    def _smoke_test_kserve(self, context: Context, status_url: str | None) -> str:
        from model_lifecycle.hooks.kserve import KServeHook
        from model_lifecycle.rollout import check_smoke_answer, smoke_predictions, smoke_request_body

        kserve = self.spec.rollout.kserve
        base = kserve.url or status_url
        if not base:
            raise AirflowFailException(f"{self._subject()}: the InferenceService has no status.url; set "
                                       "rollout.kserve.url to where Airflow reaches it")
        smoke = self.spec.rollout.smoke_request
        assert smoke is not None
        response = KServeHook.infer(base, self.spec.gitops.inference_service.name, kserve.protocol,
                                    smoke_request_body(kserve.protocol, smoke))
        if response.status_code != 200:
            self._rollout_failed(context, f"the smoke request to {response.url} got HTTP "
                                          f"{response.status_code}: {response.text[:500]}")
        try:
            predictions = smoke_predictions(kserve.protocol, response.json())
        except ValueError as error:
            self._rollout_failed(context, str(error))
        verdict = self._require(context, check_smoke_answer(smoke, predictions))
        return f"{verdict.reason} from {response.url}"

    # Outcomes ----------------------------------------------------------------------------------

    def _require(self, context: Context, verdict: Verdict) -> Verdict:
        if not verdict.ok:
            self._rollout_failed(context, verdict.reason)
        return verdict

    def _subject(self) -> str:
        isvc = self.spec.gitops.inference_service
        stage = "rollout" if self.canary_percent is None else f"canary ({self.canary_percent}%)"
        return (f"{stage} of {self.spec.registered_model} v{self.version.version} to "
                f"{isvc.namespace}/{isvc.name}")

    def _verified(self, context: Context, target: Literal["local", "kserve"], detail: str) -> dict[str, Any]:
        from model_lifecycle.registry import Tag, now_iso

        version = self.version.version
        if self.canary_percent is not None:
            self.log.info("Canary verified: %s", detail)
            self.registry.mark_canary(version, traffic_percent=self.canary_percent, detail=detail)
            return Rollout(target=target, detail=detail).to_xcom()
        self.log.info("Rollout verified: %s", detail)
        self.registry.set_tags(version, {Tag.ROLLOUT_TARGET: target, Tag.ROLLOUT_DETAIL: detail})
        self.registry.set_tags(version, {Tag.ROLLOUT_VERIFIED_AT: now_iso()}, keep_existing=True)
        return Rollout(target=target, detail=detail).to_xcom()

    def _rollout_failed(self, context: Context, reason: str) -> NoReturn:
        from model_lifecycle.registry import Status, Tag

        version = self.version.version
        change = self.registry.version(version).tags.get(Tag.PR_URL) or f"merge {self.merged.merge_sha}"
        if self.spec.rollout.on_failed_rollout == "revert":
            revert = self.promotion.propose_revert(version, reason)
        else:
            revert = "none (rollout.on_failed_rollout is 'fail')"
        self.registry.set_tags(version, {Tag.STATUS: Status.ROLLOUT_FAILED, Tag.ROLLOUT_FAILURE: reason,
                                         Tag.REVERT: revert})
        self.registry.drop_canary(version)
        message = f"{self._subject()} failed: {reason}. The change: {change}. The revert: {revert}."
        notify(context, self.spec, "rollout_failed", message, version=version,
               links={**self.extra_link_urls, "revert": revert if "://" in revert else ""})
        raise AirflowFailException(message)


def rollout_task(spec: ModelSpec, **kwargs: Any) -> BaseOperator:
    """The verify task; on target ``local`` it checks in the worker and is bounded by the rollout
    timeout, on ``kserve`` the trigger's deadline bounds it."""
    if spec.rollout.target == "local":
        kwargs.setdefault("execution_timeout", dt.timedelta(minutes=spec.rollout.timeout_minutes))
    return VerifyRolloutSensor(spec=spec, **kwargs)
