"""The steps of the cycle that only read and write MLflow: plan, resolve, register, evaluate, Staging,
Production."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.bases.skipmixin import SkipMixin
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.lease import PromotionLeaseMixin
from model_lifecycle.links import VERSION_LINKS, run_url, version_links
from model_lifecycle.notifications import notify
from model_lifecycle.operators.base import MLFLOW_CONN_ID, ModelLifecycleOperator, force_reason, run_type
from model_lifecycle.policy import data_window, gate_fingerprint
from model_lifecycle.promotion import PromotionService
from model_lifecycle.results import Plan, ProductionChange, RegisteredVersion, Scoring
from model_lifecycle.specs import ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg
    from mlflow.entities.model_registry import ModelVersion

# Every model's production changes are announced through this alias: an event is added only when
# production really changed, and it names the model's ``production_asset``.
PRODUCTION_ALIAS = AssetAlias("model-lifecycle/production")


def production_asset(spec: ModelSpec) -> Asset:
    """The Asset whose events announce a new production version of the model."""
    return Asset(
        name=f"mlflow-model/{spec.registered_model}/{spec.aliases.production}",
        uri=f"mlflow://models/{quote(spec.registered_model, safe='')}/{spec.aliases.production}",
        group="model",
    )


class VersionOperator(ModelLifecycleOperator):
    """An operator that works on a registered model version: the UI's buttons lead to it, its MLflow
    run and its pull request (``links.VERSION_LINKS``)."""

    operator_extra_links = VERSION_LINKS
    registered: RegisteredVersion | XComArg | dict[str, str]

    @property
    def version(self) -> RegisteredVersion:
        return RegisteredVersion.from_xcom(self.registered)

    @property
    def extra_link_urls(self) -> dict[str, str]:
        """What the UI's buttons open; read when the task ends (none when it failed before its input
        was resolved)."""
        if not isinstance(self.registered, (RegisteredVersion, dict)):
            return {}
        return version_links(self.registry, self.mlflow.ui_url, self.version.version)


class VersionStepOperator(VersionOperator):
    """A step whose only input is the registered version."""

    template_fields = ("model", "registered")

    def __init__(self, *, spec: ModelSpec | str, registered: RegisteredVersion | XComArg,
                 mlflow_conn_id: str = MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.registered = registered


class PlanOperator(ModelLifecycleOperator):
    """Chooses the data window and decides whether this run may promote (backfill safety)."""

    def __init__(self, *, spec: ModelSpec | str, mlflow_conn_id: str = MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from model_lifecycle.registry import window_end

        params = context["params"]
        dag_run = context["dag_run"]
        lookback_days = params.get("lookback_days") or self.spec.data.lookback_days
        window = data_window(
            interval_end=dag_run.data_interval_end,
            run_after=dag_run.run_after,
            lookback_days=lookback_days,
        )
        kind = run_type(context)
        production = self.registry.production()
        decision = PromotionService.of(self).decision(run_type=kind, window_end=window.end,
                                                      force_reason=force_reason(context))
        start, end = window.as_strings()
        self.log.info("Data window %s to %s (%s days, source %s); run type %s.", start, end,
                      lookback_days, self.spec.data.source, kind)
        self.log.info("Current production: %s.", "none" if production is None
                      else f"v{production.version} (data up to {window_end(production)})")
        self.log.info("Promotion %s: %s", "allowed" if decision.allowed else "NOT allowed", decision.reason)
        return Plan(window=window, lookback_days=lookback_days, run_type=kind, may_promote=decision.allowed,
                    forced=decision.forced, decision=decision.reason).to_xcom()


class ResolveVersionOperator(PromotionLeaseMixin, ModelLifecycleOperator):
    """The version an on-call engineer asked to promote (a number or an alias such as
    ``previous-production``), taken on for promotion (one per InferenceService at a time), with the
    request recorded on it: who, why, when, as the decision the promotion steps read."""

    def __init__(self, *, spec: ModelSpec | str, mlflow_conn_id: str = MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, str]:
        from model_lifecycle.registry import Status, Tag, now_iso

        params = context["params"]
        requested, reason = str(params["version"]).strip(), params["reason"]
        name = self.spec.registered_model
        version = self._resolve(requested)
        status = version.tags.get(Tag.STATUS)
        if status in (Status.REJECTED, Status.ROLLOUT_FAILED):
            self.log.warning("%s v%s was %s earlier (%s); promoting it as requested.", name,
                             version.version, status, version.tags.get(Tag.REJECTED_REASON)
                             or version.tags.get(Tag.ROLLOUT_FAILURE))
        PromotionService.of(self).check_target(version.version)
        # After waiting for a promotion in flight, execute runs again: an alias is resolved anew.
        self.wait_for_turn(context, version.version)
        who = context["dag_run"].triggering_user_name or "unknown"
        decision = f"requested by {who}: {reason}"
        self.registry.set_tags(version.version, {
            Tag.REQUESTED_BY: who, Tag.REQUEST_REASON: reason, Tag.REQUESTED_AT: now_iso(),
            Tag.PROMOTION_DECISION: decision,
        })
        self.log.info("Promoting %s v%s (asked for %r), %s.", name, version.version, requested, decision)
        return RegisteredVersion(version=version.version, run_id=version.run_id).to_xcom()

    def _resolve(self, requested: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        name = self.spec.registered_model
        try:
            aliases = dict(self.registry.client.get_registered_model(name).aliases)
        except MlflowException:
            raise AirflowFailException(f"model: {name} is not registered in MLflow "
                                       f"({self.mlflow.tracking_uri}); no version to promote") from None
        if not requested.isdigit():
            if requested not in aliases:
                raise AirflowFailException(f"version: {name} has no alias {requested!r} "
                                           f"(its aliases: {aliases or 'none'})")
            requested = aliases[requested]
        try:
            return self.registry.version(requested)
        except MlflowException:
            raise AirflowFailException(f"version: {name} has no version {requested}") from None


class RegisterOperator(ModelLifecycleOperator):
    """Finds the run the trainer logged for this model and window, and registers one version from it."""

    template_fields = ("model", "plan")

    def __init__(self, *, spec: ModelSpec | str, plan: Plan | XComArg, mlflow_conn_id: str = MLFLOW_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, str]:
        from model_lifecycle.registry import Tag

        window = Plan.from_xcom(self.plan).window
        run = self.registry.finished_run(window)
        if run is None:
            start, end = window.as_strings()
            raise AirflowFailException(
                f"no finished MLflow run of {self.spec.registered_model} for the data window {start} to "
                f"{end} in experiment {self.spec.experiment!r}; the train task must succeed first"
            )
        carried = (Tag.MODEL, Tag.DATA_SOURCE, Tag.WINDOW_START, Tag.WINDOW_END, Tag.EVALUATION_DIGEST,
                   Tag.DAG_ID, Tag.RUN_ID, Tag.TRY_NUMBER)
        tags = {key: run.data.tags[key] for key in carried if key in run.data.tags}
        tags[Tag.RUN_URL] = run_url(context)
        # The run links back to the Airflow run as well (the trainer cannot know the UI's address).
        self.registry.client.set_tag(run.info.run_id, Tag.RUN_URL, tags[Tag.RUN_URL])
        version = self.registry.register(run, tags)
        return RegisteredVersion(version=version.version, run_id=run.info.run_id).to_xcom()


class EvaluateOperator(VersionOperator, SkipMixin):
    """The evaluation gate, on the comparison the score task made: the challenger and the champion on
    the same evaluation dataset. A version that fails it, or a run that may not promote, ends here: the
    verdict, every role's figures and the dataset's digest are written to the version, and every
    downstream task is skipped."""

    template_fields = ("model", "plan", "registered", "scoring")

    def __init__(self, *, spec: ModelSpec | str, plan: Plan | XComArg,
                 registered: RegisteredVersion | XComArg, scoring: Scoring | XComArg,
                 mlflow_conn_id: str = MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_spec(spec, mlflow_conn_id)
        self.plan = plan
        self.registered = registered
        self.scoring = scoring

    def execute(self, context: Context) -> None:
        from model_lifecycle.evidence import metric_table
        from model_lifecycle.policy import MissingMetricError
        from model_lifecycle.registry import Tag

        plan, scoring = Plan.from_xcom(self.plan), Scoring.from_xcom(self.scoring)
        if scoring.run_id is None:
            raise AirflowFailException(f"the score task made no comparison: {scoring.problem}")
        version, name = self.version.version, self.spec.registered_model
        evaluation = self.spec.evaluation
        fingerprint = gate_fingerprint(evaluation.metrics,
                                       if_champion_unavailable=evaluation.if_champion_unavailable,
                                       evaluation_run_id=scoring.run_id)
        tags = self.registry.version(version).tags
        if tags.get(Tag.VERDICT) in ("passed", "rejected") and tags.get(Tag.GATE) == fingerprint:
            passed, summary, checks = tags[Tag.VERDICT] == "passed", tags[Tag.SUMMARY], tags[Tag.CHECKS]
            self.log.info("%s v%s was already judged on evaluation run %s by this gate: %s", name, version,
                          scoring.run_id, summary)
        else:
            try:
                comparison, result = PromotionService.of(self).judge(scoring.run_id)
            except MissingMetricError as error:
                message = (f"{name} v{version} (evaluation run {scoring.run_id}): {error} "
                           f"(evaluation.metrics of spec {self.spec.name!r})")
                # The version says why it went no further, for whoever reads the registry.
                self.registry.set_tags(version, {Tag.VERDICT: "error", Tag.SUMMARY: message})
                raise AirflowFailException(message) from None
            passed, summary, checks = result.passed, result.summary(), result.to_json()
            # An earlier comparison's roles and champion problem do not stand beside this verdict.
            self.registry.drop_tags(version, [key for key in tags if key.startswith(Tag.SCORES_PREFIX)]
                                    + [Tag.CHAMPION_PROBLEM])
            self.registry.set_tags(version, {
                Tag.VERDICT: "passed" if passed else "rejected",
                Tag.SUMMARY: summary,
                Tag.CHECKS: checks,
                Tag.BASELINE_VERSION: result.champion_version or "none",
                Tag.DATASET_DIGEST: comparison.dataset_digest,
                Tag.GATE: fingerprint,
                **{Tag.SCORES_PREFIX + model.role: json.dumps(
                    {"version": model.version, "metrics": dict(model.metrics)} if model.error is None
                    else {"version": model.version, "error": model.error[:2000]}, sort_keys=True)
                   for model in comparison.scored},
                **({Tag.CHAMPION_PROBLEM: result.champion_problem[:5000]} if result.champion_problem else {}),
            })
            if result.champion_problem:
                self.log.warning("The champion was not compared: %s", result.champion_problem)
            held_out = tags.get(Tag.EVALUATION_DIGEST)
            if held_out and held_out != comparison.dataset_digest:
                self.log.warning("The evaluation dataset (%s) is not the one the trainer held out (%s): the "
                                 "data source changed for this window since training.",
                                 comparison.dataset_digest, held_out)
            if not passed:
                self.registry.reject(version, f"evaluation gate: {summary}")
                notify(context, self.spec, "rejected", f"The evaluation gate rejected {name} v{version}: "
                       f"{summary}", version=version, links=self.extra_link_urls)

        decision = {Tag.PROMOTION_DECISION: plan.decision}
        if plan.forced:
            decision[Tag.FORCED_REASON] = plan.decision
        self.registry.set_tags(version, decision)
        self.registry.tag_run(self.version.run_id, decision)

        self.log.info("The evaluation gate, on the evaluation dataset the versions were scored on "
                      "together:\n%s", metric_table(json.loads(checks), scoring.versions))
        if not passed:
            self.log.warning("REJECTED by the evaluation gate: %s v%s: %s", name, version, summary)
        elif not plan.may_promote:
            self.log.warning("NOT PROMOTED: %s v%s passed the gate, but %s", name, version, plan.decision)
        else:
            self.log.info("PASSED the evaluation gate: %s v%s: %s", name, version, summary)
            return
        self.log.info("Skipping the promotion steps downstream.")
        self.skip(ti=context["ti"], tasks=self.get_flat_relatives(upstream=False))


class PromoteToStagingOperator(VersionStepOperator):
    """Stage Staging and the staging alias, once the GitOps target is known to take a proposal: a
    spec whose repository, branch, manifest or InferenceService is wrong fails here, before anything
    moves, and the version says why."""

    def execute(self, context: Context) -> None:
        version = self.version.version
        promotion = PromotionService.of(self)
        promotion.require_allowed(version, run_type=run_type(context), force_reason=force_reason(context))
        promotion.check_target(version)
        name = self.spec.registered_model
        if self.registry.promote_to_staging(version):
            self.log.info("%s v%s is in stage Staging with alias %r.", name, version,
                          self.spec.aliases.staging)
        else:
            self.log.info("%s v%s is already past Staging; left as it is.", name, version)


class PromoteToProductionOperator(VersionStepOperator):
    """Marks the verified version Production, archives the one it replaces, and announces it: an event
    of the model's ``production_asset``, through ``PRODUCTION_ALIAS`` (give it as the task's outlet),
    only when production changed, so a rerun of this task triggers nothing downstream."""

    def execute(self, context: Context) -> dict[str, Any]:
        version = self.version.version
        name = self.spec.registered_model
        PromotionService.of(self).require_allowed(version, run_type=run_type(context),
                                                  force_reason=force_reason(context))
        current = self.registry.production()
        previous = self.registry.promote_to_production(version)
        record = self.registry.version(version).tags
        self.log.info("%s v%s is in Production (alias %r)%s.", name, version, self.spec.aliases.production,
                      f"; v{previous} is archived with alias {self.spec.aliases.previous_production!r}"
                      if previous else "")
        self.log.info("Promotion record:\n%s", json.dumps(record, indent=2, sort_keys=True))
        change = ProductionChange(version=version, previous_version=previous,
                                  changed=current is None or current.version != version)
        if not change.changed:
            self.log.info("%s v%s was in Production already: nothing to announce.", name, version)
            return change.to_xcom()
        extra = {"registered_model": name, "version": version, "run_id": self.version.run_id,
                 "previous_version": previous}
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                context["outlet_events"][outlet].add(production_asset(self.spec), extra=extra)
        notify(context, self.spec, "promoted", f"{name} v{version} is in Production"
               + (f"; v{previous} is archived as {self.spec.aliases.previous_production}" if previous else "")
               + ".", version=version, links=self.extra_link_urls)
        return change.to_xcom()
