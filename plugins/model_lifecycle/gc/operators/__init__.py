"""The tasks of the ``mlflow_gc`` DAG: ``report`` then ``collect``, each running
``python -m model_lifecycle.gc.collector`` where the backend store's credentials are: a child process
of the task (runner ``local``, ``local.py``) or a pod (runner ``kubernetes``, ``kubernetes.py``); what
both share is ``common.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from model_lifecycle.gc.config import GcConfig


def gc_operator_class(config: GcConfig) -> type[BaseOperator]:
    """The operator for the configured runner."""
    # Only the configured runner is imported: the provider imports the Kubernetes clients (seconds),
    # which only DAGs that run pods pay for.
    if config.runner == "kubernetes":
        from model_lifecycle.gc.operators.kubernetes import KubernetesMlflowGcOperator

        return KubernetesMlflowGcOperator
    from model_lifecycle.gc.operators.local import LocalMlflowGcOperator

    return LocalMlflowGcOperator
