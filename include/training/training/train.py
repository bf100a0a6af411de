"""Train on the data window, cross-validate the metrics, and log everything to one MLflow run."""

from __future__ import annotations

import json
import os
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

from training.data import DataError
from training.inputs import (
    CONTRACT_REQUIRED,
    EVALUATION_DIGEST_TAG,
    EVALUATION_SOURCE_TAG,
    TRAINING_END_TAG,
    WINDOW_END_TAG,
    WINDOW_START_TAG,
    ContractError,
    DataInputs,
    airflow_tags,
    mlflow_dataset,
    read_data_inputs,
    require,
    run_job,
)

# MLflow 3's default, skops, is unreadable for the MLflow 2 of KServe's kserve-mlserver runtime.
DEFAULT_SERIALIZATION_FORMAT = "cloudpickle"
SERIALIZATION_FORMATS = ("pickle", "cloudpickle", "skops")
DEFAULT_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 1000, "cv_folds": 5, "seed": 0}
MIN_SAMPLES = 40


def main(environ: Mapping[str, str] = os.environ) -> int:
    return run_job("trainer", environ, read_inputs, train)


def read_inputs(environ: Mapping[str, str]) -> dict[str, Any]:
    require(environ, CONTRACT_REQUIRED)
    data = read_data_inputs(environ)
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
        WINDOW_START_TAG: environ["DATA_WINDOW_START"],
        WINDOW_END_TAG: environ["DATA_WINDOW_END"],
        **airflow_tags(environ),
    }
    serialization_format = environ.get("MODEL_SERIALIZATION_FORMAT") or DEFAULT_SERIALIZATION_FORMAT
    if serialization_format not in SERIALIZATION_FORMATS:
        raise ContractError(f"MODEL_SERIALIZATION_FORMAT is {serialization_format!r}; expected one of "
                            f"{list(SERIALIZATION_FORMATS)}")
    return {
        "data": data,
        "serialization_format": serialization_format,
        "params": {**DEFAULT_PARAMS, **overrides},
        "tags": tags,
    }


def train(*, data: DataInputs, params: dict[str, Any], tags: dict[str, str],
          serialization_format: str) -> str:
    """Hold out the evaluation dataset, cross-validate on the rest (stable metrics even on small
    windows), then fit on all of the rest. Both datasets are the run's inputs, with their digests."""
    split = data.split()
    training = split.training
    if len(training.target) < MIN_SAMPLES:
        raise DataError(f"the window {data.start} to {data.end} holds {len(training.target)} samples to "
                        f"train on; at least {MIN_SAMPLES} are needed (lengthen the lookback)")
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"])),
    )
    binary = len(set(training.target)) == 2
    scoring = {
        "accuracy": "accuracy",
        "f1": "f1" if binary else "f1_macro",
        "roc_auc": "roc_auc" if binary else "roc_auc_ovr",
        "log_loss": "neg_log_loss",
    }
    folds = StratifiedKFold(int(params["cv_folds"]), shuffle=True, random_state=int(params["seed"]))
    scores = cross_validate(model, training.features, training.target, cv=folds, scoring=scoring)
    metrics = {name: float(abs(scores[f"test_{name}"].mean())) for name in scoring}
    model.fit(training.features, training.target)
    name = f"{tags['model']}-{data.end:%Y%m%dT%H%M}"
    evaluation = mlflow_dataset(split.evaluation, name="evaluation")
    run_tags = {**tags, EVALUATION_DIGEST_TAG: evaluation.digest,
                TRAINING_END_TAG: training.times.max().isoformat(),
                **({EVALUATION_SOURCE_TAG: data.evaluation_source} if data.evaluation_source else {})}
    with mlflow.start_run(run_name=name, tags=run_tags) as run:
        mlflow.log_input(mlflow_dataset(training, name="training"), context="training")
        mlflow.log_input(evaluation, context="evaluation")
        mlflow.log_params({**params, "features": len(training.feature_names)})
        mlflow.log_metrics({**metrics, "samples": len(training.target),
                            "evaluation_samples": len(split.evaluation.target),
                            "window_hours": training.hours})
        example = training.features[:2]
        mlflow.sklearn.log_model(
            model, name="model", input_example=example, serialization_format=serialization_format,
            signature=infer_signature(example, model.predict(example)),
            # What the model needs to load is what this trainer runs on (requirements.txt). Naming it
            # spares MLflow inferring it by loading the model in a child process, seconds per run.
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}"],
        )
        print("trainer: " + ", ".join(f"{key}={value:.4f}" for key, value in metrics.items()))
        return run.info.run_id
