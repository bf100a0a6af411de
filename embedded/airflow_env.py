"""Airflow on SQLite for this project, configured through environment variables only.

Airflow reads its configuration when it is first imported, so callers apply this environment before
importing anything from Airflow (or pass it to a child process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from model_lifecycle.specs import PROJECT_ROOT


def airflow_environment(home: Path, *, mlflow_url: str,
                        mlflow_backend_store_uri: str | None = None) -> dict[str, str]:
    """``mlflow_backend_store_uri`` is the MLflow server's database, which the mlflow_gc DAG's local
    runner (``model_lifecycle.gc.operators.local``) collects from."""
    from model_lifecycle.gc import BACKEND_STORE_URI_ENV

    extra = {BACKEND_STORE_URI_ENV: mlflow_backend_store_uri} if mlflow_backend_store_uri else {}
    return {
        **extra,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__FERNET_KEY": fernet_key(home),
        "AIRFLOW__API__BASE_URL": "http://localhost:8080",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_url,
    }


def fernet_key(home: Path) -> str:
    """The key Airflow encrypts Variables and Connections with in this home. Every process that shares
    the database must have the same one; without it each would make up its own."""
    path = home / "fernet.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        home.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def migrate_database(environment: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database, and the pool the promotion tasks run in
    (idempotent)."""
    from model_lifecycle.policy import PROMOTION_POOL

    Path(environment["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow(environment, "db", "migrate")
    airflow(environment, "pools", "set", PROMOTION_POOL, "1",
            "The model-lifecycle promotion tasks that take an InferenceService on, one at a time")


def airflow(environment: dict[str, str], *arguments: str) -> str:
    """Run the Airflow CLI with this environment; its output, or an error that shows it."""
    result = subprocess.run([sys.executable, "-m", "airflow", *arguments], capture_output=True, text=True,
                            env={**os.environ, **environment})
    if result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout
