"""Training: the train task for the spec's backend, and the contract both backends keep.

``local`` (``local.py``) runs the trainer as a child process of the task; ``kubernetes``
(``kubernetes.py``) runs it in a pod with the cncf provider's KubernetesPodOperator, imported only when
a spec uses it (the provider costs seconds to import). Whatever the backend, a finished MLflow run for
this model and data window is reused instead of training again (``common.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model_lifecycle.operators.training.local import LocalTrainingOperator

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from model_lifecycle.specs import ModelSpec


def training_task(spec: ModelSpec, **kwargs: Any) -> BaseOperator:
    """The train task for the spec's backend."""
    if spec.training.backend == "kubernetes":
        from model_lifecycle.operators.training.kubernetes import KubernetesTrainingOperator

        return KubernetesTrainingOperator(spec=spec, **kwargs)
    return LocalTrainingOperator(spec=spec, **kwargs)
