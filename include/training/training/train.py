"""Train on the data window, cross-validate the metrics, and log everything to one MLflow run."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import mlflow
import mlflow.sklearn
import sklearn
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.data import load_window

REQUIRED = (
    "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MODEL_NAME", "DATA_SOURCE",
    "DATA_WINDOW_START", "DATA_WINDOW_END",
    "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_TRY_NUMBER",
)
# MLflow 3's default, skops, is unreadable for the MLflow 2 of KServe's kserve-mlserver runtime.
DEFAULT_SERIALIZATION_FORMAT = "cloudpickle"
SERIALIZATION_FORMATS = ("pickle", "cloudpickle", "skops")
DEFAULT_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 1000, "cv_folds": 5, "seed": 0}
MIN_SAMPLES = 40


class ContractError(ValueError):
    """An input of the environment contract is missing or malformed."""


def main(environ: Mapping[str, str] = os.environ) -> int:
    try:
        inputs = read_inputs(environ)
    except ContractError as error:
        print(f"trainer: {error}", file=sys.stderr)
        return 2
    run_id = train(**inputs)
    print(f"trainer: finished MLflow run {run_id}")
    return 0


def read_inputs(environ: Mapping[str, str]) -> dict[str, Any]:
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise ContractError(f"missing environment variable(s): {', '.join(missing)}")
    window = {}
    for name in ("DATA_WINDOW_START", "DATA_WINDOW_END"):
        try:
            window[name] = dt.datetime.fromisoformat(environ[name])
        except ValueError:
            raise ContractError(f"{name} is not an ISO 8601 timestamp: {environ[name]!r}") from None
        if window[name].tzinfo is None:
            raise ContractError(f"{name} must carry a UTC offset: {environ[name]!r}")
    try:
        overrides = json.loads(environ.get("TRAINING_PARAMS") or "{}")
    except json.JSONDecodeError as error:
        raise ContractError(f"TRAINING_PARAMS is not JSON: {error}") from None
    if not isinstance(overrides, dict):
        raise ContractError("TRAINING_PARAMS must be a JSON object")
    unknown = sorted(set(overrides) - set(DEFAULT_PARAMS))
    if unknown:
        raise ContractError(f"TRAINING_PARAMS has unknown parameter(s) {unknown}; "
                            f"known: {sorted(DEFAULT_PARAMS)}")
    tags = {
        "model": environ["MODEL_NAME"],
        "data.source": environ["DATA_SOURCE"],
        "data.window_start": environ["DATA_WINDOW_START"],
        "data.window_end": environ["DATA_WINDOW_END"],
        "airflow.dag_id": environ["AIRFLOW_CTX_DAG_ID"],
        "airflow.run_id": environ["AIRFLOW_CTX_DAG_RUN_ID"],
        "airflow.task_id": environ["AIRFLOW_CTX_TASK_ID"],
        "airflow.try_number": environ["AIRFLOW_CTX_TRY_NUMBER"],
    }
    serialization_format = environ.get("MODEL_SERIALIZATION_FORMAT") or DEFAULT_SERIALIZATION_FORMAT
    if serialization_format not in SERIALIZATION_FORMATS:
        raise ContractError(f"MODEL_SERIALIZATION_FORMAT is {serialization_format!r}; expected one of "
                            f"{list(SERIALIZATION_FORMATS)}")
    return {
        "source": environ["DATA_SOURCE"],
        "serialization_format": serialization_format,
        "start": window["DATA_WINDOW_START"],
        "end": window["DATA_WINDOW_END"],
        "params": {**DEFAULT_PARAMS, **overrides},
        "tags": tags,
    }


def train(*, source: str, start: dt.datetime, end: dt.datetime, params: dict[str, Any],
          tags: dict[str, str], serialization_format: str) -> str:
    """Cross-validate on the window (stable metrics even on small windows), then fit on all of it."""
    data = load_window(source, start, end)
    if len(data.target) < MIN_SAMPLES:
        raise ValueError(f"the window {start} to {end} holds {len(data.target)} samples; "
                         f"at least {MIN_SAMPLES} are needed (lengthen the lookback)")
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"])),
    )
    binary = len(set(data.target)) == 2
    scoring = {
        "accuracy": "accuracy",
        "f1": "f1" if binary else "f1_macro",
        "roc_auc": "roc_auc" if binary else "roc_auc_ovr",
        "log_loss": "neg_log_loss",
    }
    folds = StratifiedKFold(int(params["cv_folds"]), shuffle=True, random_state=int(params["seed"]))
    scores = cross_validate(model, data.features, data.target, cv=folds, scoring=scoring)
    metrics = {name: float(abs(scores[f"test_{name}"].mean())) for name in scoring}
    model.fit(data.features, data.target)
    name = f"{tags['model']}-{end:%Y%m%dT%H%M}"
    with mlflow.start_run(run_name=name, tags=tags) as run:
        mlflow.log_params({**params, "features": len(data.feature_names)})
        mlflow.log_metrics({**metrics, "samples": len(data.target), "window_hours": data.hours})
        example = data.features[:2]
        mlflow.sklearn.log_model(
            model, name="model", input_example=example, serialization_format=serialization_format,
            signature=infer_signature(example, model.predict(example)),
            # What the model needs to load is what this trainer runs on (requirements.txt). Naming it
            # spares MLflow inferring it by loading the model in a child process, seconds per run.
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}"],
        )
        print("trainer: " + ", ".join(f"{key}={value:.4f}" for key, value in metrics.items()))
        return run.info.run_id
