"""The on-call Airflow DAG ``promote_model_version``: promote any version of any model, or roll back.

resolve → preflight → score → open_pr → wait_for_merge → verify_rollout → promote_production: the same
pull request, merge, verification and promotion record as retraining, without training; the version is
scored beside the current production on fresh data for the reviewer, and the gate is not enforced.
The trigger form lists the models of ``include/models/``; rolling back is promoting
``previous-production``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, chain

from model_lifecycle.operators.gitops import OpenPullRequestOperator
from model_lifecycle.operators.lifecycle import (
    PRODUCTION_ALIAS,
    PromoteToProductionOperator,
    ResolveVersionOperator,
)
from model_lifecycle.operators.preflight import PreflightOperator
from model_lifecycle.operators.training import scoring_task
from model_lifecycle.policy import PROMOTION_POOL
from model_lifecycle.sensors.merge import WaitForMergeSensor
from model_lifecycle.sensors.rollout import VerifyRolloutSensor
from model_lifecycle.specs import load_catalog

MODEL = "{{ params.model }}"

DOC_MD = """\
# Promote a model version (or roll back)

Pick the model, the version (a number, or an alias such as `previous-production`, `production`,
`staging`), and say why. The run opens a pull request that points the model's InferenceService at
that version (once the preflight has loaded it in the declared serving runtime); merging it is the
approval. Before it is opened, the version and the current production are scored on the evaluation
dataset of the freshest data (the model's lookback up to now), on its training backend, and the pull
request shows both side by side with the gate's result; the gate is not enforced here. When no
comparison can be made (the data or a model cannot be read), the pull request says so plainly. The
rollout is verified as for retraining; then the version becomes Production and the one it replaces is
archived as `previous-production`.

**Rolling back** is promoting `previous-production`: the version that was in production before comes
back, and the current one becomes `previous-production`, so rolling back twice returns to it.

Only one promotion at a time goes to an InferenceService: while another run (of this DAG or of the
model's retraining DAG) is promoting to it, `resolve` waits, deferred, and names the run it waits for
in its log. An alias is resolved when the wait is over.

The reason and who triggered the run are recorded on the version (`promotion.reason`,
`promotion.requested_by`). Versions that were rejected by the gate or failed a rollout may be promoted
on purpose: the log says so.
"""

catalog = load_catalog().specs
models = sorted(catalog)
backends = sorted({spec.training.backend for spec in catalog.values()})
if models:
    with DAG(
        dag_id="promote_model_version",
        description="Promote a chosen model version through GitOps, or roll back",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        doc_md=DOC_MD,
        tags=["model-lifecycle", "promote", "on-call"],
        default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
        params={
            "model": Param(models[0], type="string", enum=models, title="Model"),
            "version": Param("previous-production", type="string",
                             pattern=r"^([0-9]+|[a-z0-9]([a-z0-9_-]*[a-z0-9])?)$", title="Version or alias",
                             description="A version number, or an alias: previous-production rolls back."),
            "reason": Param(type="string", minLength=10, maxLength=500, title="Reason",
                            description="Why (at least 10 characters); recorded on the version."),
        },
    ):
        resolve = ResolveVersionOperator(task_id="resolve", spec=MODEL, pool=PROMOTION_POOL)
        preflight = PreflightOperator(task_id="preflight", spec=MODEL, registered=resolve.output)
        # One score task per backend in use: each scores the models that train there, skips the others.
        scores = [scoring_task(MODEL, backend, task_id="score" if len(backends) == 1 else f"score_{backend}",
                               registered=resolve.output, required=False) for backend in backends]
        open_pr = OpenPullRequestOperator(task_id="open_pr", spec=MODEL, registered=resolve.output,
                                          pool=PROMOTION_POOL, trigger_rule="none_failed_min_one_success")
        wait_for_merge = WaitForMergeSensor(task_id="wait_for_merge", spec=MODEL, proposal=open_pr.output,
                                            registered=resolve.output)
        verify = VerifyRolloutSensor(task_id="verify_rollout", spec=MODEL, registered=resolve.output,
                                     merge=wait_for_merge.output)
        production = PromoteToProductionOperator(task_id="promote_production", spec=MODEL,
                                                 registered=resolve.output, outlets=[PRODUCTION_ALIAS])
        chain(resolve, preflight, scores, open_pr, wait_for_merge, verify, production)
