"""KServe's storage-initializer code, run as KServe runs it: in a process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_lifecycle.runtime_server import StorageInitializerError, storage_initializer


def test_it_puts_what_the_uri_holds_in_the_target(tmp_path: Path) -> None:
    model = tmp_path / "artifacts" / "m-1"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    found = storage_initializer(model.as_uri(), tmp_path / "mnt" / "models")
    assert found == tmp_path / "mnt" / "models"
    assert (found / "MLmodel").read_text() == "flavors: {}\n"


@pytest.mark.parametrize(("uri", "error"), [
    ("file:///nonexistent/m-1", "RuntimeError: Local path file:///nonexistent/m-1 does not exist."),
    ("mlflow-artifacts:/1/models/m-1/artifacts",
     "Exception: Cannot recognize storage type for mlflow-artifacts:/1/models/m-1/artifacts"),
])
def test_its_error_is_its_own(tmp_path: Path, uri: str, error: str) -> None:
    with pytest.raises(StorageInitializerError) as raised:
        storage_initializer(uri, tmp_path / "models")
    assert str(raised.value).startswith(error)
