"""The example trainer's data window and its environment contract."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from training.data import DataError, load_window, split_window
from training.evaluate import read_inputs as read_evaluator_inputs
from training.inputs import ContractError, mlflow_dataset, read_data_inputs
from training.train import read_inputs

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


def test_the_evaluation_dataset_is_the_most_recent_part_and_never_trained_on() -> None:
    window = load_window("sklearn:iris", START, START + dt.timedelta(days=14))  # iris cycles: rows repeat
    split = split_window(window, holdout_fraction=0.2)
    assert split.evaluation.times.min() >= split.training.times.max()
    held_out = {tuple(row) for row in split.evaluation.frame.to_numpy().tolist()}
    assert held_out and not held_out & {tuple(row) for row in split.training.frame.to_numpy().tolist()}
    again = split_window(load_window("sklearn:iris", START, START + dt.timedelta(days=14)),
                         holdout_fraction=0.2)
    assert mlflow_dataset(again.evaluation, name="evaluation").digest == mlflow_dataset(
        split.evaluation, name="evaluation").digest


def test_a_csv_source_gives_the_rows_of_the_window(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("timestamp,x0,target\n2026-11-01T05:00:00+00:00,0.5,1\n2026-10-01T00:00:00+00:00,9,0\n"
                    "2026-11-01T01:00:00+00:00,-0.5,0\n")
    window = load_window(f"csv:{path}", START, START + dt.timedelta(days=1))
    assert window.frame.to_dict("list") == {"x0": [-0.5, 0.5], "target": [0, 1]}  # oldest first
    assert window.feature_names == ["x0"]


@pytest.mark.parametrize(("content", "message"), [
    ("timestamp,x0\n2026-11-01T05:00:00+00:00,1\n", "has no 'target' column \\(columns: timestamp, x0\\)"),
    ("x0,target\n1,0\n", "has no 'timestamp' column"),
    ("timestamp,x0,target\nsoon,1,0\n", "column 'timestamp' is not ISO 8601"),
])
def test_csv_problems_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_window(f"csv:{path}", START, START + dt.timedelta(days=1))


def test_an_empty_evaluation_dataset_fails_naming_how_it_was_drawn(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("timestamp,x0,target\n2026-10-01T00:00:00+00:00,1,0\n")
    inputs = read_data_inputs({**CONTRACT, "EVALUATION_DATA_SOURCE": f"csv:{path}"})
    with pytest.raises(DataError, match=f"the evaluation dataset is empty: EVALUATION_DATA_SOURCE "
                       f"'csv:{path}' has no rows in the window 2026-11-01T00:00:00\\+00:00 to"):
        inputs.split()


EVALUATOR = {**CONTRACT, "AIRFLOW_CTX_TASK_ID": "score", "EVALUATION_KEY": "k1",
             "EVALUATION_MODELS": '{"challenger": "models:/m/3", "champion": "models:/m/2"}'}


def test_the_evaluator_contract() -> None:
    inputs = read_evaluator_inputs(EVALUATOR)
    assert inputs["models"] == {"challenger": "models:/m/3", "champion": "models:/m/2"}
    assert inputs["model_type"] == "classifier" and inputs["data"].holdout_fraction == 0.2
    assert inputs["tags"]["evaluation.key"] == "k1" and inputs["tags"]["evaluation.model"] == "m"


@pytest.mark.parametrize(("change", "message"), [
    ({"EVALUATION_MODELS": '{"champion": "models:/m/2"}'}, "'challenger' among them"),
    ({"EVALUATION_MODELS": "["}, "EVALUATION_MODELS is not JSON"),
    ({"EVALUATION_KEY": ""}, "missing environment variable\\(s\\): EVALUATION_KEY"),
    ({"EVALUATION_MODEL_TYPE": "ranker"}, "EVALUATION_MODEL_TYPE is 'ranker'"),
    ({"EVALUATION_HOLDOUT_FRACTION": "1.5"}, "EVALUATION_HOLDOUT_FRACTION must be between 0 and 1"),
])
def test_evaluator_contract_errors_name_the_variable(change: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        read_evaluator_inputs({**EVALUATOR, **change})
