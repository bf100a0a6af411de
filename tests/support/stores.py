"""The stores an MLflow server sits on in tests, all real and on loopback: a fresh PostgreSQL database
on this machine's server, and S3 served by moto's server, reached through boto3."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedded.mlflow_server import free_port

POSTGRES = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "connect_timeout": 3}
POSTGRES_USERS = ("postgres", "root")


def postgres_user() -> tuple[str | None, str]:
    """A user that can create databases on 127.0.0.1:5432, or ``None`` and why not."""
    import psycopg2

    problems = []
    for user in POSTGRES_USERS:
        try:
            psycopg2.connect(user=user, **POSTGRES).close()
            return user, ""
        except psycopg2.Error as error:
            problems.append(f"{user}: {' '.join(str(error).split())}")
    return None, "PostgreSQL on 127.0.0.1:5432 is not reachable (" + "; ".join(problems) + ")"


@contextmanager
def fresh_postgres_database(user: str, prefix: str = "mlflow_gc") -> Iterator[str]:
    """A new, empty database (dropped afterwards, also when the code using it fails; ``WITH (FORCE)``
    closes connections a killed process left); yields its SQLAlchemy URI. The ``prefix`` says which
    test made it."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(user=user, **POSTGRES)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg2://{user}@{POSTGRES['host']}:{POSTGRES['port']}/{name}"
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


class S3Server:
    """moto's S3 server in this process, on a loopback port; anything that speaks S3 can use it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What MLflow, boto3 and KServe's storage initializer need, in a process of ours or in the
        MLflow server's."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> S3Server:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def create_bucket(self) -> str:
        name = f"mlflow-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def digests(self, bucket: str, prefix: str) -> dict[str, str]:
        """Every object under ``prefix``: its key relative to the prefix, and its content's SHA-256."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                found[entry["Key"].removeprefix(prefix)] = hashlib.sha256(body).hexdigest()
        return found


def file_digests(root: Path) -> dict[str, str]:
    """Every file under ``root``: its path relative to it, and its content's SHA-256."""
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}
