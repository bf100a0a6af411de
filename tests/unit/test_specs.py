"""Model specs: the shipped ones are valid, and every kind of mistake is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model_lifecycle.specs import PROJECT_ROOT, SpecError, load_catalog, parse_spec

DEMO = PROJECT_ROOT / "include" / "models" / "demo.yaml"


def write(tmp_path: Path, document: object, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def problems(tmp_path: Path, document: object) -> list[str]:
    with pytest.raises(SpecError) as raised:
        parse_spec(write(tmp_path, document))
    assert str(raised.value).startswith(str(tmp_path / "model.yaml"))
    return raised.value.problems


def test_shipped_specs_are_valid() -> None:
    catalog = load_catalog(PROJECT_ROOT / "include" / "models")
    assert catalog.errors == []
    spec = catalog.specs["demo"]
    assert spec.dag_id == "retrain__demo"
    assert spec.training.backend == "local"
    assert spec.evaluation.metrics["log_loss"].greater_is_better is False
    assert spec.rollout.smoke_request is not None
    assert len(spec.rollout.smoke_request.instances) == 2


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["evaluation"]["metrics"]["accuracy_score"].update(threshold="high"),
         "evaluation.metrics.accuracy_score.threshold: Input should be a valid number"),
        (lambda d: d["evaluation"]["metrics"].update(accuracy={"min": 0.9, "max_regression": 0.03}),
         "evaluation.metrics.accuracy: min: the gate speaks MLflow's MetricThreshold terms now; write "
         '{"greater_is_better": true, "threshold": 0.9, "max_regression": 0.03}'),
        (lambda d: d["evaluation"]["metrics"].update(log_loss={"goal": "minimize", "max": 0.35}),
         "evaluation.metrics.log_loss: goal, max: the gate speaks MLflow's MetricThreshold terms now; write "
         '{"greater_is_better": false, "threshold": 0.35}'),
        (lambda d: d["evaluation"]["metrics"]["roc_auc"].update(min_absolute_change=0.01),
         "evaluation.metrics.roc_auc: max_regression allows the challenger to be worse"),
        (lambda d: d["evaluation"]["metrics"]["roc_auc"].update(min_relative_change=1.5),
         "evaluation.metrics.roc_auc.min_relative_change: Input should be less than or equal to 1"),
        (lambda d: d["evaluation"]["metrics"].update(f1_score={"threshold": 0.9}),
         "evaluation.metrics.f1_score.greater_is_better: Field required"),
        (lambda d: d["evaluation"].update(dataset={"holdout_fraction": 1}),
         "evaluation.dataset.holdout_fraction: Input should be less than 1"),
        (lambda d: d["training"].update(backend="slurm"), "training.backend: Input should be 'local'"),
        (lambda d: d.update(schedule="every day"), "schedule: 'every day' is not a cron expression"),
        (lambda d: d.update(schedule="0 3 * * 8"),
         "schedule: '0 3 * * 8' is not a valid cron expression: day of week '8' (allowed: 0-7 or SUN-SAT)"),
        (lambda d: d.pop("registered_model"), "registered_model: Field required"),
        (lambda d: d["gitops"].update(manifest_path="../outside.yaml"), "gitops.manifest_path: "),
        (lambda d: d["gitops"]["inference_service"].update(name="Not_DNS"),
         "gitops.inference_service.name: String should match pattern"),
        (lambda d: d["data"].update(lookback_days=0),
         "data.lookback_days: Input should be greater than or equal to 1"),
        (lambda d: d["evaluation"]["metrics"].update(f1_score={"greater_is_better": True}),
         "evaluation.metrics.f1_score: give at least one of threshold, min_absolute_change, "
         "min_relative_change, max_regression"),
        (lambda d: d["rollout"]["smoke_request"].update(expected_predictions=[0]),
         "rollout.smoke_request: expected_predictions has 1 values for 2 instances"),
        (lambda d: d["aliases"].update(staging="production"), "aliases: aliases must be distinct"),
        (lambda d: d["training"].update(env={"1BAD": "x"}),
         "training.env: '1BAD' is not a valid environment variable name"),
        (lambda d: d["gitops"].update(reviewrs=["alice"]), "gitops.reviewrs: unknown field"),
        (lambda d: d["gitops"].update(provider="gitlab"),
         "gitops.provider: Input should be 'local' or 'github'"),
        (lambda d: d["gitops"].update(provider="github"),
         "gitops.repository: '.demo/gitops' is not a GitHub repository; write it as owner/name"),
        (lambda d: d["gitops"].update(provider="github", repository="acme/gitops", reviewers=["al ice"]),
         "gitops.reviewers.0: String should match pattern"),
        (lambda d: d["gitops"].update(labels=["promotion"]),
         "gitops.labels: only the github provider has labels (provider is 'local')"),
        (lambda d: d["gitops"].update(auto_merge=True),
         "gitops.auto_merge: only the github provider has auto_merge (provider is 'local')"),
        (lambda d: d["rollout"].update(kserve={"canary": {"traffic_percent": 10}}),
         "rollout: kserve.canary needs target 'kserve': the local target has no traffic to split"),
        (lambda d: d["rollout"].update(target="kserve", kserve={"canary": {"traffic_percent": 100}}),
         "rollout.kserve.canary.traffic_percent: Input should be less than or equal to 99"),
        (lambda d: d["rollout"].update(target="kserve", kserve={"canary": {"traffic_percent": 10,
                                                                          "auto_merge": True}}),
         "(top level): rollout.kserve.canary.auto_merge needs gitops.provider 'github' (provider is "
         "'local')"),
    ],
)
def test_bad_field_is_named_with_the_problem(tmp_path: Path, edit, expected: str) -> None:
    document = demo()
    edit(document)
    assert any(problem.startswith(expected) for problem in problems(tmp_path, document)), expected


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    document = demo()
    document["data"]["lookback_days"] = -1
    document["schedule"] = "nope"
    found = problems(tmp_path, document)
    assert {problem.split(":")[0] for problem in found} == {"data.lookback_days", "schedule"}


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "name: [unclosed")[0].startswith("is not valid YAML")
    assert problems(tmp_path, "- a\n- b\n") == ["must be a YAML mapping, got list"]


def test_catalog_keeps_good_specs_when_one_is_bad(tmp_path: Path) -> None:
    good = demo()
    bad = demo()
    bad["name"] = "broken"
    bad["training"]["timeout_minutes"] = "soon"
    write(tmp_path, good, "demo.yaml")
    write(tmp_path, bad, "broken.yaml")
    catalog = load_catalog(tmp_path)
    assert list(catalog.specs) == ["demo"]
    assert len(catalog.errors) == 1
    assert catalog.errors[0].path == tmp_path / "broken.yaml"
    assert "training.timeout_minutes: Input should be a valid integer" in str(catalog.errors[0])


def test_duplicate_names_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, demo(), "a.yaml")
    write(tmp_path, demo(), "b.yaml")
    catalog = load_catalog(tmp_path)
    assert list(catalog.specs) == ["demo"]
    assert "name: 'demo' is already used by another spec" in str(catalog.errors[0])


def test_project_defaults_apply_unless_the_spec_overrides(tmp_path: Path) -> None:
    write(tmp_path, {"owner": "platform", "gitops": {"poll_interval_seconds": 5}}, "_defaults.yaml")
    document = demo()
    document.pop("owner")
    document["gitops"].pop("poll_interval_seconds")
    write(tmp_path, document, "demo.yaml")
    other = demo()
    other.update(name="other", owner="team-b")
    write(tmp_path, other, "other.yaml")
    catalog = load_catalog(tmp_path)
    assert catalog.errors == []
    assert catalog.specs["demo"].owner == "platform"
    assert catalog.specs["demo"].gitops.poll_interval_seconds == 5
    assert catalog.specs["other"].owner == "team-b"


def test_missing_specs_folder_is_reported(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path / "absent")
    assert catalog.specs == {}
    assert "the model specs folder does not exist" in str(catalog.errors[0])


def test_github_spec_takes_its_defaults(tmp_path: Path) -> None:
    document = demo()
    document["gitops"] = {**document["gitops"], "provider": "github", "repository": "acme/gitops",
                          "labels": ["model-promotion"], "team_reviewers": ["ml-reviewers"]}
    del document["gitops"]["poll_interval_seconds"]
    gitops = parse_spec(write(tmp_path, document)).gitops
    assert (gitops.connection_id, gitops.poll_interval_seconds) == ("github_default", 30)
    assert (gitops.auto_merge, gitops.close_on_timeout) == (False, False)
    assert (gitops.labels, gitops.reviewers, gitops.team_reviewers) == (
        ["model-promotion"], [], ["ml-reviewers"])


def test_relative_repository_is_taken_from_the_project_root(tmp_path: Path) -> None:
    spec = parse_spec(write(tmp_path, demo()))
    assert spec.gitops.repository_path() == PROJECT_ROOT / ".demo" / "gitops"


def test_another_process_reads_the_stored_catalog_and_a_change_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_lifecycle import specs

    monkeypatch.setenv("MODEL_LIFECYCLE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "models"
    folder.mkdir()
    write(folder, demo(), "demo.yaml")
    write(folder, {**demo(), "name": "broken", "schedule": "61 * * * *"}, "broken.yaml")
    read = load_catalog(folder)
    [stored] = (tmp_path / "cache").rglob("*.json")

    monkeypatch.setattr(specs, "_catalogs", {})  # as in a new process
    monkeypatch.setattr(specs, "read_mapping", lambda path: pytest.fail(f"{path} was read again"))
    again = load_catalog(folder)
    assert again.specs == read.specs and [str(e) for e in again.errors] == [str(e) for e in read.errors]
    assert "broken.yaml: schedule: '61 * * * *' is not a valid cron expression" in str(again.errors[0])

    monkeypatch.undo()
    monkeypatch.setenv("MODEL_LIFECYCLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(specs, "_catalogs", {})
    write(folder, {**demo(), "description": "changed"}, "demo.yaml")
    assert load_catalog(folder).specs["demo"].description == "changed"
    assert not stored.exists()  # the older state is removed

    monkeypatch.setattr(specs, "_catalogs", {})
    [current] = (tmp_path / "cache").rglob("*.json")
    current.write_text("{not json")  # a damaged store is read past, not trusted
    assert load_catalog(folder).specs["demo"].description == "changed"
