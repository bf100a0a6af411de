"""The steps of the cycle that only read and write MLflow: plan, register, evaluate, Staging, Production."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.bases.skipmixin import SkipMixin
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.operators.base import ModelLifecycleOperator, run_type, run_url, window_of
from model_lifecycle.policy import data_window, evaluate_gate, gate_fingerprint
from model_lifecycle.specs import ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context
    from mlflow.entities.model_registry import ModelVersion


def production_asset(spec: ModelSpec) -> Asset:
    """The Asset whose events announce a new production version of the model."""
    return Asset(
        name=f"mlflow-model/{spec.registered_model}/{spec.aliases.production}",
        uri=f"mlflow://models/{quote(spec.registered_model, safe='')}/{spec.aliases.production}",
        group="model",
    )


class PlanOperator(ModelLifecycleOperator):
    """Chooses the data window and decides whether this run may promote (backfill safety)."""

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
        production_end = window_end(production) if production else None
        decision = self.promotion_decision(context, window.end)
        start, end = window.as_strings()
        self.log.info("Data window %s to %s (%s days, source %s); run type %s.", start, end,
                      lookback_days, self.spec.data.source, kind)
        self.log.info("Current production: %s.",
                      f"v{production.version} (data up to {production_end})" if production else "none")
        self.log.info("Promotion %s: %s", "allowed" if decision.allowed else "NOT allowed", decision.reason)
        return {
            "window_start": start,
            "window_end": end,
            "lookback_days": lookback_days,
            "run_type": kind,
            "may_promote": decision.allowed,
            "forced": decision.forced,
            "decision": decision.reason,
        }


class ResolveVersionOperator(ModelLifecycleOperator):
    """The version an on-call engineer asked to promote (a number or an alias such as
    ``previous-production``), taken on for promotion (one per InferenceService at a time), with the
    request recorded on it: who, why, when. Its result stands in for both the plan and the registered
    version of the promotion steps."""

    def execute(self, context: Context) -> dict[str, Any]:
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
        # After waiting for a promotion in flight, execute runs again: an alias is resolved anew.
        self.wait_for_turn(context, version.version)
        who = context["dag_run"].triggering_user_name or "unknown"
        decision = f"requested by {who}: {reason}"
        self.registry.set_tags(version.version, {
            Tag.REQUESTED_BY: who, Tag.REQUEST_REASON: reason, Tag.REQUESTED_AT: now_iso(),
            Tag.PROMOTION_DECISION: decision,
        })
        self.log.info("Promoting %s v%s (asked for %r), %s.", name, version.version, requested, decision)
        return {"version": version.version, "run_id": version.run_id,
                "window_start": version.tags.get(Tag.WINDOW_START, ""),
                "window_end": version.tags.get(Tag.WINDOW_END, ""),
                "decision": decision, "may_promote": True, "forced": True}

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

    inputs = ("plan",)

    def execute(self, context: Context) -> dict[str, str]:
        from model_lifecycle.registry import Tag

        window = window_of(self.plan)
        run = self.registry.finished_run(window)
        if run is None:
            start, end = window.as_strings()
            raise AirflowFailException(
                f"no finished MLflow run of {self.spec.registered_model} for the data window {start} to "
                f"{end} in experiment {self.spec.experiment!r}; the train task must succeed first"
            )
        carried = (Tag.MODEL, Tag.DATA_SOURCE, Tag.WINDOW_START, Tag.WINDOW_END, Tag.DAG_ID, Tag.RUN_ID,
                   Tag.TRY_NUMBER)
        tags = {key: run.data.tags[key] for key in carried if key in run.data.tags}
        tags[Tag.RUN_URL] = run_url(context)
        # The run links back to the Airflow run as well (the trainer cannot know the UI's address).
        self.registry.client.set_tag(run.info.run_id, Tag.RUN_URL, tags[Tag.RUN_URL])
        version = self.registry.register(run, tags)
        return {"version": version.version, "run_id": run.info.run_id}


class EvaluateOperator(ModelLifecycleOperator, SkipMixin):
    """The evaluation gate. A version that fails it, or a run that may not promote, ends here: the
    verdict and the reason are written to MLflow and every downstream task is skipped."""

    inputs = ("plan", "registered")

    def execute(self, context: Context) -> None:
        from model_lifecycle.policy import MissingMetricError
        from model_lifecycle.registry import Tag

        version, run_id = self.registered["version"], self.registered["run_id"]
        name = self.spec.registered_model
        tags = self.registry.version(version).tags
        fingerprint = gate_fingerprint(self.spec.evaluation.metrics)
        if tags.get(Tag.VERDICT) and tags.get(Tag.GATE) == fingerprint:
            passed, summary = tags[Tag.VERDICT] == "passed", tags[Tag.SUMMARY]
            self.log.info("%s v%s was already evaluated against this gate: %s", name, version, summary)
        else:
            production = self.registry.production()
            baseline = production if production is not None and production.version != version else None
            try:
                result = evaluate_gate(
                    self.spec.evaluation.metrics,
                    self.registry.metrics(run_id),
                    baseline_metrics=self.registry.metrics(baseline.run_id) if baseline else None,
                    baseline_version=baseline.version if baseline else None,
                )
            except MissingMetricError as error:
                raise AirflowFailException(
                    f"{name} v{version} (run {run_id}): {error} (evaluation.metrics of spec "
                    f"{self.spec.name!r})"
                ) from None
            passed, summary = result.passed, result.summary()
            self.registry.set_tags(version, {
                Tag.VERDICT: "passed" if passed else "rejected",
                Tag.SUMMARY: summary,
                Tag.CHECKS: result.to_json(),
                Tag.BASELINE_VERSION: result.baseline_version or "none",
                Tag.GATE: fingerprint,
            })
            if not passed:
                self.registry.reject(version, f"evaluation gate: {summary}")
                self.notify(context, "rejected", f"The evaluation gate rejected {name} v{version}: {summary}",
                            version=version)

        decision = {Tag.PROMOTION_DECISION: self.plan["decision"]}
        if self.plan["forced"]:
            decision[Tag.FORCED_REASON] = self.plan["decision"]
        self.registry.set_tags(version, decision)
        self.registry.tag_run(run_id, decision)

        if not passed:
            self.log.warning("REJECTED by the evaluation gate: %s v%s: %s", name, version, summary)
        elif not self.plan["may_promote"]:
            self.log.warning("NOT PROMOTED: %s v%s passed the gate, but %s", name, version,
                             self.plan["decision"])
        else:
            self.log.info("PASSED the evaluation gate: %s v%s: %s", name, version, summary)
            return
        self.log.info("Skipping the promotion steps downstream.")
        self.skip(ti=context["ti"], tasks=self.get_flat_relatives(upstream=False))


class PromoteToStagingOperator(ModelLifecycleOperator):
    inputs = ("registered",)

    def execute(self, context: Context) -> None:
        version = self.registered["version"]
        self.require_promotion_allowed(context, version)
        name = self.spec.registered_model
        if self.registry.promote_to_staging(version):
            self.log.info("%s v%s is in stage Staging with alias %r.", name, version,
                          self.spec.aliases.staging)
        else:
            self.log.info("%s v%s is already past Staging; left as it is.", name, version)


class PromoteToProductionOperator(ModelLifecycleOperator):
    """Marks the verified version Production, archives the one it replaces, and announces it through
    the ``production_asset`` (give it as the task's outlet)."""

    inputs = ("registered",)

    def execute(self, context: Context) -> dict[str, str | None]:
        version = self.registered["version"]
        name = self.spec.registered_model
        self.require_promotion_allowed(context, version)
        current = self.registry.production()
        previous = self.registry.promote_to_production(version)
        record = self.registry.version(version).tags
        self.log.info("%s v%s is in Production (alias %r)%s.", name, version, self.spec.aliases.production,
                      f"; v{previous} is archived with alias {self.spec.aliases.previous_production!r}"
                      if previous else "")
        self.log.info("Promotion record:\n%s", json.dumps(record, indent=2, sort_keys=True))
        extra = {"registered_model": name, "version": version, "run_id": self.registered["run_id"],
                 "previous_version": previous}
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):  # a DAG that promotes any model names it at run time
                context["outlet_events"][outlet].add(production_asset(self.spec), extra=extra)
            else:
                context["outlet_events"][outlet].extra = extra
        if current is None or current.version != version:
            self.notify(context, "promoted", f"{name} v{version} is in Production"
                        + (f"; v{previous} is archived as {self.spec.aliases.previous_production}"
                           if previous else "") + ".", version=version)
        return {"version": version, "previous_version": previous}
