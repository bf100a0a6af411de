"""The pure decisions of MLflow garbage collection, and its configuration file."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from model_lifecycle.gc.config import GcConfig, load_gc_config
from model_lifecycle.gc.decisions import (
    OLDER_THAN_PATTERN,
    Artifacts,
    BatchOutcome,
    DeletedExperiment,
    DeletedLoggedModel,
    DeletedRun,
    Inventory,
    Kept,
    ProtectedVersion,
    as_json,
    batches,
    logged_model_id,
    parse_older_than,
    plan,
    summarise,
)
from model_lifecycle.specs import PROJECT_ROOT, SpecError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", dt.timedelta(days=30)),
        ("12h", dt.timedelta(hours=12)),
        ("1d2h3m4s", dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1.5d", dt.timedelta(days=1.5)),
        ("90m", dt.timedelta(minutes=90)),
        ("0s", dt.timedelta(0)),
    ],
)
def test_older_than_accepts_what_mlflow_gc_accepts(text: str, expected: dt.timedelta) -> None:
    assert parse_older_than(text) == expected
    assert re.fullmatch(OLDER_THAN_PATTERN, text)


@pytest.mark.parametrize("text", ["", "30", "d", "30 d", "2h1d", "1.2.3d", "-1d", "30days", "1w"])
def test_older_than_rejects_the_rest_naming_the_parameter(text: str) -> None:
    with pytest.raises(ValueError, match=r"^older_than: "):
        parse_older_than(text)
    assert not (len(text) >= 2 and re.fullmatch(OLDER_THAN_PATTERN, text))


def run(run_id: str, experiment: str = "1") -> DeletedRun:
    return DeletedRun(run_id, experiment, deleted_at_ms=0, artifact_uri=f"s3://b/{experiment}/{run_id}")


def model(model_id: str, experiment: str = "1") -> DeletedLoggedModel:
    return DeletedLoggedModel(model_id, experiment, deleted_at_ms=0, artifact_location=f"s3://b/{model_id}")


def version(number: str, run_id: str | None = None, model_id: str | None = None, aliases: tuple = (),
            stage: str = "None") -> ProtectedVersion:
    return ProtectedVersion("fraud", number, run_id, model_id, aliases, stage)


def test_protected_runs_and_logged_models_are_kept_with_the_reason() -> None:
    inventory = Inventory(runs=(run("a"), run("b"), run("c"), run("d")),
                          logged_models=(model("m-1"), model("m-2")))
    versions = [version("3", "a", "m-1", aliases=("production", "champion")),
                version("2", "b", stage="Staging"),
                version("1", "c", stage="Archived"),  # neither alias nor a protected stage
                version("4", "b", stage="Production")]
    chosen = plan(inventory, versions)
    assert [r.run_id for r in chosen.runs] == ["c", "d"]
    assert [m.model_id for m in chosen.logged_models] == ["m-2"]
    assert chosen.kept == (
        Kept("runs", "a", "backs registered model 'fraud' version 3 (alias 'production', alias 'champion')"),
        Kept("runs", "b", "backs registered model 'fraud' version 2 (stage Staging); "
                          "backs registered model 'fraud' version 4 (stage Production)"),
        Kept("logged_models", "m-1",
             "backs registered model 'fraud' version 3 (alias 'production', alias 'champion')"),
    )


def test_an_experiment_is_collected_only_when_everything_in_it_is() -> None:
    empty_after = DeletedExperiment("7", "old", 0, run_ids=frozenset({"x", "y"}),
                                    logged_model_ids=frozenset({"m-9"}))
    holds_protected = DeletedExperiment("8", "held", 0, run_ids=frozenset({"p"}))
    holds_younger = DeletedExperiment("9", "young", 0, run_ids=frozenset({"z", "not-old-enough"}))
    inventory = Inventory(
        runs=(run("x", "7"), run("y", "7"), run("p", "8"), run("z", "9")),
        logged_models=(model("m-9", "7"),),
        experiments=(empty_after, holds_protected, holds_younger),
    )
    chosen = plan(inventory, [version("1", "p", aliases=("production",))])
    assert [e.experiment_id for e in chosen.experiments] == ["7"]
    reasons = {k.id: k.reason for k in chosen.kept if k.kind == "experiments"}
    assert reasons == {
        "8": "holds 1 run(s) that are not collected (p); deleting the experiment would take them along",
        "9": "holds 1 run(s) that are not collected (not-old-enough); deleting the experiment would "
             "take them along",
    }


def test_an_experiment_holding_an_uncollected_logged_model_stays() -> None:
    experiment = DeletedExperiment("5", "e", 0, logged_model_ids=frozenset({f"m-{i}" for i in range(5)}))
    chosen = plan(Inventory(experiments=(experiment,)), [])
    assert chosen.kept[0].reason.startswith(
        "holds 5 logged model(s) that are not collected (m-0, m-1, m-2, ... 2 more)")


def test_logged_model_of_a_version_from_its_id_or_its_source() -> None:
    assert logged_model_id("m-abc", "runs:/1/model") == "m-abc"
    assert logged_model_id(None, "models:/m-0123abcd") == "m-0123abcd"
    assert logged_model_id(None, "models:/fraud/3") is None
    assert logged_model_id(None, None) is None


def test_batches_cover_every_id_once_in_order() -> None:
    ids = [str(i) for i in range(7)]
    assert list(batches(ids, 3)) == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert list(batches([], 3)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(ids, 0))


def test_summary_counts_every_batch_and_lists_the_failed_ones() -> None:
    ok = BatchOutcome("runs", 1, 2, collected=["a", "b"], artifacts=Artifacts(3, 300))
    failed = BatchOutcome("runs", 2, 2, collected=["c"], failed={"d": "ClientError: NoSuchBucket"},
                          artifacts=Artifacts(1, 10))
    kept = BatchOutcome("logged_models", 3, 1, kept={"m-1": "restored since the report"})
    summary = summarise([ok, failed, kept])
    assert summary["runs"] == {"collected": 3, "kept": 0, "failed": 1, "batches": 2,
                               "artifact_files": 4, "artifact_bytes": 310}
    assert summary["logged_models"]["kept"] == 1 and summary["experiments"]["batches"] == 0
    assert summary["failed_batches"] == [{"kind": "runs", "batch": 2,
                                          "errors": {"d": "ClientError: NoSuchBucket"}}]
    assert summary["kept"] == [{"kind": "logged_models", "id": "m-1", "reason": "restored since the report"}]
    assert failed.line().startswith("runs batch 2: FAILED: 1/2 collected, 1 artifact file(s), 10 bytes")
    assert as_json(DeletedExperiment("1", "e", 0, run_ids=frozenset({"b", "a"})))["run_ids"] == ["a", "b"]


def test_shipped_config_is_valid_and_weekly() -> None:
    config = load_gc_config(PROJECT_ROOT / "include" / "mlflow_gc.yaml")
    assert config == GcConfig(schedule="0 2 * * 0", older_than="30d", batch_size=500, runner="local",
                              timeout_minutes=240, retries=2, retry_delay_minutes=5)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("older_than: 30 days\n", "older_than: '30 days' is not a duration"),
        ("batch_size: 0\n", "batch_size: Input should be greater than or equal to 1"),
        ("schedule: weekly\n", "schedule: 'weekly' is not a cron expression"),
        ("runner: kubernetes\n", "runner is kubernetes but the kubernetes section is missing"),
        ("runner: kubernetes\nkubernetes:\n  image: x\n  namespace: Bad_NS\n"
         "  backend_store_secret: {name: s, key: k}\n", "kubernetes.namespace: String should match pattern"),
        ("batchsize: 5\n", "batchsize: unknown field (check the spelling)"),
    ],
)
def test_config_errors_name_the_file_and_the_field(tmp_path: Path, document: str, problem: str) -> None:
    path = tmp_path / "mlflow_gc.yaml"
    path.write_text(document)
    with pytest.raises(SpecError) as raised:
        load_gc_config(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert problem in str(raised.value)
