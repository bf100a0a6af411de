"""The preflight: before anyone is asked to review a candidate, it must load and answer in the serving
runtime the spec declares (``rollout.runtime``), from the exact URI the manifest will pin.

1. The model is downloaded from that URI the way the serving side gets it (KServe's storage-initializer
   code, ``kserve-storage``).
2. Its MLmodel is checked against what the runtime reads (``runtimes.check_mlmodel``), and the
   manifest's ``spec.predictor.model`` against what the runtime serves (``runtimes.check_model_format``).
3. The runtime's own code at its own versions (MLServer with ``mlserver-mlflow``, in a virtual
   environment of its own, ``runtime_server``) loads it and answers the spec's smoke request.

A version that fails is rejected with the runtime's own words and the task fails: no pull request is
opened. The verdict is recorded on the version, so a rerun for the same runtime and URI repeats it
without loading the model again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException

from model_lifecycle.notifications import notify
from model_lifecycle.operators.lifecycle import VersionStepOperator
from model_lifecycle.promotion import PromotionService
from model_lifecycle.results import Preflight

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.runtimes import ServingRuntime

RUNTIME_LOG_LINES = 40


class PreflightOperator(VersionStepOperator):
    """Loads the candidate in the declared serving runtime and sends it the smoke request."""

    ui_color = "#fff4e5"

    def execute(self, context: Context) -> dict[str, Any]:
        from model_lifecycle.registry import Tag
        from model_lifecycle.runtimes import RUNTIMES

        runtime = RUNTIMES[self.spec.rollout.runtime]
        version = self.version.version
        promotion = PromotionService.of(self)
        # A spec whose GitOps target cannot take a proposal fails here, before a runtime is started.
        promotion.check_target(version)
        storage_uri = promotion.storage_uri(version)
        tags = self.registry.version(version).tags
        if (tags.get(Tag.PREFLIGHT_RUNTIME) == runtime.title
                and tags.get(Tag.PREFLIGHT_STORAGE_URI) == storage_uri):
            if tags.get(Tag.PREFLIGHT_VERDICT) == "passed":
                self.log.info("Preflight PASSED earlier in %s: %s", runtime.title, tags[Tag.PREFLIGHT_DETAIL])
                return Preflight(runtime=runtime.name, storage_uri=storage_uri,
                                 detail=tags[Tag.PREFLIGHT_DETAIL]).to_xcom()
            if tags.get(Tag.PREFLIGHT_VERDICT) == "rejected":
                raise AirflowFailException(tags[Tag.PREFLIGHT_DETAIL])
        self.log.info("Preflight of %s v%s in %s, from %s.", self.spec.registered_model, version,
                      runtime.title, storage_uri)
        detail = self._load_and_ask(context, promotion, runtime, storage_uri)
        self.registry.set_tags(version, {Tag.PREFLIGHT_VERDICT: "passed", Tag.PREFLIGHT_DETAIL: detail,
                                         Tag.PREFLIGHT_RUNTIME: runtime.title,
                                         Tag.PREFLIGHT_STORAGE_URI: storage_uri})
        self.log.info("Preflight PASSED: %s", detail)
        return Preflight(runtime=runtime.name, storage_uri=storage_uri, detail=detail).to_xcom()

    def _load_and_ask(self, context: Context, promotion: PromotionService, runtime: ServingRuntime,
                      storage_uri: str) -> str:
        import yaml

        from model_lifecycle.manifests import read_inference_service
        from model_lifecycle.registry import Tag
        from model_lifecycle.rollout import kserve_storage_problem
        from model_lifecycle.runtime_server import RuntimeStartError, download_model, serve_and_ask
        from model_lifecycle.runtimes import check_mlmodel, check_model_format

        rollout, gitops = self.spec.rollout, self.spec.gitops
        if rollout.kserve.protocol not in runtime.protocols:
            raise AirflowFailException(
                f"spec {self.spec.name!r}: rollout.kserve.protocol is {rollout.kserve.protocol!r}, and "
                f"rollout.runtime {runtime.name!r} speaks {list(runtime.protocols)}")
        isvc = gitops.inference_service
        manifest, _ = promotion.provider.read_file(gitops.base_branch, gitops.manifest_path)
        model = read_inference_service(manifest, path=gitops.manifest_path, name=isvc.name,
                                       namespace=isvc.namespace)["spec"]["predictor"]["model"]
        problems = check_model_format(runtime, model, manifest=f"{gitops.repository}:{gitops.manifest_path}")
        unreadable = kserve_storage_problem(storage_uri) if rollout.target == "kserve" else None
        if unreadable:
            problems.append(f"{unreadable}. The manifest pins the version's artifact location as the MLflow "
                            f"connection {self.mlflow.mlflow_conn_id!r} gives it: set its extra "
                            "artifacts_destination to the tracking server's --artifacts-destination (for "
                            "example s3://mlflow/artifacts), so that the manifest names the bucket KServe "
                            "reads")
        if problems:
            # The manifest and the connections are the platform's: the version is not to blame.
            raise AirflowFailException("; ".join(problems))

        with tempfile.TemporaryDirectory(prefix="preflight-") as workdir:
            model_dir = download_model(self.mlflow.proxied_uri(storage_uri), Path(workdir) / "model",
                                       tracking_uri=self.mlflow.tracking_uri)
            mlmodel_path = model_dir / "MLmodel"
            if not mlmodel_path.exists():
                self._reject(context, runtime, storage_uri, f"{storage_uri} holds no MLmodel file; the "
                                                            "storage URI must name the logged model's folder")
            findings = check_mlmodel(runtime, yaml.safe_load(mlmodel_path.read_text()),
                                     source=f"{self.spec.registered_model} v{self.version.version}'s")
            errors = [finding.message for finding in findings if finding.severity == "error"]
            if errors:
                self._reject(context, runtime, storage_uri, "; ".join(errors))
            warnings = [finding.message for finding in findings if finding.severity == "warning"]
            for warning in warnings:
                self.log.warning("%s", warning)
            if warnings:
                self.registry.set_tags(self.version.version, {Tag.PREFLIGHT_WARNINGS: "; ".join(warnings)})
            log_path = Path(workdir) / "runtime.log"
            try:
                verdict = serve_and_ask(runtime, model_dir, model_name=isvc.name, smoke=rollout.smoke_request,
                                        protocol=rollout.kserve.protocol, log_path=log_path)
            except RuntimeStartError as error:
                self._reject(context, runtime, storage_uri,
                             f"{runtime.name} did not load it: {error.error}. Log the model in a form "
                             f"{runtime.name} reads, or declare a rollout.runtime that reads it",
                             runtime_log=log_path)
            if not verdict.ok:
                self._reject(context, runtime, storage_uri, verdict.reason, runtime_log=log_path)
        return f"{runtime.title}: {verdict.reason}"

    def _reject(self, context: Context, runtime: ServingRuntime, storage_uri: str, reason: str, *,
                runtime_log: Path | None = None) -> NoReturn:
        from model_lifecycle.registry import Tag

        version = self.version.version
        message = (f"Preflight REJECTED {self.spec.registered_model} v{version} ({storage_uri}) in "
                   f"{runtime.title}: {reason}. No pull request is opened.")
        self.log.error("%s", message)
        if runtime_log is not None:
            # After the verdict, so that the verdict is on the log's first screen.
            lines = runtime_log.read_text(errors="replace").splitlines()[-RUNTIME_LOG_LINES:]
            self.log.info("The runtime's log ends with:\n%s", "\n".join(lines))
        self.registry.set_tags(version, {Tag.PREFLIGHT_VERDICT: "rejected", Tag.PREFLIGHT_DETAIL: message,
                                         Tag.PREFLIGHT_RUNTIME: runtime.title,
                                         Tag.PREFLIGHT_STORAGE_URI: storage_uri})
        self.registry.reject(version, f"preflight: {reason}")
        notify(context, self.spec, "rejected", message, version=version, links=self.extra_link_urls)
        raise AirflowFailException(message)
