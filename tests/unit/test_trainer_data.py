"""The example trainer's data window and its environment contract."""

from __future__ import annotations

import datetime as dt

import pytest

from training.data import load_window
from training.train import ContractError, read_inputs

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def test_window_selects_one_sample_per_hour_deterministically() -> None:
    data = load_window("sklearn:breast_cancer", START, START + dt.timedelta(days=7))
    assert data.hours == 168
    assert len(data.target) == 168 and data.features.shape == (168, 30)
    again = load_window("sklearn:breast_cancer", START, START + dt.timedelta(days=7))
    assert (again.features == data.features).all()


def test_different_windows_hold_different_samples() -> None:
    first = load_window("sklearn:wine", START, START + dt.timedelta(hours=48))
    later = load_window("sklearn:wine", START + dt.timedelta(hours=48), START + dt.timedelta(hours=96))
    assert {tuple(row) for row in first.features} != {tuple(row) for row in later.features}


def test_a_long_window_holds_each_sample_once() -> None:
    data = load_window("sklearn:iris", START, START + dt.timedelta(days=30))
    assert len(data.target) == 150


@pytest.mark.parametrize(("source", "end", "message"), [
    ("s3://bucket/data", START + dt.timedelta(days=1), "DATA_SOURCE 's3://bucket/data' is not supported"),
    ("sklearn:iris", START, "the data window is empty"),
])
def test_bad_inputs_are_named(source: str, end: dt.datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_window(source, START, end)


CONTRACT = {
    "MLFLOW_TRACKING_URI": "http://mlflow", "MLFLOW_EXPERIMENT_NAME": "e", "MODEL_NAME": "m",
    "DATA_SOURCE": "sklearn:iris", "DATA_WINDOW_START": "2026-11-01T00:00:00+00:00",
    "DATA_WINDOW_END": "2026-11-15T00:00:00+00:00", "TRAINING_PARAMS": '{"C": 0.5}',
    "AIRFLOW_CTX_DAG_ID": "retrain__m", "AIRFLOW_CTX_DAG_RUN_ID": "manual__1",
    "AIRFLOW_CTX_TASK_ID": "train", "AIRFLOW_CTX_TRY_NUMBER": "2",
}


def test_contract_becomes_params_and_run_tags() -> None:
    inputs = read_inputs(CONTRACT)
    assert inputs["params"]["C"] == 0.5 and inputs["params"]["max_iter"] == 1000
    assert inputs["serialization_format"] == "cloudpickle"  # MLflow 3's skops is unreadable in MLflow 2
    assert read_inputs({**CONTRACT, "MODEL_SERIALIZATION_FORMAT": "skops"})["serialization_format"] == "skops"
    assert inputs["tags"] == {
        "model": "m", "data.source": "sklearn:iris", "data.window_start": "2026-11-01T00:00:00+00:00",
        "data.window_end": "2026-11-15T00:00:00+00:00", "airflow.dag_id": "retrain__m",
        "airflow.run_id": "manual__1", "airflow.task_id": "train", "airflow.try_number": "2",
    }


@pytest.mark.parametrize(("change", "message"), [
    ({"MODEL_NAME": ""}, "missing environment variable\\(s\\): MODEL_NAME"),
    ({"DATA_WINDOW_END": "yesterday"}, "DATA_WINDOW_END is not an ISO 8601 timestamp"),
    ({"DATA_WINDOW_START": "2026-11-01T00:00:00"}, "DATA_WINDOW_START must carry a UTC offset"),
    ({"TRAINING_PARAMS": "{"}, "TRAINING_PARAMS is not JSON"),
    ({"TRAINING_PARAMS": '{"depth": 3}'}, "unknown parameter\\(s\\) \\['depth'\\]"),
    ({"MODEL_SERIALIZATION_FORMAT": "joblib"}, "MODEL_SERIALIZATION_FORMAT is 'joblib'; expected one of"),
])
def test_contract_errors_name_the_variable(change: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        read_inputs({**CONTRACT, **change})
