"""What both backends share: the reuse of an earlier run, and the environment contract, for the two
jobs of the training image: training, and scoring versions on the evaluation dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_lifecycle.policy import CHALLENGER, CHAMPION, data_window
from model_lifecycle.results import Plan, RegisteredVersion, Scoring
from model_lifecycle.training import (
    AirflowIdentity,
    evaluation_key,
    evaluator_environment,
    trainer_environment,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from model_lifecycle.operators.base import ModelLifecycleOperator
    from model_lifecycle.policy import DataWindow


def reusable_run(operator: ModelLifecycleOperator, window: DataWindow) -> str | None:
    """The finished MLflow run that already trained this model on this window, if any. Otherwise the
    runs an interrupted attempt left RUNNING are marked KILLED, so the run list tells the truth."""
    earlier = operator.registry.finished_run(window)
    if earlier is not None:
        operator.log.info("MLflow run %s already trained %s on this window; reusing it, nothing is "
                          "trained again.", earlier.info.run_id, operator.spec.registered_model)
        return earlier.info.run_id
    killed = operator.registry.fail_unfinished_runs(window)
    if killed:
        operator.log.info("Marked MLflow run(s) %s of an interrupted attempt as KILLED.", killed)
    return None


def contract_environment(operator: ModelLifecycleOperator, context: Context, window: DataWindow, *,
                         tracking_uri: str) -> dict[str, str]:
    """The trainer's environment contract for this task instance."""
    return trainer_environment(operator.spec, window, _identity(context), tracking_uri=tracking_uri)


def _identity(context: Context) -> AirflowIdentity:
    ti = context["ti"]
    return AirflowIdentity(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, try_number=ti.try_number)


@dataclass(frozen=True)
class ScoringJob:
    """One comparison to make: the versions in their roles, the window the evaluation dataset is drawn
    from, and the key the evaluator's run is found by, so that a rerun makes it once."""

    operator: ModelLifecycleOperator
    candidate: RegisteredVersion
    window: DataWindow
    versions: dict[str, str]

    @classmethod
    def of(cls, operator: ModelLifecycleOperator, context: Context, *, backend: str,
           registered: RegisteredVersion | XComArg | dict[str, str],
           plan: Plan | XComArg | dict[str, str] | None,
           versions: dict[str, str] | None = None) -> ScoringJob:
        """The version beside the production version (the champion) and the spec's
        ``evaluation.compare_with`` aliases, on the evaluation dataset of the run's window; without a
        plan (a manual promotion), of the freshest window: the spec's lookback up to now. ``versions``,
        the roles an earlier call resolved, keeps the comparison the same when the aliases have moved
        since (a pod that ran while production changed)."""
        from airflow.sdk.exceptions import AirflowSkipException

        spec, registry = operator.spec, operator.registry
        if spec.training.backend != backend:
            raise AirflowSkipException(f"{spec.name} trains on backend {spec.training.backend!r}, where its "
                                       f"data is; the score task of that backend scores it")
        candidate = RegisteredVersion.from_xcom(registered)  # type: ignore[arg-type]
        if plan is not None:
            window = Plan.from_xcom(plan).window  # type: ignore[arg-type]
        else:
            window = data_window(interval_end=None, run_after=context["dag_run"].run_after,
                                 lookback_days=spec.data.lookback_days)
        if versions is None:
            versions = {CHALLENGER: candidate.version}
            roles = [(CHAMPION, spec.aliases.production),
                     *((alias, alias) for alias in spec.evaluation.compare_with)]
            for role, alias in roles:
                found = registry.by_alias(alias)
                if found is not None and found.version not in versions.values():
                    versions[role] = found.version
        return cls(operator=operator, candidate=candidate, window=window, versions=versions)

    @property
    def key(self) -> str:
        return evaluation_key(self.operator.spec, self.window, self.versions)

    def environment(self, context: Context, *, tracking_uri: str) -> dict[str, str]:
        return evaluator_environment(self.operator.spec, self.window, _identity(context),
                                     tracking_uri=tracking_uri, models=self.versions)

    def describe(self) -> str:
        start, end = self.window.as_strings()
        roles = ", ".join(f"{role} v{version}" for role, version in self.versions.items())
        return f"{roles} on the evaluation dataset of {start} to {end}"

    def reusable(self) -> Scoring | None:
        """The finished comparison an earlier attempt made; otherwise its unfinished runs are KILLED."""
        registry = self.operator.registry
        earlier = registry.finished_evaluation(self.key)
        if earlier is not None:
            self.operator.log.info("MLflow run %s already scored %s; reusing it, nothing is scored again.",
                                   earlier.info.run_id, self.describe())
            return self.done(earlier.info.run_id)
        killed = registry.fail_unfinished_evaluations(self.key)
        if killed:
            self.operator.log.info("Marked evaluation run(s) %s of an interrupted attempt as KILLED.", killed)
        return None

    def finished(self) -> Scoring:
        """The comparison the evaluator has just made; it must have logged it."""
        from airflow.sdk.exceptions import AirflowException

        run = self.operator.registry.finished_evaluation(self.key)
        if run is None:
            raise AirflowException(
                "the evaluator exited successfully but logged no finished evaluation run tagged "
                f"evaluation.key={self.key} in experiment {self.operator.spec.experiment!r}; it must honour "
                "the environment contract")
        return self.done(run.info.run_id)

    def done(self, run_id: str) -> Scoring:
        from model_lifecycle.registry import Tag

        registry = self.operator.registry
        registry.set_tags(self.candidate.version, {Tag.EVALUATION_RUN: run_id})
        registry.drop_tags(self.candidate.version, [Tag.NO_FRESH_COMPARISON])
        return Scoring(run_id=run_id, versions=self.versions)

    def unavailable(self, problem: str) -> Scoring:
        """No comparison could be made; the version says why, for the pull request to say it."""
        from model_lifecycle.registry import Tag

        self.operator.log.warning("No fresh comparison was made: %s", problem)
        self.operator.registry.set_tags(self.candidate.version, {Tag.NO_FRESH_COMPARISON: problem[:5000]})
        return Scoring(run_id=None, versions=self.versions, problem=problem)
