"""The embedded default stack, for ``make demo``, ``make airflow`` and the tests: a real MLflow server
process (SQLite, local artifacts), a local GitOps repository, a reviewer, and Airflow on SQLite."""
