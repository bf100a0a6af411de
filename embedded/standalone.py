"""``make airflow``: the project's DAGs in ``airflow standalone`` (UI on http://localhost:8080), with the
demo's MLflow server and GitOps repository. You are the reviewer: merge a promotion branch to approve.
"""

from __future__ import annotations

import os
import sys

from embedded.demo import DEMO_DIR, prepare, say
from embedded.mlflow_server import MlflowServer


def main() -> int:
    server = MlflowServer(DEMO_DIR / "mlflow", port=int(os.environ.get("DEMO_MLFLOW_PORT", "5000")))
    spec = prepare(server)
    repo = spec.gitops.repository_path()
    # A local UI for one person: every visitor is an admin, no login.
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    say(f"MLflow UI: {server.url}. Airflow UI: http://localhost:8080 (starting).\n"
        f"    Trigger retrain__{spec.name}; when it waits for the merge, approve with\n"
        f"    git -C {repo} merge --no-ff <branch>   (list them: git -C {repo} branch)")
    os.execvp(sys.executable, [sys.executable, "-m", "airflow", "standalone"])


if __name__ == "__main__":
    sys.exit(main())
