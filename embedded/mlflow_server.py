"""A real ``mlflow server`` process on loopback. By default its backend store is SQLite and its artifacts
are proxied to a folder, both under ``root``; another database (PostgreSQL) and artifact destination
(``s3://...``, with the environment boto3 needs) can be given instead."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

# The server's job runner (Huey consumers, for GenAI evaluation jobs) is of no use to this project and
# starts seven processes of ~240 MB each; without it the server starts faster and stays small.
JOBS_OFF = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None, host: str = "127.0.0.1", *,
                 backend_store_uri: str | None = None, artifacts_destination: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.host = host
        self.port = port or free_port()
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts_destination = artifacts_destination or str(root / "artifacts")
        self.env = env or {}
        self.pid_file = root / "server.pid"
        self.log_file = root / "server.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def start(self, timeout: float = 120) -> MlflowServer:
        """Start the server unless one already answers on the port; returns once it is healthy."""
        if self.healthy():
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", self.host, "--port", str(self.port),
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", self.artifacts_destination,
            "--workers", "1",
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=self.root,
                                       env={**os.environ, **JOBS_OFF, **self.env})
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with code {process.returncode}; "
                                   f"see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not become healthy within {timeout:.0f} s; "
                                   f"see {self.log_file}")
            time.sleep(0.5)
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop the server and the processes it started, and wait until they are gone."""
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        self.pid_file.unlink()
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # started by this process: reaped
                    return
            except ChildProcessError:  # started by an earlier demo: gone once its group is empty
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
