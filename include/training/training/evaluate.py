"""Score models on the evaluation dataset with MLflow's own evaluation: ``python -m training.evaluate``.

What the evaluation step of the environment contract runs (``plugins/model_lifecycle/training.py``).
It draws the evaluation dataset of the window exactly as the trainer does, then scores every model of
``EVALUATION_MODELS`` (role to model URI: the challenger, the champion, any other version named) on
it with ``mlflow.models.evaluate``. One MLflow run holds the comparison: it takes the dataset as its
input, and each model is evaluated in a run nested in it, named for its role, so MLflow's UI compares
them side by side. ``mlflow.models.evaluate`` links each model's metrics to its logged model too.

A model other than the challenger that cannot be compared fairly does not stop the others: its run is
marked FAILED with the reason as tag ``evaluation.error``. That is a model that cannot be loaded (its
artifacts were collected, its flavour is not installed here), or one that may have trained on rows of
the evaluation dataset: a champion newer than the challenger, as in a backfill, would be scored on its
own training data. A challenger that cannot be loaded fails the evaluation.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd

from training.data import TARGET, DataError, WindowData
from training.inputs import (
    CONTRACT_REQUIRED,
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

REQUIRED = (*CONTRACT_REQUIRED, "EVALUATION_MODELS", "EVALUATION_KEY")
CHALLENGER = "challenger"
MODEL_TYPES = ("classifier", "regressor")


def main(environ: Mapping[str, str] = os.environ) -> int:
    # The task log is read by people: no progress bars, and not the warning that the scikit-learn model,
    # fitted on arrays, is given the dataset's named columns.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message="X has feature names")
    return run_job("evaluator", environ, read_inputs, evaluate)


def read_inputs(environ: Mapping[str, str]) -> dict[str, Any]:
    require(environ, REQUIRED)
    try:
        models = json.loads(environ["EVALUATION_MODELS"])
    except json.JSONDecodeError as error:
        raise ContractError(f"EVALUATION_MODELS is not JSON: {error}") from None
    if not isinstance(models, dict) or CHALLENGER not in models or not all(
            isinstance(uri, str) and uri for uri in models.values()):
        raise ContractError(f"EVALUATION_MODELS must map roles to model URIs, {CHALLENGER!r} among them; "
                            f"got {environ['EVALUATION_MODELS']!r}")
    model_type = environ.get("EVALUATION_MODEL_TYPE") or "classifier"
    if model_type not in MODEL_TYPES:
        raise ContractError(f"EVALUATION_MODEL_TYPE is {model_type!r}; expected one of {list(MODEL_TYPES)}")
    tags = {
        "evaluation.model": environ["MODEL_NAME"],
        "evaluation.key": environ["EVALUATION_KEY"],
        "data.source": environ["DATA_SOURCE"],
        **airflow_tags(environ),
    }
    return {"data": read_data_inputs(environ), "models": models, "model_type": model_type, "tags": tags}


def evaluate(*, data: DataInputs, models: dict[str, str], model_type: str, tags: dict[str, str]) -> str:
    evaluation = data.split().evaluation
    if evaluation.frame[TARGET].isna().all():
        raise DataError(f"the evaluation dataset of {data.source!r} has no {TARGET!r} values")
    dataset = mlflow_dataset(evaluation, name="evaluation")
    name = f"evaluate {tags['evaluation.model']} {models[CHALLENGER].rsplit('/', 1)[-1]}"
    run_tags = {**tags, "evaluation.dataset_digest": dataset.digest, "evaluation.models": json.dumps(models),
                "data.evaluation_window_start": data.start.isoformat(),
                "data.evaluation_window_end": data.end.isoformat()}
    with mlflow.start_run(run_name=name, tags=run_tags) as parent:
        mlflow.log_input(dataset, context="evaluation")
        mlflow.log_metric("evaluation_samples", len(evaluation.frame))
        for role, uri in models.items():
            score(role, uri, dataset, model_type=model_type,
                  seen=None if role == CHALLENGER else seen_rows(uri, data, evaluation))
        return parent.info.run_id


def seen_rows(uri: str, data: DataInputs, evaluation: WindowData) -> str | None:
    """Why the model of ``uri`` may have trained on rows of the evaluation dataset, or None.

    Drawn from a separate source, the dataset was held out of every training run that held out that
    source. Drawn from the window's most recent rows, it is unseen by a model whose training rows (from
    the start of its window to tag ``data.training_end``, else its window's end) are all before or all
    after them. A version trained outside this contract, without those tags, is scored as it is."""
    client = mlflow.MlflowClient()
    name, _, version = uri.removeprefix("models:/").rpartition("/")
    try:
        tags = client.get_run(client.get_model_version(name, version).run_id).data.tags
    except mlflow.exceptions.MlflowException:
        return None  # a URI not of a registered version, or its run deleted: loading it says more
    if data.evaluation_source:
        held_out = tags.get(EVALUATION_SOURCE_TAG)
        if held_out == data.evaluation_source or WINDOW_END_TAG not in tags:
            return None
        held = repr(held_out) if held_out else "the most recent rows of its window"
        return (f"its training run held out {held}, not {data.evaluation_source!r}: it may have trained "
                "on the evaluation dataset")
    trained_from, trained_until = tags.get(WINDOW_START_TAG), tags.get(TRAINING_END_TAG) or tags.get(
        WINDOW_END_TAG)
    if trained_from is None or trained_until is None:
        return None
    first, last = evaluation.times.min(), evaluation.times.max()
    if pd.Timestamp(trained_until) < first or pd.Timestamp(trained_from) > last:
        return None
    return (f"it trained on rows from {trained_from} to {trained_until}, and the evaluation dataset's run "
            f"from {first.isoformat()} to {last.isoformat()}: scored on rows it may have trained on, it "
            "would be favoured")


def score(role: str, uri: str, dataset: Any, *, model_type: str, seen: str | None) -> None:
    """One model's evaluation, in a run nested in the comparison's (which alone carries the key)."""
    with mlflow.start_run(run_name=f"{role}: {uri}", nested=True,
                          tags={"evaluation.role": role, "evaluation.model_uri": uri}):
        if seen is not None:
            return not_compared(role, uri, seen)
        try:
            model = mlflow.pyfunc.load_model(uri)
        # Unpickling a model can raise anything; the error is the finding, recorded on the role's run.
        except Exception as error:  # noqa: BLE001
            if role == CHALLENGER:
                raise
            return not_compared(role, uri, f"cannot be loaded: {type(error).__name__}: {error}")
        result = mlflow.models.evaluate(model, dataset, model_type=model_type, evaluators="default",
                                        evaluator_config={"log_model_explainability": False})
        print(f"evaluator: {role} {uri}: " + ", ".join(
            f"{metric}={value:.4f}" for metric, value in sorted(result.metrics.items())))


def not_compared(role: str, uri: str, reason: str) -> None:
    mlflow.set_tag("evaluation.error", reason[:5000])
    mlflow.end_run(status="FAILED")
    print(f"evaluator: {role} {uri} is not scored: {reason}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
