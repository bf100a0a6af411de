"""The serving runtimes' static checks: what a runtime cannot read is named with its field and fix."""

from __future__ import annotations

from typing import Any

import pytest

from model_lifecycle.runtimes import RUNTIMES, check_mlmodel, check_model_format, pinned_packages
from model_lifecycle.specs import PROJECT_ROOT

KSERVE_MLSERVER = RUNTIMES["kserve-mlserver"]


def mlmodel(serialization: str = "cloudpickle", sklearn_version: str = "1.5.2") -> dict[str, Any]:
    sklearn = {"serialization_format": serialization, "sklearn_version": sklearn_version}
    return {"flavors": {"python_function": {"loader_module": "mlflow.sklearn"}, "sklearn": sklearn},
            "mlflow_version": "3.17.2"}


def test_runtimes_name_the_versions_their_image_ships() -> None:
    assert KSERVE_MLSERVER.packages["mlserver"] == "1.7.1"
    assert KSERVE_MLSERVER.packages["mlserver-mlflow"] == "1.7.1"
    assert KSERVE_MLSERVER.packages["mlflow"] == "2.19.0"
    assert RUNTIMES["mlserver-mlflow3"].packages["mlflow"] == "3.17.2"
    # the trainer's scikit-learn is what the MLflow 3 runtime serves with
    assert RUNTIMES["mlserver-mlflow3"].packages["scikit-learn"] == pinned_packages(
        PROJECT_ROOT / "include" / "training" / "requirements.txt")["scikit-learn"]
    assert KSERVE_MLSERVER.title == ("kserve-mlserver (MLServer 1.7.1, mlserver-mlflow 1.7.1, MLflow 2.19.0, "
                                     "scikit-learn 1.5.2)")


def test_a_cloudpickled_model_of_the_runtimes_versions_passes() -> None:
    assert check_mlmodel(KSERVE_MLSERVER, mlmodel(), source="v3") == []


def test_skops_is_an_error_naming_the_runtime_the_field_and_the_fix() -> None:
    [finding] = check_mlmodel(KSERVE_MLSERVER, mlmodel("skops"), source="v3")
    assert finding.severity == "error"
    assert "kserve-mlserver (MLServer 1.7.1" in finding.message
    assert "v3 MLmodel flavors.sklearn.serialization_format 'skops'" in finding.message
    assert "serialization_format='cloudpickle'" in finding.message


def test_another_scikit_learn_is_a_warning() -> None:
    [finding] = check_mlmodel(KSERVE_MLSERVER, mlmodel(sklearn_version="1.9.1"), source="v3")
    assert finding.severity == "warning"
    assert "sklearn_version is 1.9.1" in finding.message and "scikit-learn 1.5.2" in finding.message
    assert check_mlmodel(RUNTIMES["mlserver-mlflow3"], mlmodel(sklearn_version="1.9.1"), source="v3") == []


def test_a_model_without_pyfunc_cannot_be_served() -> None:
    [finding] = check_mlmodel(KSERVE_MLSERVER, {"flavors": {}}, source="v3")
    assert finding.severity == "error" and "no flavors.python_function" in finding.message


@pytest.mark.parametrize(("model", "problem"), [
    ({"modelFormat": {"name": "sklearn"}}, "modelFormat.name is 'sklearn'"),
    ({"modelFormat": {"name": "mlflow", "version": "3"}},
     "modelFormat.version is '3', and kserve-mlserver supports mlflow versions ['1', '2']"),
    ({"modelFormat": {"name": "mlflow"}, "runtime": "mlserver-mlflow3"},
     "runtime is 'mlserver-mlflow3', and the model spec declares rollout.runtime 'kserve-mlserver'"),
    ({"modelFormat": {"name": "mlflow"}, "protocolVersion": "v1"}, "protocolVersion is 'v1'"),
])
def test_the_manifest_must_select_the_declared_runtime(model: dict[str, Any], problem: str) -> None:
    [message] = check_model_format(KSERVE_MLSERVER, model, manifest="isvc.yaml")
    assert message.startswith("isvc.yaml: spec.predictor.model.") and problem in message


def test_the_example_manifests_select_the_default_runtime() -> None:
    import yaml

    manifest = PROJECT_ROOT / "include" / "kubernetes" / "inferenceservice.yaml"
    model = yaml.safe_load(manifest.read_text())["spec"]["predictor"]["model"]
    assert check_model_format(KSERVE_MLSERVER, model, manifest=manifest.name) == []
