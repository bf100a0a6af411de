"""The steps of the cycle that only read and write MLflow: plan, register, evaluate, Staging, Production."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset
from airflow.sdk.bases.skipmixin import SkipMixin
from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.operators.base import ModelLifecycleOperator, run_type, run_url, window_of
from model_lifecycle.policy import data_window, evaluate_gate, gate_fingerprint
from model_lifecycle.specs import ModelSpec

if TYPE_CHECKING:
    from airflow.sdk import Context


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


class RegisterOperator(ModelLifecycleOperator):
    """Finds the run the trainer logged for this model and window, and registers one version from it."""

    inputs = ('plan',)
    template_fields: Sequence[str] = inputs

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
        version = self.registry.register(run, tags)
        return {"version": version.version, "run_id": run.info.run_id}


class EvaluateOperator(ModelLifecycleOperator, SkipMixin):
    """The evaluation gate. A version that fails it, or a run that may not promote, ends here: the
    verdict and the reason are written to MLflow and every downstream task is skipped."""

    inputs = ('plan', 'registered')
    template_fields: Sequence[str] = inputs

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
    inputs = ('registered',)
    template_fields: Sequence[str] = inputs

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
    template_fields: Sequence[str] = inputs

    def execute(self, context: Context) -> dict[str, str | None]:
        version = self.registered["version"]
        name = self.spec.registered_model
        self.require_promotion_allowed(context, version)
        previous = self.registry.promote_to_production(version)
        record = self.registry.version(version).tags
        self.log.info("%s v%s is in Production (alias %r)%s.", name, version, self.spec.aliases.production,
                      f"; v{previous} is archived with alias {self.spec.aliases.previous_production!r}"
                      if previous else "")
        self.log.info("Promotion record:\n%s", json.dumps(record, indent=2, sort_keys=True))
        context["outlet_events"][production_asset(self.spec)].extra = {
            "registered_model": name,
            "version": version,
            "run_id": self.registered["run_id"],
            "previous_version": previous,
        }
        return {"version": version, "previous_version": previous}
