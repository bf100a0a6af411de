"""The URL an HTTP connection names: ``https://host:port/path`` from its type, host, port and schema
(Airflow keeps a connection URI's path in ``schema``). A scheme in the host wins, then a connection type
``http`` or ``https``, then the caller's default."""

from __future__ import annotations

from typing import Any


def connection_url(connection: Any, *, what: str, default_scheme: str = "http") -> str:
    if not connection.host:
        raise ValueError(f"connection {connection.conn_id!r}: host is empty; set the address of {what} "
                         "(for example https://host:port/path)")
    scheme = connection.conn_type if connection.conn_type in ("http", "https") else default_scheme
    host = connection.host
    if "://" in host:
        scheme, host = host.split("://", 1)
    port = f":{connection.port}" if connection.port else ""
    path = f"/{connection.schema.strip('/')}" if connection.schema else ""
    return f"{scheme}://{host}{port}{path}"
