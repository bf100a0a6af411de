"""MLflow garbage collection, for the ``mlflow_gc`` DAG: what has been in MLflow's ``deleted`` lifecycle
stage for longer than a threshold is removed for good, except what still matters.

- ``decisions``: what is collected and what is kept, and why (pure: no Airflow, no MLflow);
- ``config``: ``include/mlflow_gc.yaml``, validated when the DAG is parsed (pure);
- ``collector``: acts on the backend store, run where its credentials are, as
  ``python -m model_lifecycle.gc.collector report|collect`` (no Airflow; MLflow when a command runs);
- ``operators``: the DAG's tasks, which run the collector as a child process (``local``) or in a pod
  (``kubernetes``).

The names below are shared by the collector and the operators that run it; this module imports
nothing, so the collector's image needs no more than this package's pure parts.
"""

GC_MODULE = f"{__name__}.collector"
BACKEND_STORE_URI_ENV = "MLFLOW_BACKEND_STORE_URI"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
