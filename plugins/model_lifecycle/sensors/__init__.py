"""The waits of a promotion: for the merge (``merge.py``) and for the rollout (``rollout.py``).

Each checks once, then defers to its trigger (``model_lifecycle.triggers``) with a deadline of its own
taken from the spec, holding no worker slot. They are deferrable operators rather than subclasses of
Airflow's ``BaseSensorOperator``: they never poke or reschedule, so its machinery would go unused, and
its ``__init__`` reads ``[sensors] default_timeout`` from the configuration for every task, about
2 ms each time a DAG file is parsed.
"""
