"""A declared serving runtime, run on this machine: the real MLServer with ``mlserver-mlflow``, at the
versions the runtime pins (``include/serving/<name>/requirements.txt``), started the way KServe starts
it, serving one model directory.

The preflight and the local rollout check load a candidate with it; the tests' KServe stand-in serves
every revision with it. Its virtual environment is created once per requirements file under the cache
directory (``$MODEL_LIFECYCLE_CACHE_DIR``, else ``~/.cache/model-lifecycle``) and shared by every task
on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from model_lifecycle.rollout import (
    Verdict,
    check_smoke_answer,
    inference_path,
    smoke_predictions,
    smoke_request_body,
)
from model_lifecycle.runtimes import ServingRuntime
from model_lifecycle.specs import SmokeRequest

if TYPE_CHECKING:
    from requests import Response

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "MODEL_LIFECYCLE_CACHE_DIR"
START_TIMEOUT_SECONDS = 120.0
# What a failed start leaves in the log: MLServer's ERROR records and the exceptions with a message.
_ERROR_RECORD = re.compile(r"\[mlserver[\w.]*\] ERROR - (?P<message>.+)$")
_EXCEPTION = re.compile(r"^(?P<message>[\w.]*(?:Error|Exception): .+)$")
# KServe's ServingRuntime for MLServer (config/runtimes/kserve-mlserver.yaml) and SetMlServerDefaults
# (pkg/apis/serving/v1beta1/inference_service_defaults.go, v0.20.0) set these for an MLflow model.
MLFLOW_IMPLEMENTATION = "mlserver_mlflow.MLflowRuntime"


class RuntimeStartError(RuntimeError):
    """The runtime did not come up with the model loaded; ``error`` is what the runtime itself said."""

    def __init__(self, runtime: ServingRuntime, error: str, log_path: Path) -> None:
        super().__init__(f"{runtime.title} did not load the model: {error} (its log: {log_path})")
        self.error = error
        self.log_path = log_path


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "model-lifecycle")


def runtime_environment(runtime: ServingRuntime) -> Path:
    """The runtime's virtual environment, with exactly its pinned packages. Concurrent tasks on one
    machine wait for the one that creates it; one left half-made by a killed task is made again."""
    digest = hashlib.sha256(runtime.requirements.read_bytes()).hexdigest()[:12]
    root = cache_dir() / "runtimes"
    environment = root / f"{runtime.name}-{digest}"
    complete = environment / ".complete"
    if complete.exists():
        return environment
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{environment.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return environment
        shutil.rmtree(environment, ignore_errors=True)
        uv = _uv()
        # The runtime's own interpreter is not at hand; this machine's CPython runs its pinned packages.
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(environment)])
        _run([uv, "pip", "install", "--quiet", "--python", str(environment / "bin" / "python"),
              "-r", str(runtime.requirements)])
        complete.touch()
    return environment


def _uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=_clean_environment())
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): "
                           f"{result.stderr.strip()[-2000:]}")


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what points Python at our own packages."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
                   and not key.startswith("AIRFLOW")}
    return {**environment, **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RuntimeServer:
    """MLServer on the model repository ``repository``: ``with RuntimeServer(...) as server`` starts it
    and waits until it is ready (or raises ``RuntimeStartError`` with the runtime's error).

    With ``model_name`` it serves the model in ``repository`` under that name, as KServe's single-model
    runtime does; without, it serves what the repository's ``model-settings.json`` files declare, and
    takes more through MLServer's model repository API."""

    def __init__(self, runtime: ServingRuntime, repository: Path, *, model_name: str | None = None,
                 log_path: Path, start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.runtime = runtime
        self.repository = repository
        self.model_name = model_name
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.port = 0
        self.started_in = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RuntimeServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> RuntimeServer:
        import requests

        environment = runtime_environment(self.runtime)
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (open for the process's lifetime)
        began = time.monotonic()
        single_model = {} if self.model_name is None else {
            "MLSERVER_MODEL_NAME": self.model_name,
            "MLSERVER_MODEL_URI": str(self.repository),
            "MLSERVER_MODEL_IMPLEMENTATION": MLFLOW_IMPLEMENTATION,
        }
        self._process = subprocess.Popen(
            [str(environment / "bin" / "mlserver"), "start", str(self.repository)],
            cwd=self.repository, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env=_clean_environment(
                PATH=f"{environment / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                **single_model,
                MLSERVER_HTTP_PORT=str(self.port),
                MLSERVER_GRPC_PORT=str(free_port()),
                MLSERVER_METRICS_PORT=str(free_port()),
                # Inference in the server's own process: the inference pool's workers load the same
                # model with the same code, and starting them doubles the start time.
                MLSERVER_PARALLEL_WORKERS="0",
            ),
        )
        ready = (f"{self.url}/v2/health/ready" if self.model_name is None
                 else f"{self.url}/v2/models/{self.model_name}/ready")
        while True:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeStartError(self.runtime, runtime_error(self.log_path.read_text(errors="replace"))
                                        or f"it exited with code {self._process.returncode}", self.log_path)
            with contextlib.suppress(requests.RequestException):
                if requests.get(ready, timeout=2).status_code == 200:
                    break
            if time.monotonic() - began > self.start_timeout:
                self.stop()
                raise RuntimeStartError(self.runtime, runtime_error(self.log_path.read_text(errors="replace"))
                                        or f"the model was not ready within {self.start_timeout:.0f} s",
                                        self.log_path)
            time.sleep(0.2)
        self.started_in = time.monotonic() - began
        return self

    def infer(self, protocol: str, model_name: str, body: dict[str, Any]) -> Response:
        import requests

        return requests.post(f"{self.url}{inference_path(protocol, model_name)}", json=body, timeout=60)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, 15)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, 9)
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def runtime_error(log: str) -> str:
    """The runtime's own words for why it failed: its error records, then the exceptions, each once."""
    lines = [line.strip() for line in log.splitlines()]
    records = [match["message"] for line in lines if (match := _ERROR_RECORD.search(line))]
    exceptions = [match["message"] for line in lines if (match := _EXCEPTION.match(line))]
    return ": ".join(dict.fromkeys(records + exceptions))


def download_model(storage_uri: str, target: Path, *, tracking_uri: str) -> Path:
    """The model at ``storage_uri`` in ``target``, as the serving side gets it: through KServe's own
    storage-initializer code (``kserve-storage``) for what KServe reads (``s3://``, ``gs://``,
    ``file://``, ...); a proxied ``mlflow-artifacts:`` URI (what the local target pins, and what a
    location under the tracking server's artifacts destination is read as: ``MlflowHook.proxied_uri``)
    through MLflow."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if storage_uri.startswith(("mlflow-artifacts:", "models:", "runs:")):
        import mlflow.artifacts

        # MLflow puts a folder's files under its last path segment: the returned path holds them.
        return Path(mlflow.artifacts.download_artifacts(storage_uri, dst_path=str(target),
                                                        tracking_uri=tracking_uri))
    return storage_initializer(storage_uri, target)


class StorageInitializerError(RuntimeError):
    """KServe's storage initializer could not fetch the model; the message is its own error."""


# KServe's storage-initializer entrypoint (python/storage-initializer/scripts/initializer-entrypoint,
# v0.20.0) runs Storage.download_files in a container of its own; this is its core, in a process of its
# own, printing where the files are.
_STORAGE_INITIALIZER = (
    "import sys\n"
    "from kserve_storage import Storage\n"
    "print('MODEL_DIR=' + Storage.download(sys.argv[1], sys.argv[2]))\n"
)


def storage_initializer(storage_uri: str, target: Path) -> Path:
    """What KServe's storage initializer puts in ``target`` from ``storage_uri`` (``kserve-storage``),
    run as KServe runs it: in a process of its own. Its S3 download forks a pool of workers, which a
    process with threads (a task's, a test's) must not do: a lock held by another thread at the fork
    stays held in the child. ``StorageInitializerError`` carries its error."""
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-c", _STORAGE_INITIALIZER, storage_uri, str(target)],
                            capture_output=True, text=True)
    found = [line.removeprefix("MODEL_DIR=") for line in result.stdout.splitlines()
             if line.startswith("MODEL_DIR=")]
    if result.returncode != 0 or not found:
        raise StorageInitializerError(runtime_error(result.stderr) or
                                      f"it exited with code {result.returncode}: {result.stderr[-500:]}")
    return Path(found[-1])


def serve_and_ask(runtime: ServingRuntime, model_dir: Path, *, model_name: str, smoke: SmokeRequest | None,
                  protocol: str, log_path: Path) -> Verdict:
    """Serve ``model_dir`` in the runtime and send it the smoke request: the verdict on its answer.
    A model the runtime cannot load raises ``RuntimeStartError``."""
    with RuntimeServer(runtime, model_dir, model_name=model_name, log_path=log_path) as server:
        # The time stays out of the verdict: a verdict recorded on the version is the same on a rerun.
        log.info("%s loaded %s in %.1f s.", runtime.title, model_name, server.started_in)
        loaded = f"{runtime.name} loaded it"
        if smoke is None:
            return Verdict(True, f"{loaded} (no smoke request in the spec)")
        response = server.infer(protocol, model_name, smoke_request_body(protocol, smoke))
    if response.status_code != 200:
        return Verdict(False, f"{loaded}, and the smoke request got HTTP {response.status_code}: "
                              f"{response.text[:500]}")
    try:
        verdict = check_smoke_answer(smoke, smoke_predictions(protocol, response.json()))
    except ValueError as error:
        return Verdict(False, f"{loaded}, and {error}")
    return Verdict(verdict.ok, f"{loaded}; {verdict.reason}")
