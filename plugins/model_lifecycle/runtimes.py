"""The serving runtimes a model can be declared for (``rollout.runtime``), and what each can read.

A runtime is described by what KServe installs for it (the ServingRuntime's image, model formats and
protocols) and by the Python environment of that image, pinned in ``include/serving/<name>/
requirements.txt``: the versions the checks compare a model's MLmodel with.

Pure module: no Airflow, no MLflow.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model_lifecycle.specs import PROJECT_ROOT, RuntimeName

SERVING_DIR = PROJECT_ROOT / "include" / "serving"


@dataclass(frozen=True)
class ServingRuntime:
    name: RuntimeName
    image: str
    # What the runtime's MLflow reads in MLmodel's flavors.sklearn.serialization_format.
    serialization_formats: tuple[str, ...]
    # The ServingRuntime's supportedModelFormats for MLflow models.
    model_format_versions: tuple[str, ...]
    protocols: tuple[str, ...] = ("v2",)
    # What the trainer logs with, for this runtime to read it.
    serialization_format: str = "cloudpickle"

    @property
    def requirements(self) -> Path:
        return SERVING_DIR / self.name / "requirements.txt"

    @property
    def packages(self) -> dict[str, str]:
        return pinned_packages(self.requirements)

    @property
    def title(self) -> str:
        pins = self.packages
        return (f"{self.name} (MLServer {pins['mlserver']}, mlserver-mlflow {pins['mlserver-mlflow']}, "
                f"MLflow {pins['mlflow']}, scikit-learn {pins['scikit-learn']})")


RUNTIMES: dict[RuntimeName, ServingRuntime] = {
    # KServe v0.20.0 config/runtimes/kserve-mlserver.yaml: model formats mlflow "1" and "2", protocol v2.
    # MLflow 2.19's sklearn flavor reads pickle and cloudpickle only (mlflow/sklearn/__init__.py,
    # SUPPORTED_SERIALIZATION_FORMATS); skops came with MLflow 3.
    "kserve-mlserver": ServingRuntime(
        name="kserve-mlserver", image="docker.io/seldonio/mlserver:1.7.1",
        serialization_formats=("pickle", "cloudpickle"), model_format_versions=("1", "2"),
    ),
    # include/serving/mlserver-mlflow3/servingruntime.yaml, its image built from the Dockerfile there.
    "mlserver-mlflow3": ServingRuntime(
        name="mlserver-mlflow3", image="model-lifecycle/mlserver-mlflow3:1.7.1-mlflow3.17.2",
        serialization_formats=("skops", "pickle", "cloudpickle"), model_format_versions=("3",),
    ),
}


@functools.cache
def pinned_packages(requirements: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, names normalised as PEP 503 does."""
    pins = {}
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)==([^\s;#]+).*", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


@dataclass(frozen=True)
class Finding:
    """One thing the static check found: an ``error`` stops the version, a ``warning`` is recorded."""

    severity: Literal["error", "warning"]
    message: str


def check_mlmodel(runtime: ServingRuntime, mlmodel: Mapping[str, Any], *, source: str) -> list[Finding]:
    """What in a model's MLmodel the runtime cannot read (errors) or may read differently (warnings).
    Every message names the runtime, the MLmodel field and the fix."""
    flavors = mlmodel.get("flavors") or {}
    findings = []
    if "python_function" not in flavors:
        findings.append(Finding("error", f"{runtime.title} loads models through MLflow's pyfunc flavor, and "
                                         f"{source} MLmodel has no flavors.python_function; log the model "
                                         "with an MLflow flavor (mlflow.sklearn.log_model)"))
    sklearn = flavors.get("sklearn")
    if sklearn is not None:
        serialization = sklearn.get("serialization_format")
        if serialization not in runtime.serialization_formats:
            findings.append(Finding(
                "error",
                f"{runtime.title} cannot read {source} MLmodel flavors.sklearn.serialization_format "
                f"{serialization!r}; it reads {list(runtime.serialization_formats)}. Log the model with "
                f"mlflow.sklearn.log_model(..., serialization_format={runtime.serialization_format!r}) "
                "(the trainer does so for the runtime it is given in MODEL_SERIALIZATION_FORMAT)"))
        trained_with, serves_with = sklearn.get("sklearn_version"), runtime.packages["scikit-learn"]
        if trained_with and _minor(trained_with) != _minor(serves_with):
            findings.append(Finding(
                "warning",
                f"{source} MLmodel flavors.sklearn.sklearn_version is {trained_with}, and {runtime.name} "
                f"serves with scikit-learn {serves_with}; scikit-learn does not promise that a model "
                "unpickled by another version predicts the same. Train with the runtime's version, or "
                "declare rollout.runtime: mlserver-mlflow3, which serves with the trainer's versions"))
    return findings


def check_model_format(runtime: ServingRuntime, model: Mapping[str, Any], *, manifest: str) -> list[str]:
    """KServe picks a runtime by the manifest's ``spec.predictor.model``: its ``modelFormat`` must be
    one the runtime supports, and an explicit ``runtime`` must be this one."""
    problems = []
    model_format = model.get("modelFormat") or {}
    if model_format.get("name") != "mlflow":
        problems.append(f"{manifest}: spec.predictor.model.modelFormat.name is "
                        f"{model_format.get('name')!r}; an MLflow model is served as 'mlflow'")
    version = model_format.get("version")
    if version is not None and str(version) not in runtime.model_format_versions:
        problems.append(f"{manifest}: spec.predictor.model.modelFormat.version is {version!r}, and "
                        f"{runtime.name} supports mlflow versions {list(runtime.model_format_versions)}")
    declared = model.get("runtime")
    if declared is not None and declared != runtime.name:
        problems.append(f"{manifest}: spec.predictor.model.runtime is {declared!r}, and the model spec "
                        f"declares rollout.runtime {runtime.name!r}")
    protocol = model.get("protocolVersion")
    if protocol is not None and protocol not in runtime.protocols:
        problems.append(f"{manifest}: spec.predictor.model.protocolVersion is {protocol!r}, and "
                        f"{runtime.name} speaks {list(runtime.protocols)}")
    return problems


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
