"""Airflow on SQLite for this project, configured through environment variables only.

Airflow reads its configuration when it is first imported, so callers apply this environment before
importing anything from Airflow (or pass it to a child process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def airflow_environment(home: Path, *, mlflow_url: str,
                        mlflow_backend_store_uri: str | None = None) -> dict[str, str]:
    """``mlflow_backend_store_uri`` is the MLflow server's database, which the mlflow_gc DAG's local
    runner collects from."""
    extra = {"MLFLOW_BACKEND_STORE_URI": mlflow_backend_store_uri} if mlflow_backend_store_uri else {}
    return {
        **extra,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__BASE_URL": "http://localhost:8080",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_url,
    }


def migrate_database(environment: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database (idempotent)."""
    import os

    Path(environment["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True,
                            text=True, env={**os.environ, **environment})
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
