"""The inputs the trainer and the evaluator share: the data window and the evaluation dataset of the
environment contract (``plugins/model_lifecycle/training.py``), read and checked the same way."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from training.data import TARGET, DataError, Split, WindowData, load_window, split_window

if TYPE_CHECKING:
    from mlflow.data.pandas_dataset import PandasDataset

DEFAULT_HOLDOUT_FRACTION = 0.2
# What every job of the training image is given.
CONTRACT_REQUIRED = (
    "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MODEL_NAME", "DATA_SOURCE",
    "DATA_WINDOW_START", "DATA_WINDOW_END",
    "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_TRY_NUMBER",
)
# Tags of a training run: its window, what it held out and the time of the last row it trained on. The
# evaluator reads them to keep a model off rows it has seen.
EVALUATION_DIGEST_TAG = "data.evaluation_digest"
EVALUATION_SOURCE_TAG = "data.evaluation_source"
TRAINING_END_TAG = "data.training_end"
WINDOW_START_TAG = "data.window_start"
WINDOW_END_TAG = "data.window_end"


class ContractError(ValueError):
    """An input of the environment contract is missing or malformed."""


@dataclass(frozen=True)
class DataInputs:
    source: str
    start: dt.datetime
    end: dt.datetime
    holdout_fraction: float
    evaluation_source: str | None

    def split(self) -> Split:
        """The window, split into what is trained on and the evaluation dataset; an evaluation dataset
        that is empty fails naming the window and how it was drawn."""
        window = load_window(self.source, self.start, self.end)
        separate = (load_window(self.evaluation_source, self.start, self.end)
                    if self.evaluation_source else None)
        split = split_window(window, holdout_fraction=self.holdout_fraction, evaluation=separate)
        if len(split.evaluation.frame) == 0:
            drawn = (f"EVALUATION_DATA_SOURCE {self.evaluation_source!r}" if self.evaluation_source
                     else f"the most recent {self.holdout_fraction:g} of {self.source!r}")
            raise DataError(f"the evaluation dataset is empty: {drawn} has no rows in the window "
                            f"{self.start.isoformat()} to {self.end.isoformat()}")
        return split


def run_job(name: str, environ: Mapping[str, str], read_inputs: Callable[[Mapping[str, str]], dict[str, Any]],
            job: Callable[..., str]) -> int:
    """A command of the training image: its inputs read, the job run, its MLflow run named. A
    contract or data error is a message and exit code 2 (permanent: the task fails, naming it)."""
    try:
        run_id = job(**read_inputs(environ))
    except (ContractError, DataError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    print(f"{name}: finished MLflow run {run_id}")
    return 0


def airflow_tags(environ: Mapping[str, str]) -> dict[str, str]:
    """The run tags that name the Airflow task instance that started the job."""
    return {
        "airflow.dag_id": environ["AIRFLOW_CTX_DAG_ID"],
        "airflow.run_id": environ["AIRFLOW_CTX_DAG_RUN_ID"],
        "airflow.task_id": environ["AIRFLOW_CTX_TASK_ID"],
        "airflow.try_number": environ["AIRFLOW_CTX_TRY_NUMBER"],
    }


def require(environ: Mapping[str, str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ContractError(f"missing environment variable(s): {', '.join(missing)}")


def read_data_inputs(environ: Mapping[str, str]) -> DataInputs:
    window = {}
    for name in ("DATA_WINDOW_START", "DATA_WINDOW_END"):
        try:
            window[name] = dt.datetime.fromisoformat(environ[name])
        except ValueError:
            raise ContractError(f"{name} is not an ISO 8601 timestamp: {environ[name]!r}") from None
        if window[name].tzinfo is None:
            raise ContractError(f"{name} must carry a UTC offset: {environ[name]!r}")
    raw = environ.get("EVALUATION_HOLDOUT_FRACTION") or str(DEFAULT_HOLDOUT_FRACTION)
    try:
        fraction = float(raw)
    except ValueError:
        raise ContractError(f"EVALUATION_HOLDOUT_FRACTION is not a number: {raw!r}") from None
    if not 0 < fraction < 1:
        raise ContractError(f"EVALUATION_HOLDOUT_FRACTION must be between 0 and 1, got {fraction}")
    return DataInputs(source=environ["DATA_SOURCE"], start=window["DATA_WINDOW_START"],
                      end=window["DATA_WINDOW_END"], holdout_fraction=fraction,
                      evaluation_source=environ.get("EVALUATION_DATA_SOURCE") or None)


def mlflow_dataset(data: WindowData, *, name: str) -> PandasDataset:
    """The rows as an MLflow dataset: its digest identifies exactly these rows."""
    import mlflow.data

    return mlflow.data.from_pandas(data.frame, targets=TARGET, name=name)
