"""The jobs of the training image, on the spec's backend: training, and scoring versions on the
evaluation dataset.

``local`` (``local.py``) runs them as child processes of the task; ``kubernetes`` (``kubernetes.py``)
runs them in pods with the cncf provider's KubernetesPodOperator, imported only when a spec uses it
(the provider costs seconds to import). Whatever the backend, a finished MLflow run of the same job is
reused instead of running it again (``common.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from model_lifecycle.operators.training.local import LocalScoringOperator, LocalTrainingOperator

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from model_lifecycle.specs import ModelSpec


def training_task(spec: ModelSpec, **kwargs: Any) -> BaseOperator:
    """The train task for the spec's backend."""
    if spec.training.backend == "kubernetes":
        from model_lifecycle.operators.training.kubernetes import KubernetesTrainingOperator

        return KubernetesTrainingOperator(spec=spec, **kwargs)
    return LocalTrainingOperator(spec=spec, **kwargs)


def scoring_task(spec: ModelSpec | str, backend: Literal["local", "kubernetes"],
                 **kwargs: Any) -> BaseOperator:
    """The score task for a backend (``spec`` may be a template that names the model)."""
    if backend == "kubernetes":
        from model_lifecycle.operators.training.kubernetes import KubernetesScoringOperator

        return KubernetesScoringOperator(spec=spec, **kwargs)
    return LocalScoringOperator(spec=spec, **kwargs)
