"""The trainer's environment contract, the same for every backend (local process or Kubernetes pod).

The trainer learns everything from environment variables and writes everything to one MLflow run,
tagged with what it was given, so that the next task finds that run in MLflow (no XCom sidecar):

=====================================  ==============================================================
``MLFLOW_TRACKING_URI``                the tracking server
``MLFLOW_EXPERIMENT_NAME``             the experiment to log into
``MODEL_NAME``                         the registered model name (run tag ``model``)
``DATA_SOURCE``                        where the data comes from (run tag ``data.source``)
``DATA_WINDOW_START``/``_END``         ISO 8601 bounds of the data window, end excluded
                                       (run tags ``data.window_start``/``data.window_end``)
``TRAINING_PARAMS``                    JSON object of hyper-parameters from the spec
``MODEL_SERIALIZATION_FORMAT``         how to save the model so that ``rollout.runtime`` reads it
                                       (``pickle``, ``cloudpickle`` or ``skops``; optional)
``AIRFLOW_CTX_DAG_ID``,                the Airflow identity (run tags ``airflow.dag_id``,
``AIRFLOW_CTX_DAG_RUN_ID``,            ``airflow.run_id``, ``airflow.task_id``, ``airflow.try_number``)
``AIRFLOW_CTX_TASK_ID``,
``AIRFLOW_CTX_TRY_NUMBER``
=====================================  ==============================================================

Pure module: no Airflow, no MLflow.
"""

from __future__ import annotations

import json
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
    start, end = window.as_strings()
    return {
        **spec.training.env,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": spec.experiment,
        "MODEL_NAME": spec.registered_model,
        "DATA_SOURCE": spec.data.source,
        "DATA_WINDOW_START": start,
        "DATA_WINDOW_END": end,
        "TRAINING_PARAMS": json.dumps(spec.training.params, sort_keys=True),
        "MODEL_SERIALIZATION_FORMAT": RUNTIMES[spec.rollout.runtime].serialization_format,
        "AIRFLOW_CTX_DAG_ID": identity.dag_id,
        "AIRFLOW_CTX_DAG_RUN_ID": identity.run_id,
        "AIRFLOW_CTX_TASK_ID": identity.task_id,
        "AIRFLOW_CTX_TRY_NUMBER": str(identity.try_number),
    }
