"""The environment contract of the training image, the same for every backend (local process or
Kubernetes pod), for its two commands: the trainer (``training.command``) and the evaluator
(``evaluation.command``).

Both learn everything from environment variables and write everything to MLflow runs tagged with what
they were given, so that the next task finds the run in MLflow (no XCom sidecar). The trainer holds
the evaluation dataset out of what it trains on and logs it as the run's ``evaluation`` input; the
evaluator draws the same dataset from the same window and scores every model it is given on it:

=====================================  ==============================================================
``MLFLOW_TRACKING_URI``                the tracking server
``MLFLOW_EXPERIMENT_NAME``             the experiment to log into
``MODEL_NAME``                         the registered model name (run tag ``model``)
``DATA_SOURCE``                        where the data comes from (run tag ``data.source``)
``DATA_WINDOW_START``/``_END``         ISO 8601 bounds of the data window, end excluded
                                       (run tags ``data.window_start``/``data.window_end``)
``EVALUATION_HOLDOUT_FRACTION``        the most recent fraction of the window held out for evaluation
``EVALUATION_DATA_SOURCE``             a separate source of the evaluation dataset (optional)
``TRAINING_PARAMS``                    JSON object of hyper-parameters from the spec (trainer)
``MODEL_SERIALIZATION_FORMAT``         how to save the model so that ``rollout.runtime`` reads it
                                       (``pickle``, ``cloudpickle`` or ``skops``; optional; trainer)
``EVALUATION_MODELS``                  JSON object, role to model URI: ``challenger`` (the version to
                                       promote), ``champion`` (production), any other version named by
                                       ``evaluation.compare_with`` (evaluator)
``EVALUATION_MODEL_TYPE``              ``classifier`` or ``regressor``, for ``mlflow.models.evaluate``
``EVALUATION_KEY``                     what the evaluator tags its run with (``evaluation.key``), so
                                       that the same comparison is found, not made twice (evaluator)
``AIRFLOW_CTX_DAG_ID``,                the Airflow identity (run tags ``airflow.dag_id``,
``AIRFLOW_CTX_DAG_RUN_ID``,            ``airflow.run_id``, ``airflow.task_id``, ``airflow.try_number``)
``AIRFLOW_CTX_TASK_ID``,
``AIRFLOW_CTX_TRY_NUMBER``
=====================================  ==============================================================

Pure module: no Airflow, no MLflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from model_lifecycle.policy import DataWindow
from model_lifecycle.runtimes import RUNTIMES
from model_lifecycle.specs import ModelSpec


@dataclass(frozen=True)
class AirflowIdentity:
    dag_id: str
    run_id: str
    task_id: str
    try_number: int


def trainer_environment(
    spec: ModelSpec, window: DataWindow, identity: AirflowIdentity, *, tracking_uri: str
) -> dict[str, str]:
    return {
        **_shared_environment(spec, window, identity, tracking_uri=tracking_uri),
        "TRAINING_PARAMS": json.dumps(spec.training.params, sort_keys=True),
        "MODEL_SERIALIZATION_FORMAT": RUNTIMES[spec.rollout.runtime].serialization_format,
    }


def evaluator_environment(
    spec: ModelSpec, window: DataWindow, identity: AirflowIdentity, *, tracking_uri: str,
    models: Mapping[str, str],
) -> dict[str, str]:
    """The evaluator's inputs: ``models`` maps each role to the version scored in it."""
    return {
        **_shared_environment(spec, window, identity, tracking_uri=tracking_uri),
        "EVALUATION_MODELS": json.dumps(model_uris(spec, models), sort_keys=True),
        "EVALUATION_MODEL_TYPE": spec.evaluation.model_type,
        "EVALUATION_KEY": evaluation_key(spec, window, models),
    }


def model_uris(spec: ModelSpec, models: Mapping[str, str]) -> dict[str, str]:
    """Role to the URI of the version scored in it (a version, never an alias: it cannot move)."""
    return {role: f"models:/{spec.registered_model}/{version}" for role, version in models.items()}


def evaluation_key(spec: ModelSpec, window: DataWindow, models: Mapping[str, str]) -> str:
    """Identifies one comparison: the same versions in the same roles, on the same evaluation dataset
    drawn the same way, scored the same way."""
    start, end = window.as_strings()
    identity = {"model": spec.registered_model, "source": spec.data.source, "start": start, "end": end,
                "dataset": spec.evaluation.dataset.model_dump(), "model_type": spec.evaluation.model_type,
                "models": dict(models)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _shared_environment(
    spec: ModelSpec, window: DataWindow, identity: AirflowIdentity, *, tracking_uri: str
) -> dict[str, str]:
    start, end = window.as_strings()
    dataset = spec.evaluation.dataset
    return {
        **spec.training.env,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": spec.experiment,
        "MODEL_NAME": spec.registered_model,
        "DATA_SOURCE": spec.data.source,
        "DATA_WINDOW_START": start,
        "DATA_WINDOW_END": end,
        "EVALUATION_HOLDOUT_FRACTION": str(dataset.holdout_fraction),
        **({"EVALUATION_DATA_SOURCE": dataset.source} if dataset.source else {}),
        "AIRFLOW_CTX_DAG_ID": identity.dag_id,
        "AIRFLOW_CTX_DAG_RUN_ID": identity.run_id,
        "AIRFLOW_CTX_TASK_ID": identity.task_id,
        "AIRFLOW_CTX_TRY_NUMBER": str(identity.try_number),
    }
