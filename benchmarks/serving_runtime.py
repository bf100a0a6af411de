"""What the serving runtime costs: the real MLServer of each declared runtime, as the preflight starts it
(one model, ``mlserver start`` to ``/v2/models/<name>/ready``, then one V2 ``infer``) and as the tests'
KServe stand-in uses it (started empty once, then a model version loaded through the repository API).

The model is the demo's kind: a scikit-learn classifier on 30 features, logged with the serialization
format the runtime reads and a signature. The runtimes' environments are made first (cached under
``$MODEL_LIFECYCLE_CACHE_DIR``), and that time is not counted.

    .venv/bin/python -m benchmarks.serving_runtime [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import embedded  # noqa: F401 (puts plugins/ on sys.path, as Airflow does)
from model_lifecycle.runtime_server import RuntimeServer, runtime_environment
from model_lifecycle.runtimes import RUNTIMES, ServingRuntime
from tests.support.serving import ModelRepository

ROWS = np.random.default_rng(8).normal(size=(200, 30))


def save_model(runtime: ServingRuntime, path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)  # its advice on pickle, once per model

    labels = (ROWS[:, 0] > 0).astype(int)
    model = LogisticRegression(max_iter=500).fit(ROWS, labels)
    mlflow.sklearn.save_model(model, str(path), serialization_format=runtime.serialization_format,
                              signature=infer_signature(ROWS, model.predict(ROWS)))


def infer_body() -> bytes:
    return json.dumps({"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64",
                                   "data": ROWS[:2].ravel().tolist()}]}).encode()


def single_model(runtime: ServingRuntime, model: Path, work: Path) -> tuple[float, float]:
    """Seconds from ``mlserver start`` to the model ready, and of one infer request."""
    with RuntimeServer(runtime, model, model_name="demo", log_path=work / "single.log") as server:
        began = time.monotonic()
        response = server.infer("v2", "demo", json.loads(infer_body()))
        response.raise_for_status()
        return server.started_in, time.monotonic() - began


def repository(runtime: ServingRuntime, model: Path, work: Path, repeat: int) -> tuple[float, list[float]]:
    """Seconds to start an empty MLServer, and of each load of a new version through its repository API."""
    repo = ModelRepository(runtime, work / "repository")
    repo.start()
    try:
        loads = []
        for number in range(1, repeat + 1):
            began = time.monotonic()
            repo.load("demo", f"demo-predictor-{number:05d}", model)
            loads.append(time.monotonic() - began)
            repo.infer(f"/v2/models/demo/versions/demo-predictor-{number:05d}/infer",
                       infer_body()).raise_for_status()
        return repo.server.started_in, loads
    finally:
        repo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| runtime | preflight start → ready (s, median of starts) | infer (ms) | empty start (s) "
          "| repository load (s): first, then median |")
    print("|---|---|---|---|---|")
    for runtime in RUNTIMES.values():
        runtime_environment(runtime)
        with tempfile.TemporaryDirectory(prefix="serving-bench-") as folder:
            work = Path(folder)
            model = work / "model"
            save_model(runtime, model)
            runs = [single_model(runtime, model, work) for _ in range(args.repeat)]
            starts, infers = [start for start, _ in runs], [infer for _, infer in runs]
            empty, loads = repository(runtime, model, work, args.repeat)
        print(f"| {runtime.name} | {statistics.median(starts):.1f} ({', '.join(f'{s:.1f}' for s in starts)}) "
              f"| {statistics.median(infers) * 1000:.0f} | {empty:.1f} | {loads[0]:.1f}, "
              f"{statistics.median(loads[1:] or loads):.2f} |")


if __name__ == "__main__":
    main()
