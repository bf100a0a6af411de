"""docker-compose.yaml, checked without Docker: against the Compose Specification's JSON Schema, before
and after interpolation, and against the repository: every variable documented in .env.example with
the same default, every mounted and built path present, the connections exactly those the DAGs use, the
images on the versions the project pins, and the init script valid bash."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from model_lifecycle.policy import PROMOTION_POOL
from model_lifecycle.specs import PROJECT_ROOT
from tests.support.api_specs import api_specs_dir

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
AIRFLOW_SERVICES = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                    "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
# $$ (a literal dollar), ${NAME}, ${NAME<op>arg} with op one of :- - :? ? :+ +, and $NAME.
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_]\w*))")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation, as its specification describes it."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg, value = match["op"] or "", match["arg"] or "", env.get(name)
        is_set = value is not None and (value != "" or ":" not in op)
        if op in (":-", "-"):
            return value if is_set else arg
        if op in (":?", "?"):
            if not is_set:
                raise ValueError(f"{name}: {arg}")
            return value
        if op in (":+", "+"):
            return arg if is_set else ""
        return value or ""

    return _VARIABLE.sub(replace, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


def strings(node: Any) -> Iterator[str]:
    """Every key and value of a parsed YAML document that is a string."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def variables(document: Any) -> dict[str, set[str | None]]:
    """Every variable the document interpolates, with the defaults it gives it (None: none given)."""
    found: dict[str, set[str | None]] = {}
    for text in strings(document):
        for match in _VARIABLE.finditer(text):
            if name := match["name"] or match["bare"]:
                found.setdefault(name, set()).add(match["arg"] if match["op"] in (":-", "-") else None)
    return found


def env_example() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@cache
def compose() -> dict[str, Any]:
    """The file as docker compose runs it with .env.example copied to .env."""
    return resolve(yaml.safe_load(COMPOSE_FILE.read_text()), env_example())


def validator() -> jsonschema.Validator:
    schema = json.loads((api_specs_dir() / "compose" / "compose-spec.json").read_text())
    assert schema["$schema"].startswith("https://json-schema.org/draft-07/")
    return jsonschema.Draft7Validator(schema)


def violations(document: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator().iter_errors(document)]


def init_script() -> str:
    """What airflow-init runs: ``bash -c <script>`` through the image's entrypoint."""
    command = compose()["services"]["airflow-init"]["command"]
    assert command[:2] == ["bash", "-c"] and "entrypoint" not in compose()["services"]["airflow-init"]
    return command[2]


def common_environment() -> dict[str, str]:
    return compose()["services"]["airflow-scheduler"]["environment"]


def test_the_file_matches_the_compose_specification() -> None:
    assert violations(yaml.safe_load(COMPOSE_FILE.read_text())) == []
    assert violations(compose()) == []


def test_every_variable_is_documented_in_env_example_with_its_default() -> None:
    used = variables(yaml.safe_load(COMPOSE_FILE.read_text()))
    documented = env_example()
    assert sorted(set(used) - set(documented)) == [], "used in docker-compose.yaml, not in .env.example"
    assert sorted(set(documented) - set(used)) == [], "in .env.example, not used by docker-compose.yaml"
    for name, defaults in used.items():
        assert defaults - {None} <= {documented[name]}, f"{name}: the defaults differ from .env.example's"
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    dockerfile_default = re.search(r"^ARG AIRFLOW_BASE_IMAGE=(\S+)$", dockerfile, re.M)
    assert dockerfile_default and dockerfile_default[1] == documented["AIRFLOW_BASE_IMAGE"]


def test_the_images_run_the_versions_the_project_pins() -> None:
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M))
    assert env_example()["AIRFLOW_BASE_IMAGE"] == f"apache/airflow:{pins['apache-airflow']}-python3.11"
    mlflow_image = (PROJECT_ROOT / "include" / "mlflow_gc" / "Dockerfile").read_text()
    assert f"FROM ghcr.io/mlflow/mlflow:v{pins['mlflow']}\n" in mlflow_image
    install = (PROJECT_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    assert re.search(r"pip install .*-r (\S+)/requirements.txt +-c \1/constraints.txt", install)


def test_every_mounted_and_built_path_exists() -> None:
    ignored = (PROJECT_ROOT / ".gitignore").read_text().split()
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":")[0]
                if not source.startswith((".", "/")):
                    assert source in compose()["volumes"], f"{name}: volume {source} is not declared"
                    continue
            else:
                assert volume["type"] == "bind" and volume["bind"]["create_host_path"] is False
                source = volume["source"]
            path = (PROJECT_ROOT / source).resolve()
            if path.is_relative_to(PROJECT_ROOT / ".kind"):  # made on the user's machine (README.md)
                assert ".kind/" in ignored
                continue
            assert path.exists(), f"{name} mounts {source}, which is not in the repository"
        build = service.get("build")
        if build:
            dockerfile = PROJECT_ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name} builds {dockerfile}, which is not in the repository"
            copied_into(dockerfile)  # and what it copies is there, and in the build context


def copied_into(dockerfile: Path) -> None:
    """Every file a Dockerfile built from the repository root COPYs exists and passes .dockerignore
    (which lets through only what is named with ``!``)."""
    allowed = {line[1:] for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (PROJECT_ROOT / source).is_file(), f"{dockerfile}: COPY {source}: no such file"
                assert source in allowed, f"{dockerfile}: COPY {source}: excluded by .dockerignore"


def connections_the_dags_use() -> tuple[set[str], set[str]]:
    """The connection ids in the package's code: those the DAGs need, and the optional ones (Argo CD,
    and email notifications; a webhook's connection is always named in the spec)."""
    from model_lifecycle.gc.config import KubernetesRunner
    from model_lifecycle.hooks.argocd import ArgoCdHook
    from model_lifecycle.hooks.github import GitHubHook
    from model_lifecycle.hooks.kserve import KServeHook
    from model_lifecycle.hooks.mlflow import MlflowHook
    from model_lifecycle.operators.lifecycle import PlanOperator
    from model_lifecycle.operators.training.kubernetes import KubernetesTrainingOperator
    from model_lifecycle.promotion import KUBERNETES_CONN_ID
    from model_lifecycle.sensors.rollout import VerifyRolloutSensor
    from model_lifecycle.specs import Email, GitOps

    def default(function: Any, parameter: str) -> Any:
        return inspect.signature(function).parameters[parameter].default

    required = {
        MlflowHook.default_conn_name, default(PlanOperator.__init__, "mlflow_conn_id"),
        GitHubHook.default_conn_name, GitOps.model_fields["connection_id"].default,
        KServeHook.default_conn_name, default(VerifyRolloutSensor.__init__, "kubernetes_conn_id"),
        KUBERNETES_CONN_ID,
        default(KubernetesTrainingOperator.__init__, "kubernetes_conn_id"),
        KubernetesRunner.model_fields["conn_id"].default,
    }
    return required, {ArgoCdHook.default_conn_name, Email.model_fields["connection_id"].default}


def test_the_connections_are_exactly_those_the_dags_use() -> None:
    required, optional = connections_the_dags_use()
    assert required == {"mlflow_default", "github_default", "kubernetes_default"}
    connections = {name.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
                   for name, value in common_environment().items() if name.startswith("AIRFLOW_CONN_")}
    assert set(connections) == required and not optional & set(connections)

    services = compose()["services"]
    mlflow = connections["mlflow_default"]
    assert (mlflow["host"], mlflow["port"]) == ("mlflow", 5000) and "mlflow" in services
    assert f"--port {mlflow['port']}" in services["mlflow"]["command"][0]
    assert mlflow["extra"]["artifacts_destination"] == "s3://mlflow/artifacts"
    assert "--artifacts-destination s3://mlflow/artifacts" in services["mlflow"]["command"][0]
    assert connections["github_default"]["conn_type"] == "github"
    kubeconfig = next(volume["target"] for volume in services["airflow-scheduler"]["volumes"]
                      if isinstance(volume, dict))
    assert connections["kubernetes_default"] == {"conn_type": "kubernetes",
                                                 "extra": {"kube_config_path": kubeconfig}}
    checked = re.search(r"for connection in ([\w ]+); do", init_script())
    assert checked and set(checked[1].split()) == required


def test_airflow_runs_its_four_components_on_the_local_executor() -> None:
    services = compose()["services"]
    for name, component in AIRFLOW_SERVICES.items():
        service = services[name]
        assert service["command"] == component
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert {"test", "interval", "retries"} <= set(service["healthcheck"])
        assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in service["volumes"]
                  if isinstance(volume, str) and volume.startswith("./")}
        assert mounts == {"./dags": "/opt/airflow/dags", "./plugins": "/opt/airflow/plugins",
                          "./include": "/opt/airflow/include"}
    # the tasks (scheduler) and the deferred waits (triggerer) need MLflow up
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert services[name]["depends_on"]["mlflow"] == {"condition": "service_healthy"}
    assert services["mlflow"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "minio-init": {"condition": "service_completed_successfully"}}
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert "mc mb --ignore-existing" in services["minio-init"]["command"][0]
    assert f"airflow pools set {PROMOTION_POOL} 1 " in init_script()  # the pool the DAGs' tasks name


@pytest.mark.parametrize("basic_auth", ["", "on"])
def test_mlflow_basic_auth_is_optional(basic_auth: str) -> None:
    env = {**env_example(), "MLFLOW_BASIC_AUTH": basic_auth, "MLFLOW_TRACKING_PASSWORD": "s3cret-password"}
    document = resolve(yaml.safe_load(COMPOSE_FILE.read_text()), env)
    command = document["services"]["mlflow"]["command"][0]
    assert ("--app-name basic-auth" in command) is bool(basic_auth)
    environment = document["services"]["airflow-scheduler"]["environment"]
    mlflow = json.loads(environment["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert (mlflow["login"], mlflow["password"]) == ("admin", "s3cret-password")
    assert document["services"]["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "s3cret-password"


def test_the_init_script_is_valid_bash_and_writes_the_admins_password() -> None:
    script = init_script()
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    snippet = re.search(r"python -c '(.*?)'", script, re.S)
    assert snippet is not None
    user = {"_AIRFLOW_WWW_USER_USERNAME": "ops", "_AIRFLOW_WWW_USER_PASSWORD": 'pa"ss word'}
    written = subprocess.run([sys.executable, "-c", snippet[1]], env=user, capture_output=True, text=True)
    assert json.loads(written.stdout) == {"ops": 'pa"ss word'}, written.stderr
